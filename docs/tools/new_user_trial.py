"""The new analyst's trial of docs/web.md, replayed in Chromium with screenshots.

From the overview, an analyst finds the place and the PCN significantly worse than England
for emergency admissions and downloads their spine chart data, counting the clicks. Run it
against a served dashboard (demo users made by `joinedup users demo`):

    joinedup serve --warehouse ics.duckdb --port 8731 &
    .venv/bin/python docs/tools/new_user_trial.py http://127.0.0.1:8731

It writes docs/img/new-user-*.png and prints each step, the clicks and the files downloaded.
The same path is a test: tests/functional/test_indicator_pages.py (the new analyst's path).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from playwright.sync_api import Locator, Page, sync_playwright

INDICATOR = "emergency_admissions_dsr"
OUT = Path(__file__).resolve().parents[1] / "img"
CHROMIUM = "/usr/bin/chromium"


def shot(page: Page, name: str, target: Locator | None = None) -> None:
    path = OUT / f"new-user-{name}.png"
    if target is not None:
        target.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    print(f"  screenshot {path.relative_to(OUT.parents[1])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the dashboard's address, e.g. http://127.0.0.1:8731")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium's executable")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      accept_downloads=True)  # fmt: skip
        page = context.new_page()
        page.goto(f"{base}/login")
        page.fill("#username", "analyst")
        page.fill("#password", "analyst-demo-2026")
        with page.expect_navigation():
            page.click("#sign-in")
        clicks = 0

        print("0. The overview: 'In brief' lists indicators with areas worse than England")
        card = page.locator("section.jd-headlines")
        shot(page, "1-overview", card)
        link = page.locator(f"#worst-{INDICATOR}")
        print(f"   link: {link.inner_text()}")
        with page.expect_navigation():
            link.click()
        clicks += 1
        print(f"{clicks}. {page.url}: the areas worse than England, furthest first")
        shot(page, "2-indicator", page.locator("section[aria-labelledby=worse-areas]"))
        for level in ("place", "pcn"):
            first = page.locator(f"#worse-{level} li").first
            print(f"   worst {level}: {' '.join(first.inner_text().split())}")
            with page.expect_download() as info:
                first.locator("a.jd-spine-csv").click()
            clicks += 1
            text = Path(info.value.path()).read_text(encoding="utf-8")
            rows = list(csv.DictReader(io.StringIO(text)))
            print(f"{clicks}. downloaded {info.value.suggested_filename}: {len(rows)} indicators")
        print(f"Clicks from the overview: {clicks}")

        # Where the same data sits on the worst PCN's profile (not part of the count).
        href = page.locator("#worse-pcn li a").first.get_attribute("href")
        page.goto(f"{base}{href}")
        page.evaluate(
            "() => document.getElementById('profile-downloads').scrollIntoView({block: 'center'})"
        )
        shot(page, "3-pcn-profile")
        context.close()
        browser.close()


if __name__ == "__main__":
    main()
