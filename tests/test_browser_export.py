"""Alice exports from the page, in a real browser: no curl, no API URL to know.

Bob has labeled some of Alice's items. A small export downloads at once with the filters she
picked; one written in the background shows up in her list, which polls until the file is
ready, and downloads from there.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django import Settings
from pytest_django.live_server_helper import LiveServer

from labeling.models import ExportJob, Project, Role
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.conftest import label, make_project
from tests.worker import running_worker

pytestmark = BROWSER_STORY


@pytest.fixture
def labeled(alice: User, bob: User) -> Project:
    """Twelve items, Bob labeled the first eight: positive, negative, positive, ..."""
    project = make_project(alice, (bob, Role.ANNOTATOR), items=12)
    for n, item in enumerate(project.items.order_by("pk")[:8]):
        label(project, bob, item, ("positive", "negative")[n % 2])
    return project


def open_export_page(page: Page, live_server: LiveServer, lead: User, project: Project) -> None:
    log_in(page, live_server, lead)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.get_by_role("link", name="Export").click()
    expect(page.get_by_role("heading", name="Export", exact=True)).to_be_visible()


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_alice_downloads_the_positive_items_as_csv_from_the_page(
    live_server: LiveServer, page: Page, alice: User, labeled: Project
) -> None:
    open_export_page(page, live_server, alice, labeled)
    page.get_by_label("Label:", exact=True).select_option("positive")
    page.get_by_label("Annotator").select_option("bob")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export", exact=True).click()

    assert download.value.suggested_filename.endswith(".csv")
    rows = csv_rows(Path(download.value.path()))
    assert len(rows) == 4
    assert {row["label"] for row in rows} == {"positive"}


def test_a_bad_filter_is_explained_on_the_page(
    live_server: LiveServer, page: Page, alice: User, labeled: Project
) -> None:
    open_export_page(page, live_server, alice, labeled)
    page.get_by_label("Min agreement").fill("2")
    # The browser's own check would stop the form; a person with an old browser gets the server's.
    page.locator("form.export-form").evaluate("form => form.noValidate = true")

    page.get_by_role("button", name="Export", exact=True).click()

    expect(page.get_by_text("Ensure this value is less than or equal to 1")).to_be_visible()


def test_a_background_export_appears_in_alices_list_and_downloads_when_ready(
    live_server: LiveServer,
    page: Page,
    alice: User,
    labeled: Project,
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    monkeypatch.setenv("SIFT_MEDIA_ROOT", str(media))
    open_export_page(page, live_server, alice, labeled)
    page.get_by_label("Only items with a final label").check()
    page.get_by_label("Write the file in the background").check()

    with running_worker(tmp_path / "worker.log"):
        page.get_by_role("button", name="Export", exact=True).click()
        expect(page.get_by_text("A worker is writing the CSV file")).to_be_visible()
        # The list polls by itself until the worker is done.
        link = page.locator("#export-jobs").get_by_role("link", name="Download (8 rows)")
        expect(link).to_be_visible(timeout=60_000)

    expect(page.locator("#export-jobs")).to_have_attribute("data-working", "false")
    job = ExportJob.objects.get(project=labeled)
    assert (job.requested_by, job.status) == (alice, ExportJob.Status.DONE)
    with page.expect_download() as download:
        link.click()
    rows = csv_rows(Path(download.value.path()))
    assert [row["label"] for row in rows] == ["positive", "negative"] * 4
