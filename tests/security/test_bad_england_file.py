"""A user's England values file (`joinedup indicators compare FILE`) that is hostile or broken
is refused in one line naming the file (and the row and column where there is one), and the
warehouse's published indicator table is left exactly as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from cli_run import PhmWarehouse, joinedup

HEADER = "indicator_id,period,value,lower,upper,source\n"
GOOD = "copd_prevalence,2023-24,1.9,1.8,2.0,QOF\n"

BROKEN: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (HEADER.encode() + b"copd_prevalence,2023-24,1.9,,,Q\xff\xfeOF\n", "not UTF-8"),
    "a NUL byte": (
        HEADER.encode() + b"copd_prevalence,2023-24,1.9,,,QOF\x00\n",
        "row 2: column 'source': contains a control",
    ),
    "a field past the CSV limit": (
        HEADER.encode() + b"copd_prevalence,2023-24,1.9,,," + b"Q" * 200_000 + b"\n",
        "not a readable",
    ),
    "a value that is not finite": (
        (HEADER + "copd_prevalence,2023-24,1e999,,,QOF\n").encode(),
        "row 2: column 'value'",
    ),
    "an indicator nobody defined": (
        (HEADER + GOOD + "'; DROP TABLE phm_indicator_values; --,2023-24,1,,,QOF\n").encode(),
        "row 3: column 'indicator_id'",
    ),
    "a header only": (HEADER.encode(), "no rows after the header"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_england_file_is_refused_and_changes_nothing(
    small_web_warehouse: PhmWarehouse, tmp_path: Path, case: str
) -> None:
    warehouse = tmp_path / "ics.duckdb"
    shutil.copyfile(small_web_warehouse.path, warehouse)
    before = _sha(warehouse)
    content, reason = BROKEN[case]
    england = tmp_path / "england.csv"
    england.write_bytes(content)
    result = joinedup(
        "indicators", "compare", str(england), "--warehouse", str(warehouse), cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert str(england) in message and reason in message
    assert "Traceback" not in result.stderr
    assert _sha(warehouse) == before
