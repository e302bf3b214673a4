"""The REST API: who may call what, and a script's stories of labeling, tokens and webhooks.

Alice leads the project, Bob annotates, Rita reviews, Charlie is an outsider.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from config.celery import app as celery_app
from labeling.models import (
    Annotation,
    ApiToken,
    ExportJob,
    ImportJob,
    Item,
    Project,
    Role,
    Webhook,
)
from labeling.services import resolve_labels, submit_answer
from labeling.tasks import deliver_webhook
from labeling.webhook_delivery import DeliveryFailed, deliver
from labeling.webhooks import fire
from modeling.models import FineTuneRun
from tests.conftest import RecordingBroker, add_items, client_for, make_project, serve, token_client
from tests.fixtures import finance_texts, sports_texts

# --- Clients ---------------------------------------------------------------------------------


def call(client: Client, method: str, url: str, body: Any = None) -> HttpResponse:
    if body is None:
        response: HttpResponse = client.generic(method, url)
    else:
        response = client.generic(method, url, json.dumps(body), "application/json")
    return response


def post(client: Client, url: str, body: Any) -> HttpResponse:
    return call(client, "POST", url, body)


# --- The permission matrix -------------------------------------------------------------------


@dataclass
class World:
    """The project every matrix row runs against, and fresh objects for each request."""

    project: Project
    alice: User
    bob: User
    rita: User
    charlie: User
    bob_answer: Annotation
    webhook: Webhook
    export_job: ExportJob
    counter: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, stem: str) -> str:
        return f"{stem} {next(self.counter)}"

    def fresh_item(self) -> Item:
        return add_items(self.project, [self.unique("a fresh review")])[0]

    def fresh_served_item(self) -> Item:
        """A new item, served to every member: whoever calls may answer it."""
        item = self.fresh_item()
        for user in (self.alice, self.bob, self.rita):
            serve(self.project, user, item)
        return item

    def fresh_webhook(self) -> Webhook:
        return make_webhook(self.project, "http://127.0.0.1:9/hook")

    def url(self, name: str, **kwargs: int) -> str:
        return reverse(name, kwargs={"project_pk": self.project.pk, **kwargs})


def make_webhook(project: Project, url: str, **fields: Any) -> Webhook:
    fields.setdefault("events", [Webhook.Event.MODEL_PROMOTED])
    return Webhook.objects.create(project=project, url=url, secret="s3cret", **fields)


@dataclass(frozen=True)
class Row:
    url: Callable[[World], str]
    expect: dict[str, int]
    body: Callable[[World], Any] | None = None


PERSONAS = ("outsider", "reviewer", "annotator", "lead")  # the lead last: leads may delete


def members(ok: int) -> dict[str, int]:
    return {"outsider": 404, "reviewer": ok, "annotator": ok, "lead": ok}


def leads(ok: int) -> dict[str, int]:
    return {"outsider": 404, "reviewer": 403, "annotator": 403, "lead": ok}


EVERYONE = {"outsider": 200, "reviewer": 200, "annotator": 200, "lead": 200}
PROJECTS = lambda w: reverse("project-list")  # noqa: E731
PROJECT = lambda w: reverse("project-detail", args=[w.project.pk])  # noqa: E731
LABEL = lambda w: w.url("label-detail", pk=w.project.labels.get(name="neutral").pk)  # noqa: E731
ITEM = lambda w: w.url("item-detail", pk=w.project.items.first().pk)  # noqa: E731
ANSWER = lambda w: w.url("annotation-detail", pk=w.bob_answer.pk)  # noqa: E731
WEBHOOK = lambda w: w.url("webhook-detail", pk=w.fresh_webhook().pk)  # noqa: E731
EXPORT_JOB = lambda w: reverse("export-job-detail", args=[w.export_job.pk])  # noqa: E731
IMPORT_JOB = lambda w: reverse(  # noqa: E731
    "import-job-detail", args=[ImportJob.objects.create(project=w.project, file_name="a.csv").pk]
)
FINETUNE = lambda w: FineTuneRun.objects.create(project=w.project, task_id=w.unique("t"))  # noqa: E731

# Every /api/v1/ operation: its URL, a valid body, and the status each persona gets.
# Anonymous callers get 401 and revoked tokens 401 everywhere but the public schema and docs.
MATRIX: dict[tuple[str, str], Row] = {
    ("project-list", "GET"): Row(PROJECTS, EVERYONE),
    ("project-list", "POST"): Row(
        PROJECTS,
        # Only Alice holds the add-project permission.
        {"outsider": 403, "reviewer": 403, "annotator": 403, "lead": 201},
        lambda w: {"name": w.unique("Tickets"), "label_names": ["bug", "question"]},
    ),
    ("project-detail", "GET"): Row(PROJECT, members(200)),
    ("project-detail", "PUT"): Row(
        PROJECT, leads(200), lambda w: {"name": "Reviews", "instructions": "Be kind."}
    ),
    ("project-detail", "PATCH"): Row(PROJECT, leads(200), lambda w: {"retrain_every": 5}),
    ("label-list", "GET"): Row(lambda w: w.url("label-list"), members(200)),
    ("label-list", "POST"): Row(
        lambda w: w.url("label-list"), leads(201), lambda w: {"name": w.unique("mixed")}
    ),
    ("label-detail", "PUT"): Row(LABEL, leads(200), lambda w: {"name": "neutral"}),
    ("label-detail", "PATCH"): Row(LABEL, leads(200), lambda w: {"keywords": "meh, ok"}),
    ("item-list", "GET"): Row(lambda w: w.url("item-list"), members(200)),
    ("item-list", "POST"): Row(
        lambda w: w.url("item-list"), leads(201), lambda w: [{"text": w.unique("new review")}]
    ),
    ("item-detail", "GET"): Row(ITEM, members(200)),
    ("annotation-list", "GET"): Row(lambda w: w.url("annotation-list"), members(200)),
    ("annotation-list", "POST"): Row(
        lambda w: w.url("annotation-list"),
        members(201),
        lambda w: {"item": w.fresh_served_item().pk, "labels": ["positive"]},
    ),
    ("annotation-detail", "GET"): Row(ANSWER, members(200)),
    # Members change only their own answers: this one is Bob's.
    ("annotation-detail", "PUT"): Row(
        ANSWER,
        {"outsider": 404, "reviewer": 403, "annotator": 200, "lead": 403},
        lambda w: {"item": w.bob_answer.item_id, "labels": ["negative"]},
    ),
    ("annotation-detail", "PATCH"): Row(
        ANSWER,
        {"outsider": 404, "reviewer": 403, "annotator": 200, "lead": 403},
        lambda w: {"labels": ["neutral"]},
    ),
    ("queue-next", "GET"): Row(lambda w: w.url("queue-next"), members(200)),
    ("model-version-list", "GET"): Row(lambda w: w.url("model-version-list"), members(200)),
    ("training", "GET"): Row(lambda w: w.url("training"), members(200)),
    ("training", "POST"): Row(lambda w: w.url("training"), leads(202)),
    ("webhook-list", "GET"): Row(lambda w: w.url("webhook-list"), leads(200)),
    ("webhook-list", "POST"): Row(
        lambda w: w.url("webhook-list"),
        leads(201),
        lambda w: {"url": "https://example.com/hook", "events": ["export.ready"]},
    ),
    ("webhook-detail", "GET"): Row(WEBHOOK, leads(200)),
    ("webhook-detail", "PUT"): Row(
        WEBHOOK,
        leads(200),
        lambda w: {"url": "https://example.com/other", "events": ["model.promoted"]},
    ),
    ("webhook-detail", "PATCH"): Row(WEBHOOK, leads(200), lambda w: {"active": False}),
    ("webhook-detail", "DELETE"): Row(WEBHOOK, leads(204)),
    ("project-export", "GET"): Row(lambda w: w.url("project-export"), leads(200)),
    ("export-job-detail", "GET"): Row(EXPORT_JOB, leads(200)),
    ("import-job-detail", "GET"): Row(IMPORT_JOB, leads(200)),
    ("export-job-download", "GET"): Row(
        lambda w: reverse("export-job-download", args=[w.export_job.pk]), leads(200)
    ),
    ("finetune-list", "GET"): Row(lambda w: w.url("finetune-list"), members(200)),
    # One fine-tune at a time: each request finds none under way (a second one gets 409).
    ("finetune-list", "POST"): Row(
        lambda w: (FineTuneRun.objects.filter(project=w.project).delete(), w.url("finetune-list"))[
            1
        ],
        leads(202),
    ),
    ("finetune-detail", "GET"): Row(
        lambda w: w.url("finetune-detail", pk=FINETUNE(w).pk), members(200)
    ),
    ("finetune-cancel", "POST"): Row(
        lambda w: w.url("finetune-cancel", pk=FINETUNE(w).pk), leads(202)
    ),
    ("schema", "GET"): Row(lambda w: reverse("schema"), EVERYONE),
    ("api-docs", "GET"): Row(lambda w: reverse("api-docs"), EVERYONE),
}
PUBLIC = {("schema", "GET"), ("api-docs", "GET")}


def api_operations() -> set[tuple[str, str]]:
    """(URL name, method) of every operation routed under /api/v1/."""
    operations = set()
    for route, pattern in _walk(get_resolver().url_patterns, ""):
        if not route.startswith("api/v1/"):
            continue
        view = pattern.callback
        actions = getattr(view, "actions", None)
        if actions:
            methods = [method for method in actions if method != "head"]
        else:
            view_class = view.view_class  # type: ignore[attr-defined]
            methods = [
                method
                for method in view_class.http_method_names
                if method not in ("head", "options", "trace") and hasattr(view_class, method)
            ]
        operations |= {(str(pattern.name), method.upper()) for method in methods}
    return operations


def _walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def test_every_api_operation_has_a_row_in_the_permission_matrix() -> None:
    assert api_operations() == set(MATRIX)


@pytest.fixture
def world(
    project: Project,
    alice: User,
    bob: User,
    rita: User,
    charlie: User,
    settings: Settings,
    tmp_path: Path,
) -> World:
    settings.MEDIA_ROOT = tmp_path
    item = project.items.order_by("id").last()
    assert item is not None
    serve(project, bob, item)
    bob_answer, _ = submit_answer(project, bob, item, resolve_labels(project, ["positive"]))
    webhook = make_webhook(project, "http://127.0.0.1:9/hook")
    export_job = ExportJob.objects.create(
        project=project, requested_by=alice, format="jsonl", status=ExportJob.Status.DONE
    )
    export_job.file.save("reviews.jsonl", ContentFile(b'{"id": 1}\n'))
    return World(project, alice, bob, rita, charlie, bob_answer, webhook, export_job)


@pytest.mark.parametrize(("name", "method"), list(MATRIX), ids=[" ".join(op) for op in MATRIX])
def test_the_permission_matrix(world: World, name: str, method: str) -> None:
    row = MATRIX[name, method]
    people = {
        "outsider": world.charlie,
        "reviewer": world.rita,
        "annotator": world.bob,
        "lead": world.alice,
    }
    revoked, revoked_key = ApiToken.issue(world.alice)
    revoked.revoke()
    callers: dict[str, Client] = {
        "anonymous": Client(),
        "revoked token": Client(HTTP_AUTHORIZATION=f"Token {revoked_key}"),
    }
    for persona in PERSONAS:
        callers[f"{persona} by session"] = client_for(people[persona])
        callers[f"{persona} by token"] = token_client(people[persona])
    public = (name, method) in PUBLIC
    expected = {"anonymous": 200 if public else 401, "revoked token": 401}
    for persona in PERSONAS:
        expected[f"{persona} by session"] = row.expect[persona]
        expected[f"{persona} by token"] = row.expect[persona]

    observed = {
        caller: call(client, method, row.url(world), row.body(world) if row.body else None)
        for caller, client in callers.items()
    }

    assert {caller: r.status_code for caller, r in observed.items()} == expected


def test_session_writes_need_a_csrf_token_and_token_writes_do_not(
    project: Project, alice: User
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    url = reverse("label-list", args=[project.pk])

    assert post(browser, url, {"name": "sarcastic"}).status_code == 403
    assert post(token_client(alice), url, {"name": "sarcastic"}).status_code == 201


# --- Stories: projects, items, labeling ------------------------------------------------------


def test_a_lead_creates_a_project_through_the_api(alice: User) -> None:
    response = post(
        token_client(alice),
        reverse("project-list"),
        {"name": "Support tickets", "label_names": ["bug", "question", "praise"]},
    )

    assert response.status_code == 201
    project = Project.objects.get(pk=response.json()["id"])
    assert project.name == "Support tickets"
    assert project.role_of(alice) == Role.LEAD
    assert [(x["name"], x["hotkey"]) for x in response.json()["labels"]] == [
        ("bug", "1"),
        ("question", "2"),
        ("praise", "3"),
    ]


def test_a_project_needs_labels(alice: User) -> None:
    response = post(token_client(alice), reverse("project-list"), {"name": "Empty"})

    assert response.status_code == 400
    assert "label_names" in response.json()
    assert not Project.objects.filter(name="Empty").exists()


def test_a_lead_imports_items_as_a_json_list_and_as_jsonl(project: Project, alice: User) -> None:
    client = token_client(alice)
    url = reverse("item-list", args=[project.pk])

    listed = post(
        client,
        url,
        [
            {"text": "The app crashes on start"},
            {"text": "Love it", "label": "positive", "id": "t-2"},
        ],
    )
    jsonl = b'{"text": "Slow to load"}\n{"text": "Love   it"}\n{"body": "no text"}\n'
    streamed = client.post(url, jsonl, content_type="application/x-ndjson")

    assert listed.status_code == 201
    batch = ImportJob.objects.get(project=project, items__external_id="t-2")
    assert listed.json() == {
        "imported": 2,
        "labeled": 1,
        "duplicates": 0,
        "rejected": 0,
        "rejections": [],
        "job": batch.pk,
    }
    assert streamed.status_code == 201
    report = streamed.json()
    assert (report["imported"], report["duplicates"], report["rejected"]) == (1, 1, 1)
    assert report["rejections"][0]["line"] == 3
    loved = Item.objects.get(project=project, external_id="t-2")
    assert loved.text == "Love it"
    assert loved.annotations.get().label_names() == ["positive"]
    assert Item.objects.filter(project=project, text="Slow to load").exists()


def test_an_import_must_be_a_list_of_objects(project: Project, alice: User) -> None:
    url = reverse("item-list", args=[project.pk])

    response = post(token_client(alice), url, {"text": "not in a list"})

    assert response.status_code == 400
    assert project.items.count() == 20


def test_bob_labels_through_the_queue_and_a_retried_answer_is_stored_once(
    project: Project, bob: User
) -> None:
    client = token_client(bob)
    served = client.get(reverse("queue-next", args=[project.pk]))
    assert served.status_code == 200
    item_id = served.json()["item"]["id"]
    answers = reverse("annotation-list", args=[project.pk])
    answer = {"item": item_id, "labels": ["negative"], "client_id": str(uuid.uuid4())}

    first = post(client, answers, answer)
    retried = post(client, answers, answer)
    reused = post(client, answers, {**answer, "labels": ["positive"]})

    assert first.status_code == 201
    assert first.json()["annotator"] == "bob"
    assert retried.status_code == 200
    assert retried.json()["id"] == first.json()["id"]
    assert reused.status_code == 409
    stored = Annotation.objects.get(annotator=bob)
    assert stored.label_names() == ["negative"]
    assert stored.item_id == item_id
    following = client.get(reverse("queue-next", args=[project.pk]))
    assert following.json()["item"]["id"] != item_id


def test_the_queue_answers_204_when_nothing_is_left(alice: User, bob: User) -> None:
    empty = make_project(alice, (bob, Role.ANNOTATOR), name="Empty")

    response = token_client(bob).get(reverse("queue-next", args=[empty.pk]))

    assert response.status_code == 204


def test_an_item_of_another_project_is_refused(project: Project, alice: User, bob: User) -> None:
    other = make_project(alice, (bob, Role.ANNOTATOR), name="Other", items=1)
    stranger = other.items.get()

    response = post(
        token_client(bob),
        reverse("annotation-list", args=[project.pk]),
        {"item": stranger.pk, "labels": ["positive"]},
    )

    assert response.status_code == 400
    assert "item" in response.json()
    assert not Annotation.objects.exists()


def test_an_unknown_label_is_refused(project: Project, bob: User) -> None:
    item = project.items.first()
    assert item is not None

    response = post(
        token_client(bob),
        reverse("annotation-list", args=[project.pk]),
        {"item": item.pk, "labels": ["sarcastic"]},
    )

    assert response.status_code == 400
    assert "Unknown label 'sarcastic'" in json.dumps(response.json())


def pages(client: Client, url: str, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every page of a cursor-paginated list, following `next` links."""
    response = client.get(url, params)
    found = []
    while True:
        assert response.status_code == 200
        found.append(response.json()["results"])
        if response.json()["next"] is None:
            return found
        response = client.get(response.json()["next"])


