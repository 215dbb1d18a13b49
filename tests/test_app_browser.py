"""`deepfill-min app` in a real headless browser: draw a hole, fill it, click it, and the bad inputs of the page.

Needs Debian's ``chromium`` (``make test`` installs it with apt where it may) and the ``playwright`` Python driver
(the dev extra), which drives that browser; nothing is downloaded. Without them the test is skipped, unless
``DEEPFILL_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes their absence a failure. ``APP_SCREENSHOT=path`` saves the
page after the click (the README's picture: ``APP_SCREENSHOT=docs/images/app.png pytest tests/test_app_browser.py``).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from deepfill_min.app import AppServer
from deepfill_min.builtin import builtin_image
from deepfill_min.explorer import BUILTIN_SIZE as N
from deepfill_min.explorer import Explorer
from deepfill_min.sources import top_sources
from deepfill_min.weights import load_generator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("DEEPFILL_REQUIRE_BROWSER") == "1"
# the flags a closed network needs (no background requests, no first-run or component updates); root needs no sandbox
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or CHROMIUM is None:
        missing = "the playwright package" if sync_playwright is None else "a chromium executable"
        if REQUIRED:
            pytest.fail(f"DEEPFILL_REQUIRE_BROWSER=1 but {missing} is missing (apt-get install chromium)")
        pytest.skip(f"{missing} is missing: the browser test needs Debian's chromium and playwright")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    G, order = load_generator("builtin")
    srv = AppServer(Explorer(G, order), port=0, model_name="builtin")  # the default size limit, 2048
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def open_page(browser, server, builtin: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url)
    page.wait_for_function("document.body.dataset.state === 'ready'")
    if builtin != "hopper":
        page.select_option("#builtin", builtin)
        page.wait_for_function(f"document.getElementById('status').textContent.startsWith('{N}x{N}')")
        page.wait_for_function("document.body.dataset.state === 'ready'")
    return page, errors


def drag(page, selector: str, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Press at fraction `a` of the element's box, move to `b`, release."""
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + a[0] * box["width"], box["y"] + a[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + b[0] * box["width"], box["y"] + b[1] * box["height"], steps=6)
    page.mouse.up()


def fill(page) -> None:
    page.click("#fill")
    page.wait_for_function("['filled', 'ready'].includes(document.body.dataset.state)", timeout=30_000)


def test_draw_fill_and_click_the_sources(browser, server):
    page, errors = open_page(browser, server, "stripes")
    truth = np.rint(builtin_image("stripes", N) * 255).astype(np.uint8)
    fill(page)  # nothing drawn yet
    assert "the mask is empty" in page.inner_text("#status") and page.get_attribute("#status", "class") == "error"
    page.check("input[value=rect]")
    drag(page, "#mask", (0.30, 0.35), (0.55, 0.60))
    page.check("input[value=brush]")
    drag(page, "#mask", (0.75, 0.15), (0.85, 0.30))  # a second, free-form hole
    fill(page)
    assert page.evaluate("document.body.dataset.state") == "filled", page.inner_text("#status")
    result, mask = decode(page.get_attribute("#result", "src")), decode(page.get_attribute("#dl-mask", "href")) > 127
    assert mask.shape == (N, N) and 0.05 < mask.mean() < 0.2
    assert np.array_equal(result[~mask], truth[~mask])  # the known pixels are the input's
    assert np.abs(result[mask].astype(int) - truth[mask]).mean() > 0  # the hole is the model's
    fill_id = next(reversed(server.explorer.fills))
    assert np.array_equal(server.explorer.fills[fill_id].result, result)
    # a click in the rectangle: the page lists the layer's own top sources of that pixel
    over = page.locator("#result-over").bounding_box()
    page.mouse.click(over["x"] + 0.42 * over["width"], over["y"] + 0.47 * over["height"])
    page.wait_for_function("document.body.dataset.state === 'sources'")
    rows = page.locator("#sources tbody tr")
    assert rows.count() == 5
    note = page.inner_text("#sources-note")
    point = tuple(int(v) for v in re.match(r"pixel \((\d+), (\d+)\)", note).groups())  # where the page clicked
    assert abs(point[0] - 0.47 * N) < 2 and abs(point[1] - 0.42 * N) < 2
    want = top_sources(server.explorer.fills[fill_id].amap, point, 5)
    shown = [float(rows.nth(i).locator(".weight").inner_text().rstrip("%")) for i in range(5)]
    assert shown == [round(100 * w, 1) for w in want.weights]
    assert f"query cell at ({want.query[0]}, {want.query[1]})" in note
    alpha = f"Array.from(document.getElementById('result-over').getContext('2d').getImageData(0, 0, {N}, {N}).data)"
    drawn = page.evaluate(alpha + ".filter((v, i) => i % 4 == 3 && v > 0).length")
    assert drawn > 50  # the boxes and arrows are on the overlay
    if os.environ.get("APP_SCREENSHOT"):
        page.screenshot(path=os.environ["APP_SCREENSHOT"], full_page=True)
    # a click outside the hole says so
    page.mouse.click(over["x"] + 0.05 * over["width"], over["y"] + 0.95 * over["height"])
    page.wait_for_function("document.getElementById('sources-note').textContent.includes('outside the hole')")
    # undo removes the brush stroke, clear removes everything
    page.click("#undo")
    fill(page)
    assert decode(page.get_attribute("#dl-mask", "href"))[:, int(0.6 * N) :].max() == 0
    page.click("#clear")
    fill(page)
    assert "the mask is empty" in page.inner_text("#status")
    assert errors == []


def test_bad_uploads_keep_the_page_and_server_working(browser, server, tmp_path):
    page, errors = open_page(browser, server, "hopper")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "not an image that Pillow can read" in page.inner_text("#status")
    big = tmp_path / "wide.png"
    Image.fromarray(np.full((600, 2100, 3), 90, np.uint8)).save(big)
    page.set_input_files("#file", str(big))
    page.wait_for_selector("#downscale:not([hidden])")
    assert "2100x600 pixels, above the limit of 2048" in page.inner_text("#status")
    page.click("#downscale")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('2048x585')")
    page.select_option("#builtin", "dots")
    page.wait_for_function(f"document.getElementById('status').textContent.startsWith('{N}x{N}')")
    # everything still works after the errors: a hole covering the whole image is refused, a smaller one filled
    page.evaluate("document.querySelector('input[value=rect]').checked = true")
    drag(page, "#mask", (0.005, 0.005), (1.1, 1.1))  # from the corner (snapped) to beyond the image
    fill(page)
    assert "covers the whole image" in page.inner_text("#status")
    page.click("#undo")
    drag(page, "#mask", (0.4, 0.4), (0.6, 0.6))
    fill(page)
    assert page.evaluate("document.body.dataset.state") == "filled" and errors == []


def test_two_tabs_do_not_mix(browser, server):
    tabs = [open_page(browser, server, name)[0] for name in ("dots", "bricks")]
    for tab in tabs:
        tab.check("input[value=rect]")
        drag(tab, "#mask", (0.2, 0.2), (0.45, 0.5))
    for tab in tabs:  # both requests are sent before either answer is read
        tab.evaluate("document.getElementById('fill').click()")
    for tab, name in zip(tabs, ("dots", "bricks"), strict=True):
        tab.wait_for_function("document.body.dataset.state === 'filled'", timeout=30_000)
        truth = np.rint(builtin_image(name, N) * 255).astype(np.uint8)
        result, mask = decode(tab.get_attribute("#result", "src")), decode(tab.get_attribute("#dl-mask", "href")) > 127
        assert np.array_equal(result[~mask], truth[~mask])
