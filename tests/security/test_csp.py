"""The Content-Security-Policy allows no inline script, and no page needs one."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.security

PAGES = ("/", "/places", "/finance", "/data-quality", "/about", "/admin/audit")


def directives(policy: str) -> dict[str, list[str]]:
    parts = (p.split() for p in policy.split(";") if p.strip())
    return {p[0]: p[1:] for p in parts}


def test_no_page_runs_inline_script_and_the_policy_refuses_it(security_server: str) -> None:
    with httpx.Client(base_url=security_server, timeout=60) as client:
        login = client.get("/login")
        signed = client.post("/login", data={"username": "admin", "password": "admin-demo-2026"})
        assert signed.status_code == 303, signed.text[:200]
        for path in ("/login", *PAGES):
            answer = login if path == "/login" else client.get(path)
            assert answer.status_code == 200, path
            policy = directives(answer.headers["content-security-policy"])
            assert policy["script-src"] == ["'self'"], (path, policy["script-src"])
            assert "'unsafe-eval'" not in policy.get("default-src", [])
            scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", answer.text, re.S | re.I)
            assert scripts, path
            for attributes, body in scripts:
                # Every script comes from this site's /static; none is written into the page.
                assert re.search(r'\bsrc="/static/[^"]+\.js"', attributes), (path, attributes)
                assert not body.strip(), (path, body[:80])
            assert not re.search(r"\son[a-z]+\s*=", answer.text, re.I), path  # no onclick=…
        script = client.get("/static/js-enabled.js")
        assert script.status_code == 200 and "js-enabled" in script.text