def test_annotations_list_by_cursor_and_filter(
    project: Project, alice: User, bob: User, rita: User
) -> None:
    items = list(project.items.order_by("id"))
    serve(project, bob, *items[:3])
    serve(project, rita, *items[3:5])
    for item in items[:3]:
        submit_answer(project, bob, item, resolve_labels(project, ["positive"]))
    for item in items[3:5]:
        submit_answer(project, rita, item, resolve_labels(project, ["negative"]))
    client = token_client(alice)
    url = reverse("annotation-list", args=[project.pk])

    paged = pages(client, url, {"page_size": 2})
    by_bob = client.get(url, {"annotator": "bob"}).json()["results"]
    on_item = client.get(url, {"item": items[4].pk}).json()["results"]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    since_later = client.get(url, {"since": future}).json()["results"]

    assert [len(page) for page in paged] == [2, 2, 1]
    assert sorted(a["item"] for page in paged for a in page) == [i.pk for i in items[:5]]
    assert {a["annotator"] for a in by_bob} == {"bob"}
    assert len(by_bob) == 3
    assert [(a["annotator"], a["labels"]) for a in on_item] == [("rita", ["negative"])]
    assert since_later == []
    assert client.get(url, {"since": "yesterday"}).status_code == 400
    assert client.get(url, {"item": "first"}).status_code == 400


