"""Schemathesis against the dashboard's OpenAPI document: generated requests to every API
operation, signed in as the roles that may use it, and not one server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from cli_run import PhmWarehouse
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from live import serving
from schemathesis import APIOperation, GenerationMode

from joinedup.web.access import AccessStore, create_demo_users
from joinedup.web.settings import WebSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_server(
    web_warehouse: PhmWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with an access database of its own: fuzzed sign-ins lock out nobody else."""
    access = Path(tmp_path_factory.mktemp("fuzz")) / "access.sqlite"
    store = AccessStore(access)
    create_demo_users(store, ["U99001", "U99002"])
    store.close()
    with serving(WebSettings(warehouse=web_warehouse.path, access_db=access)) as address:
        yield address


_TOKENS: dict[tuple[str, str], str] = {}


def token(server: str, username: str) -> str:
    """A signed-in token for `username`, kept until a case signs it out."""
    if (server, username) in _TOKENS:
        return _TOKENS[(server, username)]
    answer = httpx.post(
        f"{server}/api/v1/token",
        json={"username": username, "password": f"{username}-demo-2026"},
        timeout=30,
    )
    answer.raise_for_status()
    value: str = answer.json()["access_token"]
    _TOKENS[(server, username)] = value
    return value


def no_server_errors(
    operation: APIOperation, mode: GenerationMode, server: str, who: str, errors: list[str]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=15, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {token(server, who)}"}
        response = case.call(base_url=server, headers=headers)
        if case.method.upper() == "DELETE":
            _TOKENS.pop((server, who), None)
        if response.status_code >= 500:
            errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")

    try:
        run()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to draw.
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_no_server_errors(fuzzed_server: str) -> None:
    """Positive and negative examples for every operation (Schemathesis's pytest plugin does
    not run on pytest 9, so the cases are drawn here with Hypothesis directly)."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_server}/api/openapi.json")
    errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        # Worklists are for clinicians and everything else is open to admins.
        who = "clinician" if "worklists" in operation.path else "admin"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            no_server_errors(operation, mode, fuzzed_server, who, errors)
    assert not errors, "\n".join(errors[:20])
