"""Alice opens the people page in a real browser: the throughput chart draws and downloads.

Bob and Dora have answered items of Alice's project; Chromium renders the server-made SVG.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Annotation, Role
from labeling.services import resolve_labels, submit_answer
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.conftest import make_project, serve
from tests.test_review import disputed_project

pytestmark = BROWSER_STORY


def test_lead_sees_the_throughput_chart_and_downloads_its_csv(
    live_server: LiveServer, page: Page, alice: User, bob: User, dora: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=6, overlap=2)
    for index, item in enumerate(project.items.order_by("pk")):
        for user in (bob, dora) if index < 3 else (bob,):
            serve(project, user, item)
            submit_answer(project, user, item, resolve_labels(project, ["positive"]))
    # One fixed hour, so the answers fall in one period however long the test takes.
    Annotation.objects.update(created_at=datetime(2025, 3, 3, 9, 30, tzinfo=UTC))

    log_in(page, live_server, alice)
    page.get_by_role("link", name="Reviews").click()
    page.get_by_role("link", name="People and agreement").click()

    chart = page.get_by_role("img", name="Answers per annotator over time")
    expect(chart).to_be_visible()
    # One bar for Bob's six and one for Dora's three on top.
    expect(chart.locator("rect.chart-bar")).to_have_count(2)
    heights = [
        float(h or 0)
        for h in chart.locator("rect.chart-bar").evaluate_all(
            "bars => bars.map(bar => bar.getAttribute('height'))"
        )
    ]
    assert heights[0] == pytest.approx(2 * heights[1])
    box = chart.locator("rect.chart-bar").first.bounding_box()
    assert box is not None
    assert box["height"] > 100  # drawn from the attribute, not squashed by a stylesheet

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "period_start,annotator,answers"
    # Every week of the project's life is a row, the empty ones with 0 answers.
    counted = [line.split(",")[1:] for line in lines[1:] if not line.endswith(",0")]
    assert counted == [["bob", "6"], ["dora", "3"]]


def test_reviewer_resolves_a_disagreement_with_one_click(
    live_server: LiveServer, page: Page, alice: User, bob: User, dora: User, rita: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita, items=3)

    log_in(page, live_server, rita)
    page.goto(f"{live_server.url}/projects/{project.pk}/people/")
    row = page.locator(f"#disagreement-{item.pk}")
    expect(row).to_contain_text("bob: positive")
    row.get_by_placeholder("Note (optional)").fill("irony: it is a complaint")
    row.get_by_role("button", name="negative").click()

    expect(page.locator(".messages")).to_contain_text(f"Item {item.pk} resolved.")
    expect(page.locator(f"#disagreement-{item.pk}")).to_have_count(0)
    ruling = page.locator(f"#ruling-{item.pk}")
    expect(ruling).to_contain_text("negative")
    expect(ruling).to_contain_text("rita")
    expect(ruling).to_contain_text("irony: it is a complaint")