def test_items_list_by_cursor_and_filter(project: Project, bob: User) -> None:
    answered = project.items.order_by("id").first()
    assert answered is not None
    serve(project, bob, answered)
    submit_answer(project, bob, answered, resolve_labels(project, ["neutral"]))
    client = token_client(bob)
    url = reverse("item-list", args=[project.pk])

    paged = pages(client, url, {"page_size": 7})
    done = client.get(url, {"answered": "true"}).json()["results"]
    open_ = client.get(url, {"answered": "false", "page_size": 100}).json()["results"]
    found = client.get(url, {"search": "NUMBER 7"}).json()["results"]

    assert [len(page) for page in paged] == [7, 7, 6]
    assert [i["id"] for page in paged for i in page] == sorted(
        project.items.values_list("id", flat=True)
    )
    assert [i["id"] for i in done] == [answered.pk]
    assert len(open_) == 19
    assert [i["text"] for i in found] == ["review number 7"]


@pytest.mark.parametrize(
    ("answered", "answered_only"),
    [
        *[(yes, True) for yes in ("1", "TRUE", "Yes", "on")],
        *[(no, False) for no in ("0", "false", "NO", "off", "")],
    ],
)
def test_the_answered_filter_reads_every_spelling_of_yes_and_no(
    project: Project, bob: User, answered: str, answered_only: bool
) -> None:
    item = project.items.order_by("id").first()
    assert item is not None
    serve(project, bob, item)
    submit_answer(project, bob, item, resolve_labels(project, ["neutral"]))

    response = token_client(bob).get(
        reverse("item-list", args=[project.pk]), {"answered": answered, "page_size": 100}
    )

    unanswered = list(project.items.exclude(pk=item.pk).order_by("id").values_list("id", flat=True))
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["results"]] == (
        [item.pk] if answered_only else unanswered
    )


