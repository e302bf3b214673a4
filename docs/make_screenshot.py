"""Regenerate docs/annotate.png, the annotator screen mid-session shown in the README.

Run from the repository root with `.venv/bin/python docs/make_screenshot.py`. It starts a
throw-away dev server on port 8765 with its own SQLite file, seeds the demo project, logs in
as the demo annotator, answers a few messages with the keyboard, and takes a 1280x760 shot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "annotate.png"
ADDRESS = "127.0.0.1:8765"
ANSWERS = 6

# Enough to sort the demo messages the way a careful annotator would; first match wins.
KEYWORDS = [
    ("billing", r"charged|refund|invoice|receipt|billed|billing|card|pay |discount|plan|price"),
    (
        "feature request",
        r"would (love|be great|help|let)|(can|could) you add|could the|please|^let |^add |"
        r"support for",
    ),
    ("praise", r"thank|loving|best|stars|great job|impressive|smooth|spot on|convinced"),
]


def label_for(text: str) -> str:
    for label, pattern in KEYWORDS:
        if re.search(pattern, text, re.IGNORECASE):
            return label
    return "bug"


def manage(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def wait_for_server(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # Any HTTP answer means the server is up.
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def answer_items(page: Page, count: int) -> None:
    article = page.locator("article.item-text")
    for _ in range(count):
        shown = article.get_attribute("data-item-id")
        label = label_for(article.inner_text())
        hotkey = page.locator(".label-button", has_text=label).get_attribute("data-hotkey")
        page.keyboard.press(hotkey or "Space")
        expect(article).not_to_have_attribute("data-item-id", shown or "")


def shoot(base_url: str, password: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 760}, device_scale_factor=1)
        page.goto(f"{base_url}/accounts/login/")
        page.get_by_label("Username").fill("annotator")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="Start labeling").first.click()
        page.wait_for_url("**/label/", wait_until="load")
        answer_items(page, ANSWERS)
        page.screenshot(path=OUTPUT)
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="shotvar") as var_dir:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(DEBUG="1", SIFT_VAR_DIR=var_dir)
        manage(env, "migrate", "--no-input")
        password = re.search(r"annotator\s+password (\S+)", manage(env, "seed_demo"))
        assert password, "seed_demo printed no password for the demo annotator"
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", ADDRESS, "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_server(f"http://{ADDRESS}/accounts/login/")
            shoot(f"http://{ADDRESS}", password.group(1))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
