"""Every page in a real browser, checked by axe-core, on a phone, with the keyboard, in the dark.

Alice leads "Reviews" (two model versions, answers, a disagreement) and Bob annotates it.
axe-core (vendored in tests/vendor/axe-core, never served by Sift) runs inside each page and
reports what it finds; a serious or critical violation fails the story, and the counts per
page are printed (`pytest -s`). Bob then labels a project of twelve labels on a 390 px phone
and with the keyboard alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from labeling.models import Annotation, Project, Role
from labeling.services import resolve_labels, submit_answer
from tests.browser import BROWSER_STORY, log_in
from tests.browser import browser as browser  # the shared fixture
from tests.conftest import add_items, label, make_project, serve
from tests.test_model_report import add_version

pytestmark = BROWSER_STORY

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()
BLOCKING = {"serious", "critical"}
PHONE = {"width": 390, "height": 844}
TWELVE = [f"topic {n}" for n in range(1, 13)]


def axe_violations(page: Page, **options: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it stands: rule id, impact and the elements hit."""
    # Evaluated, not added as a <script>: Sift's Content-Security-Policy stays in force.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    return list(
        page.evaluate(
            """async (options) => {
                const result = await axe.run(document, {resultTypes: ["violations"], ...options});
                return result.violations.map(v => ({
                    id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(" ")),
                }));
            }""",
            options,
        )
    )


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in BLOCKING]


@pytest.fixture
def reviews(alice: User, bob: User, dora: User) -> Project:
    """Alice's "Reviews": answers from Bob and Dora, one disagreement, two model versions."""
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=8)
    project.overlap = 2
    project.save()
    for version, accuracy in [(1, 0.6), (2, 0.75)]:
        evaluation = {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.1, accuracy + 0.1]}
        add_version(project, version, 10 * version, 100, 30, 6, evaluation=evaluation)
    items = list(project.items.order_by("pk"))
    for item, name in zip(items[:4], ["positive", "negative", "positive", "neutral"], strict=True):
        label(project, bob, item, name)
    label(project, dora, items[0], "negative")
    return project


@pytest.fixture
def twelve(alice: User, bob: User) -> Project:
    """A project of twelve labels, made the way a lead makes one, with five items."""
    project = make_project(alice, (bob, Role.ANNOTATOR), name="Twelve")
    project.labels.all().delete()
    project.set_labels(TWELVE)
    add_items(project, [f"twelve-label item {n}, long enough to wrap on a phone" for n in range(5)])
    return project


def context_page(browser: Browser, **options: Any) -> Iterator[Page]:
    context = browser.new_context(**{"viewport": {"width": 1366, "height": 900}, **options})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from context_page(browser)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from context_page(browser, viewport=PHONE, has_touch=True, is_mobile=True)


def lead_pages(project: Project) -> dict[str, str]:
    item = project.items.order_by("pk").first()
    assert item is not None
    base = f"/projects/{project.pk}"
    return {
        "project list": "/",
        "project detail": f"{base}/",
        "label": f"{base}/label/",
        "model report": f"{base}/model/report/",
        "settings": f"{base}/settings/",
        "remove a label": f"{base}/labels/{project.labels.order_by('pk').first().pk}/remove/",  # type: ignore[union-attr]
        "delete the project": f"{base}/delete/",
        "members": f"{base}/members/",
        "people": f"{base}/people/",
        "items": f"{base}/items/",
        "item detail": f"{base}/items/{item.pk}/",
        "import": f"{base}/import/",
        "export": f"{base}/export/",
        "new project": "/projects/new/",
        "API tokens": "/account/tokens/",
        "password change": "/accounts/password_change/",
        "API docs": "/api/v1/docs/",
        "not found": "/projects/999999/",
    }


def audit(page: Page, live_server: LiveServer, pages: dict[str, str], who: str) -> list[str]:
    """Visit each page, print axe's counts and return one line per blocking violation."""
    problems = []
    for name, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None
        # An error page would be audited in place of the page itself.
        assert response.status == (404 if name == "not found" else 200), (name, response.status)
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        found = blocking(violations)
        print(f"axe {who:<10} {name:<16} serious/critical {len(found)}  all {len(violations)}")
        problems += [f"{who} {name}: {v['id']} ({v['impact']}) {v['targets'][:3]}" for v in found]
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_page_has_a_serious_or_critical_axe_violation(
    live_server: LiveServer, browser: Browser, reviews: Project, alice: User, bob: User, scheme: str
) -> None:
    problems = []
    for who, user in [("anonymous", None), ("lead", alice), ("annotator", bob)]:
        for page in context_page(browser, color_scheme=scheme):
            if user is None:
                pages = {"log in": "/accounts/login/"}
            else:
                log_in(page, live_server, user)
                every = lead_pages(reviews)
                names = every if user == alice else ["project list", "project detail", "label"]
                pages = {name: every[name] for name in names}
            problems += audit(page, live_server, pages, f"{who}/{scheme}")
    assert problems == []


def test_the_label_page_fits_a_phone_and_every_target_takes_a_thumb(
    live_server: LiveServer, phone: Page, twelve: Project, bob: User
) -> None:
    log_in(phone, live_server, bob)
    # Bob's last answers sit beside the item; their long texts once widened the page.
    for item in twelve.items.order_by("pk")[:2]:
        serve(twelve, bob, item)
        submit_answer(twelve, bob, item, resolve_labels(twelve, ["topic 1"]))
    phone.goto(f"{live_server.url}/projects/{twelve.pk}/label/")
    expect(phone.locator("article.item-text")).to_be_visible()

    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    text = phone.locator("article.item-text").bounding_box()
    assert text is not None
    assert text["x"] >= 0
    assert text["x"] + text["width"] <= PHONE["width"]
    targets = phone.locator(".label-button, [data-action=skip], [data-action=undo]")
    expect(targets).to_have_count(len(TWELVE) + 2)
    for index in range(targets.count()):
        box = targets.nth(index).bounding_box()
        assert box is not None
        assert box["x"] >= 0, (index, box)
        assert box["x"] + box["width"] <= PHONE["width"], (index, box)
        assert box["height"] >= 44, (index, box)


