"""Run the installed `joinedup` command as a user would, from a shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PhmWarehouse:
    """A warehouse filled by `joinedup synth` and `joinedup phm run`, and what the run printed."""

    path: Path
    folder: Path
    run: subprocess.CompletedProcess[str]


def joinedup(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run `joinedup ARGS` with a wide, plain terminal and capture what it prints."""
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-c", "from joinedup.cli import main; main()"]
    base = {k: v for k, v in os.environ.items() if k != "JOINEDUP_WAREHOUSE"}
    full_env = {**base, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    return subprocess.run(
        [*command, *args],
        check=False,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flat(text: str) -> str:
    return " ".join(text.split())