@pytest.mark.parametrize("answered", ["maybe", "2", "yes please"])
def test_a_garbled_answered_filter_is_refused_with_a_clear_message(
    project: Project, bob: User, answered: str
) -> None:
    response = token_client(bob).get(
        reverse("item-list", args=[project.pk]), {"answered": answered}
    )

    assert response.status_code == 400
    assert response.json() == {
        "answered": [f"answered takes 1 or 0 (or true/false, yes/no, on/off), not {answered!r}."]
    }


@pytest.mark.parametrize("page_size", ["0", "-1", "ten", "1001", "2.5"])
def test_a_bad_page_size_is_refused(project: Project, bob: User, page_size: str) -> None:
    response = token_client(bob).get(
        reverse("item-list", args=[project.pk]), {"page_size": page_size}
    )

    assert response.status_code == 400
    assert "page_size" in response.json()


# --- Stories: API tokens in the UI -----------------------------------------------------------


def test_bob_creates_a_token_uses_it_and_revokes_it(project: Project, bob: User) -> None:
    browser = client_for(bob)

    created = browser.post(reverse("api_tokens"), {"name": "labeling script"})
    html = created.content.decode()
    key_match = re.search(r'value="(sift_[^"]+)"', html)
    assert created.status_code == 200
    assert key_match is not None
    key = key_match.group(1)
    assert "cannot show it again" in html
    token = ApiToken.objects.get(user=bob)
    assert token.name == "labeling script"

    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    listed = api.get(reverse("project-list"))
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["results"]] == ["Reviews"]

    page = browser.get(reverse("api_tokens")).content.decode()
    assert key not in page
    assert f"{token.prefix}…" in page
    assert "labeling script" in page

    revoked = browser.post(reverse("revoke_api_token", args=[token.pk]))
    assert revoked.status_code == 302
    assert revoked["Location"] == reverse("api_tokens")
    assert api.get(reverse("project-list")).status_code == 401
    assert "revoked" in browser.get(reverse("api_tokens")).content.decode()


