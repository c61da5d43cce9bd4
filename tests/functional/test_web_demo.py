"""`joinedup demo --serve` (what `make demo` runs) ends by serving the dashboard at the address
it prints, where a README user can sign in."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_demo_ends_serving_the_dashboard_at_the_printed_address(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    assert exe
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOINEDUP_")}
    demo = subprocess.Popen(
        [exe, "demo", "--people", "8000", "--seed", "3", "-w", str(tmp_path / "demo.duckdb"),
         "--outputs", str(tmp_path / "outputs"), "--serve", "--port", str(port)],
        cwd=tmp_path, env={**env, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    printed: list[str] = []
    try:
        assert demo.stdout is not None
        address = None
        deadline = time.monotonic() + 400
        while address is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                break
            printed.append(line)
            found = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
            address = found.group(1) if found else None
        assert address == f"http://127.0.0.1:{port}/", "".join(printed)[-3000:]
        assert "clinician-demo-2026" in "".join(printed)  # the demo users, with passwords
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{address}ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        signed_in = httpx.post(
            f"{address}login", data={"username": "analyst", "password": "analyst-demo-2026"},
            follow_redirects=True, timeout=30,
        )  # fmt: skip
        assert signed_in.status_code == 200
        assert "system overview" in signed_in.text
    finally:
        demo.terminate()
        demo.wait(timeout=30)
