"""A webhook's receiving end for the tests: a local HTTP endpoint that answers with the statuses it is given
(then 200) and keeps what it received."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Answers the calls with `statuses` in turn, then 200; keeps (headers, body) of every call in
    `received`. `hang`: it answers nothing until closed, so a caller's own timeout is what ends the call."""

    def __init__(self, statuses: list[int] | None = None, *, hang: bool = False) -> None:
        self.statuses, self.hang = list(statuses or []), hang
        self.released = threading.Event()
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                if receiver.hang:
                    receiver.released.wait()
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