def test_bob_cannot_revoke_alices_token(alice: User, bob: User) -> None:
    token, _ = ApiToken.issue(alice, "alice's script")

    response = client_for(bob).post(reverse("revoke_api_token", args=[token.pk]))

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert "alice's script" not in client_for(bob).get(reverse("api_tokens")).content.decode()


def test_revoking_takes_a_post(bob: User) -> None:
    token, _ = ApiToken.issue(bob)

    response = client_for(bob).get(reverse("revoke_api_token", args=[token.pk]))

    assert response.status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_token_page_needs_a_login(db: None) -> None:
    response = Client().get(reverse("api_tokens"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_top_bar_links_to_the_token_page(bob: User) -> None:
    page = client_for(bob).get(reverse("project_list")).content.decode()

    assert f'href="{reverse("api_tokens")}"' in page


# --- Stories: webhooks -----------------------------------------------------------------------


def test_a_lead_adds_a_webhook_and_sees_its_secret_once(project: Project, alice: User) -> None:
    client = token_client(alice)
    url = reverse("webhook-list", args=[project.pk])

    created = post(
        client,
        url,
        {"url": "https://example.com/hooks/sift", "events": ["model.promoted"], "secret": "x"},
    )

    assert created.status_code == 201
    webhook = Webhook.objects.get(pk=created.json()["id"])
    assert webhook.project == project
    assert webhook.secret == created.json()["secret"]
    assert len(webhook.secret) >= 40
    assert webhook.events == ["model.promoted"]
    detail = reverse("webhook-detail", args=[project.pk, webhook.pk])
    assert "secret" not in client.get(url).json()[0]
    assert "secret" not in client.get(detail).json()

    changed = call(
        client, "PATCH", detail, {"events": ["export.ready", "model.promoted"], "active": False}
    )
    assert changed.status_code == 200
    webhook.refresh_from_db()
    assert (webhook.events, webhook.active) == (["export.ready", "model.promoted"], False)
    assert call(client, "DELETE", detail).status_code == 204
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"url": "https://example.com/h", "events": ["model.trained"]}, "events"),
        ({"url": "https://example.com/h", "events": []}, "events"),
        ({"url": "https://example.com/h"}, "events"),
        ({"url": "ftp://example.com/h", "events": ["export.ready"]}, "url"),
        ({"url": "not a url", "events": ["export.ready"]}, "url"),
    ],
)
def test_webhook_urls_and_events_are_validated(
    project: Project, alice: User, body: dict[str, Any], field_name: str
) -> None:
    response = post(token_client(alice), reverse("webhook-list", args=[project.pk]), body)

    assert response.status_code == 400
    assert field_name in response.json()
    assert not Webhook.objects.exists()


