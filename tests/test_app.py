"""The app's server side: `Explorer` (load, fill, sources) against the package, and the HTTP routes over a socket."""

from __future__ import annotations

import io
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepfill_min.app import AppServer
from deepfill_min.builtin import builtin_image
from deepfill_min.cli import main
from deepfill_min.explorer import BUILTIN_SIZE, Explorer, TooLarge, data_url_bytes, png_data_url
from deepfill_min.generator import Generator
from deepfill_min.inpaint import inpaint, model_input
from deepfill_min.sources import attention_sources
from deepfill_min.weights import load_generator


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    G, order = load_generator("builtin")
    return Explorer(G, order, max_side=300, keep=4)


def png(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def mask_url(mask: np.ndarray) -> str:
    """A bool mask as the page sends it: a PNG data URL, white = hole."""
    return png_data_url(mask.astype(np.uint8) * 255)


def box_mask(h: int, w: int, t: int, l: int, bh: int, bw: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[t : t + bh, l : l + bw] = True
    return mask


def test_load_uploads_builtins_and_the_size_limit(explorer):
    image = photo(120, 200)
    image_id, rgb = explorer.load(png(image))
    assert np.array_equal(rgb, image) and np.array_equal(explorer.images[image_id], image)
    _, rgb = explorer.load(builtin="stripes")
    assert np.array_equal(rgb, np.rint(builtin_image("stripes", BUILTIN_SIZE) * 255).astype(np.uint8))
    # a phone photo stored sideways: the pixels as a viewer shows them (EXIF orientation 6 = rotate 90° clockwise)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", exif=exif)
    assert explorer.load(buffer.getvalue())[1].shape == (200, 120, 3)
    # too large: refused before decoding, with the size of the offered downscale; accepted with the downscale
    big = photo(240, 600)
    with pytest.raises(TooLarge, match="600x240 pixels, above the limit of 300 .* downscale it to 300x120") as err:
        explorer.load(png(big))
    assert err.value.size == (300, 120)
    assert explorer.load(png(big), downscale=True)[1].shape == (120, 300, 3)
    # a huge image in a small file (one colour): refused from its header, never decoded
    with pytest.raises(ValueError, match="10000x8000 pixels, above the 64 megapixels"):
        explorer.load(png(np.zeros((8000, 10000, 3), np.uint8)), downscale=True)
    bad = [(b"", "empty"), (b"not an image at all", "not an image that Pillow can read"),
           (png(image)[:200], "truncated or corrupt"),
           (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 40\nshowpage\n", "not an image that Pillow can read"),
           (png(photo(16, 64)), "at least 32 a side")]  # fmt: skip
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            explorer.load(data)
    with pytest.raises(ValueError, match="builtin must be one of hopper"):
        explorer.load(builtin="moon")


def test_fill_is_the_package_inpaint_with_the_hole_flow(explorer):
    image = photo(96, 136, seed=1)
    image_id, _ = explorer.load(png(image))
    mask = box_mask(96, 136, 30, 40, 33, 47)
    fill_id, fill = explorer.fill(image_id, png(mask.astype(np.uint8) * 255))
    want = inpaint(image, mask, explorer.generator)
    assert np.array_equal(fill.result, want.image) and np.array_equal(fill.coarse, want.coarse)
    assert np.array_equal(fill.result[~mask], image[~mask]) and not np.array_equal(fill.result[mask], image[mask])
    # the flow: coloured only in the 8x8 cells that hold a hole pixel, white elsewhere; the same offsets as the
    # full generator's there (tests/test_sources.py), so some cell of a hole this size points elsewhere
    cells = np.zeros((96, 136), bool)
    cells[24:64, 40:88] = True
    assert (fill.flow[~cells] == 255).all() and (fill.flow[cells] != 255).any()
    assert explorer.fills[fill_id] is fill


def test_fill_refuses_bad_masks(explorer):
    image_id, _ = explorer.load(png(photo(64, 64)))
    cases = [(np.zeros((64, 64), np.uint8), "the mask is empty"), (np.full((64, 64), 255, np.uint8), "whole image"),
             (np.full((64, 48), 255, np.uint8), "mask is 48x64 but the image is 64x64")]  # fmt: skip
    for mask, message in cases:
        with pytest.raises(ValueError, match=message):
            explorer.fill(image_id, png(mask))
    with pytest.raises(ValueError, match="not an image"):
        explorer.fill(image_id, b"garbage")
    with pytest.raises(ValueError, match="unknown or expired"):
        explorer.fill("no-such-id", png(np.zeros((64, 64), np.uint8)))


def test_sources_are_the_layers_and_fills_do_not_mix(explorer):
    # two visitors, two images: each fill's sources are those of its own image (the oracle: attention_sources)
    images = [photo(80, 104, seed=2), np.rint(builtin_image("bricks", 96)[:80] * 255).astype(np.uint8)[:, :96]]
    masks = [box_mask(80, 104, 20, 30, 30, 40), box_mask(80, 96, 40, 8, 24, 40)]
    fills = [explorer.fill(explorer.load(png(im))[0], png(m.astype(np.uint8) * 255))[0]
             for im, m in zip(images, masks, strict=True)]  # fmt: skip
    for fill_id, image, mask in zip(fills, images, masks, strict=True):
        point = tuple(int(v[len(v) // 2]) for v in np.nonzero(mask))
        fill, src = explorer.sources(fill_id, point, k=3)
        _, _, xp, mp = model_input(image, mask)
        want = attention_sources(explorer.generator, xp * (1 - mp), mp, point, k=3)
        assert src == want and fill.mask[point]
        assert len(src.weights) == 3 and src.weights == sorted(src.weights, reverse=True)
    with pytest.raises(ValueError, match="point must be"):
        explorer.sources(fills[0], (80, 0))
    with pytest.raises(ValueError, match="k must be an integer from 1 to 32"):
        explorer.sources(fills[0], (0, 0), k=0)
    # only the `keep` most recent fills are kept
    for _ in range(explorer.keep):
        explorer.fill(explorer.load(png(images[0]))[0], png(masks[0].astype(np.uint8) * 255))
    with pytest.raises(ValueError, match="unknown or expired"):
        explorer.sources(fills[0], (0, 0))


def test_sides_that_are_not_multiples_of_8(explorer):
    # the model sees the image padded to 8: a click in the padding is outside the image, boxes stay inside it
    image, mask = photo(61, 93, seed=4), box_mask(61, 93, 40, 70, 21, 23)  # the hole touches both padded edges
    fill_id, fill = explorer.fill(explorer.load(png(image))[0], png(mask.astype(np.uint8) * 255))
    assert fill.result.shape == fill.flow.shape == (61, 93, 3) and np.array_equal(fill.result[~mask], image[~mask])
    _, src = explorer.sources(fill_id, (60, 92), k=8)
    assert all(t >= 0 and l >= 0 and t + h <= 61 and l + w <= 93 and h > 0 and w > 0 for t, l, h, w in src.boxes)
    for point in [(61, 5), (5, 93), (63, 95), (-1, 3)]:
        with pytest.raises(ValueError, match="point must be .* inside the 93x61 image"):
            explorer.sources(fill_id, point)


def test_a_model_without_attention_fills_without_sources():
    torch.manual_seed(0)
    ex = Explorer(Generator(4, attention=False).eval())
    fill_id, fill = ex.fill(ex.load(png(photo(64, 64)))[0], png(box_mask(64, 64, 8, 8, 20, 20).astype(np.uint8) * 255))
    assert fill.flow is None
    with pytest.raises(ValueError, match="no contextual attention"):
        ex.sources(fill_id, (10, 10))


def test_data_urls():
    image = photo(40, 48)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data_url_bytes(png_data_url(image), "x")))), image)
    for url in ("", "data:text/plain,hi", 3, "data:image/png;base64,@@@"):
        with pytest.raises(ValueError, match="mask"):
            data_url_bytes(url, "mask")


@pytest.fixture(scope="module")
def server(explorer):
    srv = AppServer(explorer, port=0, model_name="builtin")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, path: str, body: bytes | dict | None = None) -> tuple[int, dict | bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(server.url + path.lstrip("/"), data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers["Content-Type"]
    return status, json.loads(raw) if kind == "application/json" else raw


def test_http_routes_answer_and_survive_bad_input(server):
    status, page = request(server, "/")
    assert status == 200 and b"<canvas id=\"mask\"" in page and b"http" not in page.split(b"<body")[1].lower()
    status, info = request(server, "/api/info")
    assert status == 200 and "hopper" in info["builtin"] and info["attention"] and info["max_side"] == 300
    status, loaded = request(server, "/api/load?builtin=dots", b"")
    assert status == 200 and (loaded["width"], loaded["height"]) == (128, 128) == (BUILTIN_SIZE,) * 2
    mask = box_mask(128, 128, 50, 45, 40, 40)
    status, filled = request(server, "/api/fill", {"image": loaded["id"], "mask": mask_url(mask)})
    assert status == 200 and filled["flow"].startswith("data:image/png;base64,")
    result = np.asarray(Image.open(io.BytesIO(data_url_bytes(filled["result"], "result"))))
    image = np.asarray(Image.open(io.BytesIO(data_url_bytes(loaded["image"], "image"))))
    assert np.array_equal(result[~mask], image[~mask]) and not np.array_equal(result[mask], image[mask])
    status, src = request(server, "/api/sources", {"fill": filled["fill"], "row": 60, "col": 55, "k": 4})
    assert status == 200 and src["in_hole"] and len(src["sources"]) == 4 and src["query"] == [56, 48, 8, 8]
    status, src = request(server, "/api/sources", {"fill": filled["fill"], "row": 5, "col": 5})
    assert status == 200 and not src["in_hole"]
    bad = [("/api/load", b"\x89PNG broken", "not an image"), ("/api/load", png(photo(40, 400)), "downscale it to"),
           ("/api/fill", b"{not json", "must be JSON"),
           ("/api/fill", {"image": loaded["id"], "mask": "x"}, "mask must be"),
           ("/api/fill", {"image": "nope", "mask": png_data_url(mask.astype(np.uint8))}, "unknown or expired"),
           ("/api/sources", {"fill": filled["fill"], "row": "a", "col": 1}, "row and col must be integers"),
           ("/api/sources", {"fill": filled["fill"], "row": 999, "col": 1}, "point must be")]  # fmt: skip
    for path, body, message in bad:
        status, answer = request(server, path, body)
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"], (path, answer)
    status, answer = request(server, "/api/load", png(photo(40, 400)))
    assert answer["downscale"] == [300, 30]
    assert request(server, "/api/nothing", {})[0] == 404 and request(server, "/etc/passwd")[0] == 404
    status, answer = request(server, "/api/fill", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "JSON" in answer["error"]
    # a page of another site may not use the server; the page itself (same origin) may
    host = server.url.split("/")[2]
    for origin, want in (("http://evil.example", 403), (f"http://{host}", 200)):
        req = urllib.request.Request(server.url + "api/load?builtin=dots", data=b"", method="POST",
                                     headers={"Origin": origin})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                assert response.status == want
        except urllib.error.HTTPError as err:
            assert err.code == want
    # a negative or non-numeric Content-Length is refused at once (no read until the client hangs up)
    for length in (b"-1", b"abc"):
        with socket.create_connection(server.server_address[:2], timeout=10) as conn:
            conn.sendall(b"POST /api/load HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
            assert b"400" in conn.recv(4096).split(b"\r\n")[0]
    assert request(server, "/api/info")[0] == 200  # still serving


def test_concurrent_fills_keep_their_own_results(server):
    images = [photo(64, 96, seed=s) for s in range(4)]
    mask = box_mask(64, 96, 16, 24, 24, 32)
    results = [None] * len(images)

    def visit(i):
        _, loaded = request(server, "/api/load", png(images[i]))
        _, filled = request(server, "/api/fill", {"image": loaded["id"], "mask": mask_url(mask)})
        results[i] = np.asarray(Image.open(io.BytesIO(data_url_bytes(filled["result"], "result"))))

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for image, result in zip(images, results, strict=True):
        assert np.array_equal(result[~mask], image[~mask])
        assert np.array_equal(result, inpaint(image, mask, server.explorer.generator).image)


def test_closing_ends_open_connections_and_their_threads(explorer):
    """A connection left open (a browser's idle keep-alive, a request still arriving) does not outlive the server:
    a thread alive at interpreter exit made the process abort now and then at Ctrl-C."""
    before = set(threading.enumerate())
    srv = AppServer(explorer, port=0)
    serving = threading.Thread(target=srv.serve_forever, daemon=True)
    serving.start()
    idle = socket.create_connection(srv.server_address[:2])
    idle.sendall(b"GET /api/info HTTP/1.1\r\n")  # the headers never end: its thread waits (60 s timeout)
    deadline = time.monotonic() + 30
    while len(set(threading.enumerate()) - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    handlers = set(threading.enumerate()) - before - {serving}
    assert len(handlers) == 1
    srv.shutdown()
    start = time.monotonic()
    srv.server_close()
    assert time.monotonic() - start < 10 and not any(t.is_alive() for t in handlers)
    idle.settimeout(10)
    assert idle.recv(1) == b""  # closed by the server
    idle.close()


def test_the_app_command_serves_until_interrupted():
    proc = subprocess.Popen([sys.executable, "-m", "deepfill_min", "app", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "deepfill-min app printed nothing in 2 minutes"
        line = proc.stdout.readline()
        assert line.startswith("deepfill-min app: serving builtin on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            assert json.loads(response.read())["model"] == "builtin"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip() == "deepfill-min: interrupted"


def test_official_weights_converted_by_convert_tf_fill_in_their_colour_order(tmp_path):
    # the TensorFlow fixture of tests/test_convert_tf.py (written by TensorFlow itself; cnum 2, BGR)
    out = tmp_path / "official.safetensors"
    assert main(["convert-tf", str(Path(__file__).parent / "fixtures" / "tf_checkpoint"), "--out", str(out)]) == 0
    G, order = load_generator(out)
    ex = Explorer(G, order)
    assert order == "bgr"
    image, mask = photo(64, 80, seed=5), box_mask(64, 80, 16, 16, 24, 32)
    fill_id, fill = ex.fill(ex.load(png(image))[0], png(mask.astype(np.uint8) * 255))
    assert np.array_equal(fill.result, inpaint(image, mask, G, "bgr").image)
    _, _, xp, mp = model_input(image, mask, color_order="bgr")
    assert ex.sources(fill_id, (30, 30))[1] == attention_sources(G, xp * (1 - mp), mp, (30, 30))
