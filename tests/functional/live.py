"""The dashboard served for real, under Uvicorn on a loopback port, for tests."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from joinedup.web.settings import WebSettings


@contextmanager
def serving(
    settings: WebSettings, *, warm: bool = True, mount: Callable[[Any], None] | None = None
) -> Iterator[str]:
    """The real application for `settings` under Uvicorn on a free loopback port, warmed up
    (unless not `warm`: then each page's figures are built when first asked for), with what
    `mount` adds to the app (the records store's API and pages, as `serve --records` mounts
    them); yields its address and stops it afterwards."""
    import uvicorn

    from joinedup.web.app import create_app

    app = create_app(settings, warm=warm)
    if mount is not None:
        mount(app)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning",
            access_log=False, proxy_headers=False,  # as `joinedup serve` runs it
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{address}/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the dashboard did not become ready within 180 s")
        yield address
    finally:
        server.should_exit = True
        thread.join(timeout=30)