@dataclass
class Received:
    headers: Message
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers with `status`."""

    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    # Loopback receivers are for tests only; production refuses them (tests/test_security.py).
    settings.SIFT_WEBHOOK_ALLOW_LOOPBACK = True
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(Received(self.headers, body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/sift"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_delivery_is_a_post_signed_with_the_webhook_secret(
    project: Project, receiver: Receiver
) -> None:
    webhook = make_webhook(project, receiver.url)

    status = deliver(webhook.pk, "model.promoted", {"project": project.pk, "version": 3})

    assert status == 200
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Sift-Event"] == "model.promoted"
    expected = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Sift-Signature"], expected)
    uuid.UUID(request.headers["X-Sift-Delivery"])
    assert json.loads(request.body) == {"project": project.pk, "version": 3}
    webhook.refresh_from_db()
    assert webhook.last_status == "HTTP 200"
    assert webhook.last_delivery_at is not None


@pytest.mark.parametrize(
    ("status", "attempts", "gives_up"),
    [
        pytest.param(503, 1 + 5, True, id="a failing receiver is retried"),
        pytest.param(410, 1, False, id="a receiver that refuses the payload is not retried"),
    ],
)
def test_a_receiver_s_error_is_retried_with_the_same_delivery_id_only_while_it_may_pass(
    project: Project, receiver: Receiver, status: int, attempts: int, gives_up: bool
) -> None:
    webhook = make_webhook(project, receiver.url)
    receiver.status = status

    result = deliver_webhook.apply(args=[webhook.pk, "export.ready", {"n": 1}, "delivery-1"])

    assert result.failed() is gives_up
    assert result.successful() is not gives_up
    assert len(receiver.requests) == attempts
    assert {r.headers["X-Sift-Delivery"] for r in receiver.requests} == {"delivery-1"}
    webhook.refresh_from_db()
    assert webhook.last_status == f"HTTP {status}"


def test_an_unreachable_receiver_is_recorded_and_raises_for_a_retry(
    project: Project, settings: Settings
) -> None:
    settings.SIFT_WEBHOOK_ALLOW_LOOPBACK = True
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    webhook = make_webhook(project, f"http://127.0.0.1:{closed_port}/hook")

    with pytest.raises(DeliveryFailed):
        deliver(webhook.pk, "model.promoted", {})

    webhook.refresh_from_db()
    assert webhook.last_status.startswith("Failed:")
    assert webhook.last_delivery_at is not None


def test_a_deactivated_webhook_receives_nothing(project: Project, receiver: Receiver) -> None:
    webhook = make_webhook(project, receiver.url, active=False)

    assert deliver(webhook.pk, "model.promoted", {}) is None
    assert receiver.requests == []


def test_an_event_is_enqueued_after_commit_for_each_active_subscriber(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    wanted = make_webhook(project, "https://a.example/hook")
    make_webhook(project, "https://b.example/hook", events=[Webhook.Event.EXPORT_READY])
    make_webhook(project, "https://c.example/hook", active=False)
    broker = RecordingBroker()
    monkeypatch.setattr(celery_app, "send_task", broker.send_task)

    with django_capture_on_commit_callbacks(execute=True):
        fired = fire(project, Webhook.Event.MODEL_PROMOTED, {"version": 2})
        assert broker.sent == []

    assert fired == 1
    [(task, (webhook_id, event, payload, delivery_id))] = broker.sent
    assert task == deliver_webhook.name
    assert (webhook_id, event, payload) == (wanted.pk, "model.promoted", {"version": 2})
    uuid.UUID(delivery_id)


def test_a_dead_broker_does_not_fail_the_event_and_is_recorded(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    webhook = make_webhook(project, "https://a.example/hook")
    broker = RecordingBroker(BrokerError("connection refused"))
    monkeypatch.setattr(celery_app, "send_task", broker.send_task)

    with django_capture_on_commit_callbacks(execute=True):
        fire(project, Webhook.Event.MODEL_PROMOTED, {"version": 2})

    webhook.refresh_from_db()
    assert webhook.last_status.startswith("Not sent: the task broker could not be reached")


def test_a_promoted_model_is_announced_to_the_projects_webhook(
    alice: User,
    bob: User,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    from modeling.services.refresh import refresh_model

    topics = make_project(alice, (bob, Role.ANNOTATOR), name="Topics")
    topics.labels.all().delete()
    topics.set_labels(["sports", "finance"])
    add_items(topics, sports_texts(6) + finance_texts(6))
    for item in list(topics.items.order_by("id"))[::2]:
        topic = "sports" if "match" in item.text else "finance"
        serve(topics, bob, item)
        submit_answer(topics, bob, item, resolve_labels(topics, [topic]))
    webhook = make_webhook(topics, receiver.url)
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, args, **options: celery_app.tasks[name].apply(args)
    )

    with django_capture_on_commit_callbacks(execute=True):
        version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    [request] = receiver.requests
    assert request.headers["X-Sift-Event"] == "model.promoted"
    assert (
        request.headers["X-Sift-Signature"]
        == "sha256=" + hmac.new(webhook.secret.encode(), request.body, hashlib.sha256).hexdigest()
    )
    assert json.loads(request.body) == {
        "project": topics.pk,
        "version": version.number,
        "labels_used": 6,
        "metrics": {k: v for k, v in version.metrics.items() if k != "stop_set"},
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("overlap", 0, "greater than or equal to 1"),
        ("retrain_every", 0, "greater than or equal to 1"),
        ("lease_seconds", 5, "greater than or equal to 10"),
        ("random_control_share", 1.5, "less than or equal to 1.0"),
    ],
)
def test_loop_settings_out_of_range_are_refused(
    alice: User, field: str, value: object, message: str
) -> None:
    project = make_project(alice)

    response = token_client(alice).patch(
        f"/api/v1/projects/{project.pk}/", {field: value}, content_type="application/json"
    )

    assert response.status_code == 400
    assert message in response.json()[field][0]
    project.refresh_from_db()
    assert getattr(project, field) != value
