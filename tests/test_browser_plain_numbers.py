"""Alice reads her project's model panel and report in a real browser, in plain words.

Her project has retrained three times (see tests/test_plain_numbers.py); Chromium shows
what each figure means, keeps the long reason for "Labels saved" folded until she asks.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Project
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.test_plain_numbers import retrained as retrained  # the shared fixture

pytestmark = BROWSER_STORY


def test_lead_reads_the_panel_and_the_report_in_plain_words(
    live_server: LiveServer, page: Page, alice: User, retrained: Project
) -> None:
    log_in(page, live_server, alice)
    page.get_by_role("link", name="Reviews").click()

    panel = page.locator("#model-status")
    expect(panel.locator("#cv-accuracy")).to_contain_text("59%")
    expect(panel.locator("#cv-accuracy")).to_contain_text("The queue picks hard items")
    expect(panel.locator(".advice")).to_contain_text("1 of 3 stable versions in a row")
    saved = panel.locator("#labels-saved")
    expect(saved).to_contain_text("not known yet")
    reason = saved.locator(".reason")
    expect(reason).to_contain_text("Cannot tell yet: random sampling")
    expect(reason).to_be_hidden()
    saved.get_by_text("Why not").click()
    expect(reason).to_be_visible()

    page.get_by_role("link", name="Model report").click()
    expect(page.locator("#total-labels-per-hour")).to_have_text("480,000")
    expect(page.locator("#total-cost")).to_have_text("not priced")
