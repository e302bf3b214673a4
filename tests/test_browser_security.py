"""Alice works with the network cut off beyond Sift's own host: every page, the API docs
included, comes whole from Sift, and the browser reports no Content-Security-Policy violation."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Browser, ConsoleMessage, Route, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Annotation, Project
from tests.browser import BROWSER_STORY, log_in, new_page
from tests.browser import browser as browser  # the shared fixture

pytestmark = BROWSER_STORY

# Playwright's init scripts run outside the page's policy, so this listener is not blocked.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""
# ReDoc's sidebar always shows Redocly's logo from their CDN. The policy keeps that request in
# the browser (the image then hides itself): the one block this story expects.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def set_visibility(state: str) -> str:
    return f"""
Object.defineProperty(document, "visibilityState", {{value: "{state}", configurable: true}});
document.dispatchEvent(new Event("visibilitychange"));
"""


def test_alice_labels_and_reads_the_api_docs_offline_within_the_policy(
    live_server: LiveServer, browser: Browser, alice: User, topics: Project
) -> None:
    page = new_page(browser)
    elsewhere: list[str] = []
    violations: list[str] = []

    def only_sift(route: Route) -> None:
        if urlsplit(route.request.url).hostname in {"localhost", "127.0.0.1"}:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    def note_violation(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "CSP violation" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.context.route("**/*", only_sift)
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", note_violation)
    log_in(page, live_server, alice)

    panel_polls: list[str] = []
    panel_url = reverse("model_status", args=[topics.pk])
    page.on("request", lambda r: panel_polls.append(r.url) if r.url.endswith(panel_url) else None)
    page.goto(f"{live_server.url}{reverse('project_detail', args=[topics.pk])}")
    expect(page.get_by_role("heading", name="Topics")).to_be_visible()
    # The idle model panel catches up when Alice returns to the tab, not when she leaves it.
    page.evaluate(set_visibility("hidden"))
    page.wait_for_timeout(300)
    assert panel_polls == []
    with page.expect_request(f"**{panel_url}"):
        page.evaluate(set_visibility("visible"))
    page.get_by_role("link", name="Start labeling").click()
    page.wait_for_url(f"**/projects/{topics.pk}/label/", wait_until="load")
    first = page.locator("article.item-text").get_attribute("data-item-id")
    page.keyboard.press("1")  # annotate.js answers through htmx
    expect(page.locator("article.item-text")).not_to_have_attribute("data-item-id", str(first))
    assert Annotation.objects.filter(annotator=alice, item_id=first).exists()

    page.goto(f"{live_server.url}{reverse('api-docs')}")
    expect(page.get_by_role("heading", name="Sift API")).to_be_visible()
    expect(page.get_by_text("/api/v1/projects/").first).to_be_attached()
    page.wait_for_timeout(500)  # let ReDoc finish styling and indexing the schema

    page.context.close()
    assert elsewhere == []
    unexpected = [violation for violation in violations if REDOC_LOGO not in violation]
    assert unexpected == [], "\n".join(unexpected)
