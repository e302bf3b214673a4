"""Alice works through her items in a real browser: she searches as she types, labels the whole
filtered result in one go after a confirmation, opens an item and relabels it there.

Her "Topics" project has 12 sports and 12 finance texts and no answers yet.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Adjudication, Project, Role
from modeling.services.training_data import training_set
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.conftest import make_topics_project

pytestmark = BROWSER_STORY


@pytest.fixture
def topics(alice: User, bob: User) -> Project:
    return make_topics_project(alice, (bob, Role.ANNOTATOR))


def test_alice_searches_labels_the_result_in_bulk_and_relabels_one_item(
    live_server: LiveServer, page: Page, alice: User, topics: Project
) -> None:
    log_in(page, live_server, alice)
    page.goto(f"{live_server.url}/projects/{topics.pk}/")
    page.get_by_role("link", name="Items", exact=True).click()
    rows = page.locator("#results tbody tr[data-item]")
    expect(rows).to_have_count(24)

    # The list follows the typing, no button.
    page.get_by_role("searchbox", name="Search", exact=True).fill("shares")
    expect(rows).to_have_count(12)
    expect(page).to_have_url(
        f"{live_server.url}/projects/{topics.pk}/items/?q=shares&state=&label=&annotator="
        "&sort=newest&predicted=&min_confidence=&max_confidence=&meaning="
    )
    page.get_by_label("Give the label").select_option("finance")
    page.get_by_label("to every item that matches these filters").check()
    page.get_by_role("button", name="Label…").click()
    expect(page.get_by_role("heading", name="Give 12 items the label finance?")).to_be_visible()
    assert not Adjudication.objects.exists()
    page.get_by_role("button", name="Label 12 items finance").click()

    expect(page.get_by_text("12 items now have the label finance")).to_be_visible()
    expect(page.locator("#results tbody tr", has_text="ruled")).to_have_count(12)
    trained = training_set(topics, list(topics.labels.order_by("position")))
    assert trained.class_counts == {"sports": 0, "finance": 12}

    rows.first.get_by_role("link").first.click()
    expect(page.locator("[data-final]")).to_have_text("finance")
    page.get_by_label("sports").check()
    page.get_by_role("button", name="Save the ruling").click()
    expect(page.locator("[data-final]")).to_have_text("sports")
    page.get_by_role("link", name="Items").click()
    expect(page.get_by_role("searchbox", name="Search", exact=True)).to_have_value(
        "shares"
    )  # back to her search
