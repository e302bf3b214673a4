"""Alice's project page in a real browser: the model panel polls only while work is going on."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Browser, Request, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Project
from tests.browser import BROWSER_STORY, log_in, new_page
from tests.browser import browser as browser  # the shared fixture

pytestmark = BROWSER_STORY


def test_the_idle_panel_sends_no_polls_until_alice_presses_retrain(
    live_server: LiveServer, browser: Browser, alice: User, topics: Project
) -> None:
    page = new_page(browser)
    log_in(page, live_server, alice)
    polls: list[Request] = []
    panel_url = reverse("model_status", args=[topics.pk])
    page.on(
        "request",
        lambda request: polls.append(request) if request.url.endswith(panel_url) else None,
    )
    page.goto(f"{live_server.url}{reverse('project_detail', args=[topics.pk])}")
    panel = page.locator("#model-status")
    expect(panel).to_have_attribute("data-watching", "false")

    page.wait_for_timeout(5_000)  # Playwright delivers request events meanwhile
    assert polls == []

    # No worker runs in this story, so the retrain stays queued and the panel keeps watching.
    panel.get_by_role("button", name="Retrain now").click()
    expect(panel).to_have_attribute("data-watching", "true")
    expect(panel.get_by_role("button", name="Working…")).to_be_disabled()
    page.wait_for_timeout(5_000)  # Playwright delivers request events meanwhile
    assert len(polls) >= 2
