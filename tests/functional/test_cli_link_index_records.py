"""`joinedup link index --records`: where to write is refused in one line, before linkage,
when neither a folder nor a store is given or the store cannot be reached (the end-to-end run
on both databases is in test_web_person_index.py)."""

from __future__ import annotations

from pathlib import Path

from cli_run import flat, joinedup
from test_cli_link_index import _sources


def test_nowhere_to_write_or_a_store_out_of_reach_is_refused(tmp_path: Path) -> None:
    _sources(tmp_path)
    run = joinedup("link", "index", "gp.csv", "acute.csv", cwd=tmp_path)
    assert run.returncode != 0
    assert flat(run.stderr) == "error: give -o DIR, --records URL|PATH, or both: where to write"
    url = "postgresql://mpi:secret-word@127.0.0.1:1/records"
    run = joinedup("link", "index", "gp.csv", "acute.csv", "--records", url, cwd=tmp_path)
    assert run.returncode != 0
    message = flat(run.stderr)
    assert message.startswith("error: records: cannot open postgresql+psycopg://mpi:***@")
    assert "secret-word" not in message + flat(run.stdout)
    run = joinedup("link", "index", "gp.csv", "--records", "mysql://x@y/z", cwd=tmp_path)
    assert run.returncode != 0 and "mysql is not a supported database" in flat(run.stderr)
