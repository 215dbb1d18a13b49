"""``deepfill-min app``: a local web page to draw a hole, see the fill, and click where the attention copied from.

The page is one HTML file with its script and style (`deepfill_min/app.html`); the server is Python's standard
``http.server`` on threads; the work is `deepfill_min.explorer.Explorer`. Nothing is fetched from the internet (no
fonts, scripts or analytics: the page works offline), and the server binds to 127.0.0.1 unless told otherwise.

Routes (JSON in and out; every image travels as a PNG data URL):

* ``GET /``: the page. ``GET /api/info``: the built-in images, the size limit, the model.
* ``POST /api/load``: the body is an image file (``?downscale=1`` to accept the offered downscale), or
  ``?builtin=NAME``: ``{"id", "width", "height", "image"}``.
* ``POST /api/fill`` ``{"image": id, "mask": data URL}``: ``{"fill", "input", "coarse", "result", "flow",
  "legend", "mask", "seconds"}`` (``flow`` is null for a model without attention).
* ``POST /api/sources`` ``{"fill": id, "row", "col", "k"}``: ``{"query": [top, left, height, width],
  "in_hole", "sources": [{"box", "weight", "key"}, ...]}``.

A POST from a page of another site (its ``Origin`` is not this server) is refused with a 403, so a web page open
in the same browser cannot use the server. Bad input is a 400 ``{"error": message}`` (``"downscale": [w, h]`` too
when the image is too large); a bug of ours is a 500 with its one-line message, printed with its traceback on the
server, which keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

import numpy as np

from .builtin import BUILTIN_IMAGES
from .explorer import Explorer, TooLarge, data_url_bytes, legend_url, png_data_url
from .images import one_line

MAX_BODY = 64 << 20  # bytes: the largest request accepted (an upload or a mask)


def page() -> bytes:
    """The page's HTML, from the package."""
    return resources.files("deepfill_min").joinpath("app.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may stay silent (a client that never sends its body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (quiet: errors are printed where they happen)
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _body(self) -> bytes:
        text = self.headers.get("Content-Length") or "0"
        length = int(text) if text.isdigit() else -1
        if length < 0:
            raise ValueError(f"Content-Length must be a number of bytes, got {text[:20]!r}")
        if length > MAX_BODY:
            raise ValueError(f"the upload is {length / 2**20:.0f} MiB, above the limit of {MAX_BODY >> 20} MiB")
        return self.rfile.read(length)

    def _json_body(self) -> dict:
        try:
            payload = json.loads(self._body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise ValueError("the request body must be JSON (an object, not nested too deeply)") from None
        if not isinstance(payload, dict):
            raise ValueError("the request body must be a JSON object")
        return payload

    def do_GET(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
        elif path == "/api/info":
            ex = self.server.explorer
            self._json(HTTPStatus.OK, {"builtin": list(BUILTIN_IMAGES), "max_side": ex.max_side,
                                       "model": self.server.model_name, "attention": ex.generator.attention,
                                       "legend": legend_url()})  # fmt: skip
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        routes = {"/api/load": self._load, "/api/fill": self._fill, "/api/sources": self._sources}
        if url.path not in routes:
            self.close_connection = True  # its body is not read
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action: {url.path}"})
            return
        origin = self.headers.get("Origin")
        if origin is not None and urlparse(origin).netloc != self.headers.get("Host"):
            # a page of another site posting to this server (browsers name the page's origin): refused
            self.close_connection = True
            self._json(HTTPStatus.FORBIDDEN, {"error": f"requests from {origin[:80]} are not served"})
            return
        try:
            self._json(HTTPStatus.OK, routes[url.path](parse_qs(url.query)))
        except TooLarge as err:
            self.close_connection = True  # a body left unread must not be read as the next request
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(err), "downscale": list(err.size)})
        except (ValueError, OSError) as err:
            self.close_connection = True
            self._json(HTTPStatus.BAD_REQUEST, {"error": one_line(err)})
        except Exception as err:  # noqa: BLE001  (a bug of ours: say so, keep serving)
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {one_line(err)}"})

    def _load(self, query: dict) -> dict:
        ex = self.server.explorer
        if "builtin" in query:
            self._body()  # (nothing is expected; read so that the connection stays in step)
            image_id, rgb = ex.load(builtin=query["builtin"][0])
        else:
            image_id, rgb = ex.load(self._body(), downscale=query.get("downscale", ["0"])[0] == "1")
        return {"id": image_id, "width": rgb.shape[1], "height": rgb.shape[0], "image": png_data_url(rgb)}

    def _fill(self, _query: dict) -> dict:
        payload = self._json_body()
        fill_id, fill = self.server.explorer.fill(payload.get("image"), data_url_bytes(payload.get("mask"), "mask"))
        shown = np.where(fill.mask[..., None], np.uint8(255), fill.image)  # the input as the model saw it
        return {"fill": fill_id, "input": png_data_url(shown), "coarse": png_data_url(fill.coarse),
                "result": png_data_url(fill.result), "mask": png_data_url(fill.mask.astype(np.uint8) * 255),
                "flow": None if fill.flow is None else png_data_url(fill.flow), "legend": legend_url(),
                "seconds": round(fill.seconds, 3)}  # fmt: skip

    def _sources(self, _query: dict) -> dict:
        payload = self._json_body()
        row, col, k = payload.get("row"), payload.get("col"), payload.get("k", 5)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (row, col)):
            raise ValueError(f"row and col must be integers (pixels), got {row!r} and {col!r}")
        fill, src = self.server.explorer.sources(payload.get("fill"), (row, col), k)
        sources = [{"box": list(box), "weight": weight, "key": list(key)}
                   for box, weight, key in zip(src.boxes, src.weights, src.keys, strict=True)]  # fmt: skip
        return {"query": list(src.query), "in_hole": bool(fill.mask[row, col]), "sources": sources}


class AppServer(ThreadingHTTPServer):
    """The app's server: one thread per connection, each kept with its socket so that closing can end it.

    A connection's thread may still be running when the server closes (a browser's idle keep-alive connection, or a
    request answered a moment ago). Left alone, it is a daemon thread alive at interpreter exit, and the process
    then aborted now and then at Ctrl-C (``terminate called without an active exception``). So `server_close` shuts
    down the open connections' sockets (a thread waiting for a request returns at once) and waits for their threads,
    up to `CLOSE_WAIT` seconds in all (a fill still computing then ends with the process, as before).
    """

    daemon_threads = True
    CLOSE_WAIT = 5.0

    def __init__(self, explorer: Explorer, host: str = "127.0.0.1", port: int = 8080, model_name: str = "") -> None:
        super().__init__((host, port), Handler)
        self.explorer, self.model_name = explorer, model_name
        self._connections: list[tuple[threading.Thread, socket.socket]] = []
        self._connections_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        """Serve the connection on a new thread, as ``ThreadingMixIn`` does, and keep both until they are done."""
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self._connections_lock:
            self._connections = [(t, r) for t, r in self._connections if t.is_alive()]
            self._connections.append((thread, request))
        thread.start()

    def server_close(self) -> None:
        """Stop listening, end the open connections and wait for their threads (class docstring)."""
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for _, request in connections:
            with contextlib.suppress(OSError):  # already closed by its thread
                request.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + self.CLOSE_WAIT
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"
