"""Alice opens the model report in a real browser: the learning curve and label chart draw.

Her project has two model versions and Bob's answers; Chromium renders the server-made SVGs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Role
from tests.browser import BROWSER_STORY, log_in, new_page
from tests.browser import browser as browser  # the shared fixture
from tests.conftest import label, make_project
from tests.test_model_report import add_version

pytestmark = BROWSER_STORY


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser, height=1200)
    yield page
    page.context.close()


def test_lead_sees_the_learning_curve_and_the_label_distribution(
    live_server: LiveServer, page: Page, alice: User, bob: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=3)
    for version, (labels, accuracy) in enumerate([(20, 0.6), (40, 0.75)], start=1):
        evaluation = {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.1, accuracy + 0.1]}
        add_version(project, version, labels, 100, 30, 6, cv_accuracy=0.5, evaluation=evaluation)
    for item, name in zip(
        project.items.order_by("pk"), ["positive", "positive", "negative"], strict=True
    ):
        label(project, bob, item, name)

    log_in(page, live_server, alice)
    page.get_by_role("link", name="Reviews").click()
    page.get_by_role("link", name="Model report").click()

    curve = page.get_by_role("img", name="Accuracy against labels used")
    expect(curve).to_be_visible()
    expect(curve.locator("polyline.chart-line")).to_have_count(2)
    expect(curve.locator("polygon.chart-band")).to_have_count(1)
    expect(curve.locator("circle.chart-point")).to_have_count(4)
    band = curve.locator("polygon.chart-band").bounding_box()
    assert band is not None
    assert band["width"] > 100  # drawn from the points, not squashed by a stylesheet

    bars = page.get_by_role("img", name="Answers per label").locator("rect.chart-bar")
    expect(bars).to_have_count(2)
    heights = [
        box["height"] for box in (bars.nth(0).bounding_box(), bars.nth(1).bounding_box()) if box
    ]
    assert heights[0] == pytest.approx(2 * heights[1], rel=0.01)
    expect(page.get_by_role("link", name="Download label CSV")).to_be_visible()
