"""`joinedup footprint` end to end, as a user runs it from a shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _joinedup(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `joinedup` command (or the module) with a wide, plain terminal."""
    exe = shutil.which("joinedup", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-c", "from joinedup.cli import main; main()"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [*command, *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.reference
def test_from_reference_builds_cheshire_and_merseyside(reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp.json"
    run = _joinedup(
        "footprint", "from-reference", "--icb", "QYG",
        "--reference-dir", str(reference_dir), "-o", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    text = _flat(run.stdout)
    assert "9 places" in text
    assert "347 practices" in text
    assert "no PCN codes" in text
    assert "Liverpool" in text

    check = _joinedup("footprint", "validate", str(out), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout


def test_default_show_and_validate_agree(tmp_path: Path) -> None:
    written = _joinedup("footprint", "default", "-o", "default.json", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "default.json").is_file()
    shown = _joinedup("footprint", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "5 places" in _flat(shown.stdout)
    assert "fictional" in shown.stdout.lower()
    check = _joinedup("footprint", "validate", "default.json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr


def test_validate_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    assert _joinedup("footprint", "default", "-o", "fp.json", cwd=tmp_path).returncode == 0
    data = json.loads((tmp_path / "fp.json").read_text(encoding="utf-8"))
    data["practices"][3]["pcn"] = "U99999"
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")

    run = _joinedup("footprint", "validate", "bad.json", cwd=tmp_path)
    assert run.returncode == 2
    assert "practices.3.pcn" in _flat(run.stderr)
    assert "Traceback" not in run.stderr
    assert "OK" not in run.stdout


@pytest.mark.reference
def test_unknown_icb_exits_2_without_traceback(reference_dir: Path, tmp_path: Path) -> None:
    run = _joinedup(
        "footprint", "from-reference", "--icb", "QQQ", "--reference-dir", str(reference_dir),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert "QQQ" in run.stderr and "list-icbs" in _flat(run.stderr)
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("*.json")), "nothing is written on failure"