def test_tables_and_charts_scroll_inside_their_cards_on_a_phone(
    live_server: LiveServer, phone: Page, reviews: Project, alice: User
) -> None:
    log_in(phone, live_server, alice)
    for path in ["model/report/", "settings/", "people/", "members/"]:
        phone.goto(f"{live_server.url}/projects/{reviews.pk}/{path}")
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
    phone.goto(f"{live_server.url}/projects/{reviews.pk}/model/report/")
    tick = phone.locator(".chart text").first
    # The SVG is scaled to its box: the text's drawn height is what a reader sees.
    box = tick.bounding_box()
    assert box is not None
    assert box["height"] >= 10, box


def test_twelve_labels_get_their_own_keys_and_colours_and_a_key_list(
    live_server: LiveServer, page: Page, twelve: Project, bob: User
) -> None:
    log_in(page, live_server, bob)
    page.goto(f"{live_server.url}/projects/{twelve.pk}/label/")
    page.wait_for_load_state("load")
    buttons = page.locator(".label-button")
    expect(buttons).to_have_count(12)
    keys = buttons.evaluate_all("bs => bs.map(b => b.dataset.hotkey)")
    colours = buttons.evaluate_all("bs => bs.map(b => b.style.getPropertyValue('--c'))")
    assert all(keys), keys
    assert len(set(keys)) == 12, keys
    assert all(colours), colours
    assert len(set(colours)) == 12, colours

    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard keys")
    expect(dialog).to_be_visible()
    rows = dialog.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    for key, name in zip(keys, TWELVE, strict=True):
        assert [key, f"Answer {name}"] in rows, rows
    page.keyboard.press("1")  # keys go to the open list, not to the item
    assert not Annotation.objects.filter(annotator=bob).exists()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    shown = page.locator("article.item-text").get_attribute("data-item-id")
    page.keyboard.press(keys[9])  # the tenth label: once without a key
    expect(page.locator("article.item-text")).not_to_have_attribute("data-item-id", str(shown))
    answer = Annotation.objects.get(annotator=bob)
    assert (answer.item_id, answer.label_names()) == (int(str(shown)), ["topic 10"])


def test_the_label_page_announces_each_item_and_names_its_parts(
    live_server: LiveServer, page: Page, twelve: Project, bob: User
) -> None:
    log_in(page, live_server, bob)
    page.goto(f"{live_server.url}/projects/{twelve.pk}/label/")
    page.wait_for_load_state("load")
    expect(page.locator("h1")).to_have_count(1)
    progress = page.get_by_role("progressbar")
    expect(progress).to_have_count(1)
    assert progress.evaluate("p => [p.tagName, p.value, p.max]") == ["PROGRESS", 0, 5]

    item_text = page.locator("article.item-text")
    first = item_text.get_attribute("data-item-id")
    page.keyboard.press("1")
    expect(item_text).not_to_have_attribute("data-item-id", str(first))
    # The region lives outside the swapped workspace, so a screen reader hears the change.
    announcer = page.locator("#announcer[aria-live=polite]")
    expect(announcer).to_have_text("New item: " + str(item_text.text_content()).strip())
    assert progress.evaluate("p => p.value") == 1
    # A skip is no answer: "mine today" stays at one.
    second = item_text.get_attribute("data-item-id")
    page.keyboard.press("Space")
    expect(item_text).not_to_have_attribute("data-item-id", str(second))
    expect(page.locator("#mine-today")).to_have_text("1")


def test_a_focused_label_looks_unlike_a_chosen_one(
    live_server: LiveServer, page: Page, twelve: Project, bob: User
) -> None:
    item = twelve.items.order_by("pk").first()
    assert item is not None
    serve(twelve, bob, item)
    submit_answer(twelve, bob, item, resolve_labels(twelve, ["topic 1"]))
    log_in(page, live_server, bob)
    page.goto(f"{live_server.url}/projects/{twelve.pk}/label/items/{item.pk}/")
    chosen = page.locator(".label-button.chosen")
    expect(chosen).to_contain_text("topic 1")
    focused = page.locator(".label-button", has_text="topic 2")
    while not focused.evaluate("b => b === document.activeElement"):
        page.keyboard.press("Tab")

    look = "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.outlineStyle]; }"
    plain = page.locator(".label-button", has_text="topic 3").evaluate(look)
    assert focused.evaluate("b => b.matches(':focus-visible')")
    assert focused.evaluate(look)[0] == plain[0]  # focus adds a ring, not a fill
    assert focused.evaluate(look)[1] != "none"
    assert chosen.evaluate(look)[0] != plain[0]
    assert chosen.evaluate(look)[1] == "none"


def test_dark_mode_follows_the_system_and_keeps_its_contrast(
    live_server: LiveServer, page: Page, twelve: Project, bob: User
) -> None:
    log_in(page, live_server, bob)
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live_server.url}/projects/{twelve.pk}/label/")
    background = page.evaluate(
        "getComputedStyle(document.body).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)"
    )
    assert max(background) < 60, background
    assert axe_violations(page, runOnly=["color-contrast"]) == []
