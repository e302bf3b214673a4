"""The annotator screen in a real browser: Bob labels Alice's project with the keyboard.

Alice leads the projects and Bob annotates them. Chromium drives the live server through
Playwright, so these stories cover what only a browser does: hotkeys, htmx swaps, the
seconds an item was on screen, and whether item text could ever run as script.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Annotation, Item, Project, Role
from tests.browser import BROWSER_STORY, log_in, new_page
from tests.browser import browser as browser  # the shared fixture
from tests.conftest import add_items, make_project

pytestmark = BROWSER_STORY

# How long Bob looks at each item before he answers, on the page's fake clock.
READING_MS = 1500


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = new_page(browser)
    # A controllable clock: time still flows, and `fast_forward` stands for Bob reading.
    page.clock.install()
    yield page
    page.context.close()


def open_annotator(page: Page, live_server: LiveServer, project: Project) -> None:
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    wait_until_annotator_is_ready(page, project)


def wait_until_annotator_is_ready(page: Page, project: Project) -> None:
    # The item is visible before the deferred scripts run; a key pressed then would be lost.
    page.wait_for_url(f"**/projects/{project.pk}/label/", wait_until="load")
    expect(page.locator("article.item-text")).to_be_visible()


def shown_item(page: Page) -> Item:
    item_id = page.locator("article.item-text").get_attribute("data-item-id")
    assert item_id is not None
    return Item.objects.get(pk=int(item_id))


def press_and_wait_for_next_item(page: Page, key: str) -> Item:
    """Bob reads the item on screen, presses the key, and gets the next item back."""
    before = shown_item(page)
    page.clock.fast_forward(READING_MS)
    page.keyboard.press(key)
    expect(page.locator("article.item-text")).not_to_have_attribute("data-item-id", str(before.pk))
    return before


def answers_of(user: User, project: Project) -> dict[int, list[str]]:
    answers = Annotation.objects.filter(annotator=user, item__project=project)
    return {answer.item_id: answer.label_names() for answer in answers}


def test_annotator_labels_five_items_with_the_keyboard_and_undoes_one(
    live_server: LiveServer, page: Page, alice: User, bob: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=20)
    log_in(page, live_server, bob)
    page.get_by_role("link", name="Reviews").click()
    page.get_by_role("link", name="Start labeling").click()
    wait_until_annotator_is_ready(page, project)
    # Survives only as long as the browser never loads a whole new page.
    page.evaluate("window.__marker = 1")

    pressed: dict[int, list[str]] = {}
    for key, label in [("1", "positive"), ("2", "negative"), ("3", "neutral"), ("1", "positive")]:
        pressed[press_and_wait_for_next_item(page, key).pk] = [label]
    undone = press_and_wait_for_next_item(page, "2")
    page.keyboard.press("Backspace")

    expect(page.locator("article.item-text")).to_have_attribute("data-item-id", str(undone.pk))
    expect(page.locator("article.item-text")).to_have_text(undone.text)
    assert answers_of(bob, project) == pressed
    seconds = Annotation.objects.filter(annotator=bob).values_list("seconds_spent", flat=True)
    assert all(s >= READING_MS / 1000 for s in seconds), seconds
    assert page.evaluate("window.__marker") == 1
    expect(page.locator("#mine-today")).to_have_text("4")


def test_multi_label_toggles_and_enter_submits(
    live_server: LiveServer, page: Page, alice: User, bob: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=5, multi_label=True)
    log_in(page, live_server, bob)
    open_annotator(page, live_server, project)

    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("2")
    page.keyboard.press("2")
    expect(page.get_by_role("checkbox", name="positive")).to_be_checked()
    expect(page.get_by_role("checkbox", name="negative")).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="neutral")).to_be_checked()
    answered = press_and_wait_for_next_item(page, "Enter")
    skipped = press_and_wait_for_next_item(page, "Space")

    answers = Annotation.objects.filter(annotator=bob, item__project=project)
    assert answers.count() == 2
    both = answers.get(item=answered)
    assert (sorted(both.label_names()), both.skipped) == (["neutral", "positive"], False)
    skip = answers.get(item=skipped)
    assert (skip.label_names(), skip.skipped) == ([], True)
    expect(page.get_by_role("checkbox", name="positive")).not_to_be_checked()


def test_reopening_an_answer_from_the_side_list_changes_it(
    live_server: LiveServer, page: Page, alice: User, bob: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=5)
    log_in(page, live_server, bob)
    open_annotator(page, live_server, project)
    first = press_and_wait_for_next_item(page, "1")

    history = page.locator("ol.history")
    history.get_by_role("link", name=first.text).click()
    expect(page.locator(".notice")).to_contain_text("Changing your answer")
    expect(page.locator("article.item-text")).to_have_attribute("data-item-id", str(first.pk))
    expect(page.locator(".label-button.chosen")).to_contain_text("positive")
    page.locator(".label-button", has_text="negative").click()

    expect(history.locator("li")).to_have_count(1)
    expect(history.locator(".answer")).to_have_text("negative")
    assert answers_of(bob, project) == {first.pk: ["negative"]}
    assert Item.objects.get(pk=first.pk).answer_count == 1


def test_item_text_is_escaped(live_server: LiveServer, page: Page, alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR))
    nasty = "<script>window.__pwned=1</script><b>bold</b>"
    add_items(project, [nasty])
    log_in(page, live_server, bob)
    open_annotator(page, live_server, project)

    expect(page.locator("article.item-text")).to_have_text(nasty)
    expect(page.locator("article.item-text b")).to_have_count(0)
    # The side list is swapped in by htmx, which runs any <script> it is handed.
    page.keyboard.press("1")
    expect(page.locator("ol.history .snippet")).to_have_text(nasty)
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    assert page.evaluate("typeof window.__pwned") == "undefined"
