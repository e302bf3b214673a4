"""Alice works through her items in a real browser: she searches as she types, labels the whole
filtered result in one go after a confirmation, opens an item and relabels it there.

Her "Topics" project has 12 sports and 12 finance texts and no answers yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Adjudication, Item, Project, Role
from modeling.services.refresh import refresh_model
from modeling.services.training_data import training_set
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.conftest import client_for, label, make_topics_project, serve, topic_of
from tests.worker import running_worker

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
        "&batch=&sort=newest&predicted=&min_confidence=&max_confidence=&meaning="
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


def test_alice_finds_items_by_meaning_labels_them_and_the_export_follows(
    live_server: LiveServer, page: Page, alice: User, bob: User, topics: Project, tmp_path: Path
) -> None:
    items = list(topics.items.order_by("id"))
    for item in items[:6] + items[12:18]:  # six answers of each topic
        serve(topics, bob, item)
        label(topics, bob, item, topic_of(item))
    assert refresh_model(topics.pk, run_id="run-1") is not None
    log_in(page, live_server, alice)
    page.goto(f"{live_server.url}/projects/{topics.pk}/items/")

    with running_worker(tmp_path / "worker.log"):  # it embeds the phrase
        page.get_by_role("searchbox", name="By meaning").fill("a football game")
        closeness = page.get_by_role("columnheader", name="Closeness")
        expect(closeness).to_be_visible(timeout=60_000)  # once the worker has embedded it
    rows = page.locator("#results tbody tr[data-item]")
    expect(rows).to_have_count(24)  # every item, closest first
    closest = [int(pk) for pk in rows.evaluate_all("rs => rs.map(r => r.dataset.item)")]
    assert {topic_of(item) for item in Item.objects.filter(pk__in=closest[:12])} == {"sports"}

    page.get_by_label("Predicted").select_option("sports")
    expect(rows).to_have_count(12)
    page.get_by_label("Give the label").select_option("sports")
    page.get_by_label("to every item that matches these filters").check()
    page.get_by_role("button", name="Label…").click()
    page.get_by_role("button", name="Label 12 items sports").click()
    expect(page.get_by_text("12 items now have the label sports")).to_be_visible()

    trained = training_set(topics, list(topics.labels.order_by("position")))
    assert trained.class_counts == {"sports": 12, "finance": 6}
    export = client_for(alice).get(f"/api/v1/projects/{topics.pk}/export/", {"format": "jsonl"})
    rows_out = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]  # type: ignore[attr-defined]
    ruled = {row["id"] for row in rows_out if row["adjudicated"]}
    assert ruled == {item.pk for item in items[:12]}
    assert all(row["label"] == "sports" for row in rows_out if row["id"] in ruled)
