"""Calling the records API's FHIR routes as a signed-in user, for the records tests."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

BASE = "/fhir/R4"


def fhir_request(client: TestClient, token: str, method: str, path: str, **kwargs: Any) -> Any:
    """`method` on BASE + `path` with `token` as the bearer; a `json` body is sent as
    application/fhir+json, as FHIR clients send it."""
    headers = {"Authorization": f"Bearer {token}"}
    if "json" in kwargs:
        kwargs["content"] = json.dumps(kwargs.pop("json"))
        headers["Content-Type"] = "application/fhir+json"
    return client.request(method, BASE + path, headers=headers, **kwargs)


def created_id(answer: Any) -> str:
    """The id of the resource a create answered 201 with (any other answer fails the test)."""
    assert answer.status_code == 201, answer.text
    rid: str = answer.json()["id"]
    return rid
