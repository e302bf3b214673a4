"""Alice imports AG News-style rows whose labels are numbers, in a real browser: she maps the
numbers to her labels on the import page and follows the link back to her project."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Annotation, Project
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.browser import page as page  # the shared fixture
from tests.test_import_mapping import AG_NEWS_LIKE
from tests.test_import_mapping import news as news  # the fixture

pytestmark = BROWSER_STORY


def test_alice_maps_numbers_to_labels_on_the_import_page(
    live_server: LiveServer, page: Page, alice: User, news: Project
) -> None:
    log_in(page, live_server, alice)
    page.goto(f"{live_server.url}/projects/{news.pk}/import/")
    page.get_by_label("File:", exact=True).set_input_files(
        files=[{"name": "test.csv", "mimeType": "text/csv", "buffer": AG_NEWS_LIKE}]
    )
    page.get_by_label("Text column:", exact=True).fill("3")
    page.get_by_label("Label column:", exact=True).fill("1")
    page.get_by_label("The first row is data, not a header").check()
    page.get_by_label("Map file values to labels").fill(
        "1 = World\n2 = Sports\n3 = Business\n4 = Sci/Tech"
    )

    page.get_by_role("button", name="Preview").click()  # first, see what would be read

    preview = page.locator("[data-preview]")
    expect(preview.locator("tbody tr")).to_have_count(4)
    expect(preview.locator("tbody tr").first).to_contain_text("3 → Business")
    assert not news.items.exists()
    page.get_by_role("button", name="Import").click()  # the previewed file, no second upload

    expect(page.get_by_text("imported 4, duplicates 0, rejected 0")).to_be_visible()
    assert Annotation.objects.filter(item__project=news).count() == 4
    page.get_by_role("link", name=f"Back to {news.name}").click()
    expect(page.get_by_role("heading", name=news.name)).to_be_visible()
