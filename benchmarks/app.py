"""How long `deepfill-min app` takes to answer: a fill and a click, over HTTP, with the shipped model, on the CPU.

A server (`deepfill_min.app.AppServer`) runs in this process on a free port; each case uploads a photo-like PNG
(`/api/load`), sends a rectangular hole (`/api/fill`) and clicks its centre (`/api/sources`), as the page does, and
times each request from the client side (PNG encoding and decoding included). Every case is run twice and the
second time is reported (the first call of a size pays oneDNN's first-call costs); ``fill compute`` is the server's
own time for the model work (inpaint, attention map, flow of the hole).

    python benchmarks/app.py               # 512², 1024² and 2048² images with small and large holes
    python benchmarks/app.py --quick       # 512² only
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import threading
import time
import urllib.request

import numpy as np
import torch
from PIL import Image

from deepfill_min.app import AppServer
from deepfill_min.explorer import Explorer
from deepfill_min.weights import load_generator

CASES = [(512, 64), (512, 256), (1024, 128), (1024, 512), (2048, 256)]  # (image side, hole side)


def _post(url: str, body: bytes) -> tuple[dict, float]:
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=600) as response:
        answer = json.loads(response.read())
    return answer, time.perf_counter() - start


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def run(server: AppServer, size: int, hole: int) -> dict:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))
    mask = np.zeros((size, size), np.uint8)
    t = (size - hole) // 2
    mask[t : t + hole, t : t + hole] = 255
    mask_url = "data:image/png;base64," + base64.b64encode(_png(mask)).decode()
    for _ in range(2):
        loaded, t_load = _post(server.url + "api/load", _png(image))
        body = json.dumps({"image": loaded["id"], "mask": mask_url}).encode()
        filled, t_fill = _post(server.url + "api/fill", body)
        click = json.dumps({"fill": filled["fill"], "row": size // 2, "col": size // 2, "k": 5}).encode()
        _, t_click = _post(server.url + "api/sources", click)
    return {"image": size, "hole": hole, "load_s": t_load, "fill_s": t_fill, "fill_compute_s": filled["seconds"],
            "click_s": t_click}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512² only")
    args = parser.parse_args()
    G, order = load_generator("builtin")
    server = AppServer(Explorer(G, order, max_side=2048), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'image':>6} {'hole':>5} {'load s':>7} {'fill s':>7} {'of which model s':>17} {'click s':>8}")
    for size, hole in CASES:
        if args.quick and size > 512:
            continue
        r = run(server, size, hole)
        print(f"{size:>5}² {hole:>4}² {r['load_s']:7.2f} {r['fill_s']:7.2f} {r['fill_compute_s']:17.2f} "
              f"{r['click_s']:8.3f}", flush=True)  # fmt: skip
    server.shutdown()


if __name__ == "__main__":
    main()
