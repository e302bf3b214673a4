"""What the browser stories share: Debian's chromium through Playwright, and logging in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from tests.conftest import PASSWORD

# Playwright's sync API runs an asyncio event loop in this thread, so Django would refuse
# every ORM call the test makes ("You cannot call this from an async context"). The test
# body is plain blocking code that never shares a connection with a coroutine, so it is safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")

# Every browser story: marked, on a database the live server's thread can see, and skipped
# with a reason where chromium is missing (`make test` installs it).
BROWSER_STORY = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is missing; `make chromium` installs it"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def new_page(browser: Browser, height: int = 760, **options: object) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": height}, **options)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(5_000)
    return page


def log_in(page: Page, live_server: LiveServer, user: User) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab, 900 px tall, that keeps downloads; closed after the story."""
    page = new_page(browser, height=900, accept_downloads=True)
    yield page
    page.context.close()
