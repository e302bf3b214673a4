"""A team labels through a real gunicorn on PostgreSQL, as in production: 32 people at once, a
double-clicked answer, a database that drops every connection in the middle of their work.

Alice leads; annotators 0-27 label through the API with their tokens, annotators 28-31 log in
through the login page and label on the keyboard screen, as a browser does.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.db.models import Count, F, Q
from django.urls import reverse

from labeling.models import Annotation, ApiToken, Item, Label, Project, Role
from tests.conftest import PASSWORD, client_for, make_project, make_user
from tests.servers import http_session, running_gunicorn
from tests.worker import env_for_processes, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ANNOTATORS = 32
IN_BROWSER = 4
ANSWERS_EACH = 50
OVERLAP = 2


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    if connection.vendor != "postgresql":
        pytest.skip("production runs gunicorn on PostgreSQL")
    with running_gunicorn(
        env_for_processes(), tmp_path / "gunicorn.log", workers=2, threads=8
    ) as base_url:
        yield base_url


# --- Two ways to label: a script with a token, a person in a browser ------------------------


@dataclass
class Answered:
    """What the server acknowledged, and when the client held the item."""

    annotator: str
    item: int
    label: str
    served_at: float
    answered_at: float


@dataclass
class Ledger:
    answered: list[Answered] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answered) -> None:
        with self.lock:
            self.answered.append(answer)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


class ApiAnnotator:
    def __init__(self, base_url: str, project: Project, user: User) -> None:
        _, key = ApiToken.issue(user, "labeling script")
        self.username = user.username
        self.session = http_session()
        self.session.headers["Authorization"] = f"Token {key}"
        self.api = f"{base_url}/api/v1/projects/{project.pk}"

    def next_item(self) -> int | None:
        response = self.session.get(f"{self.api}/queue/next/", timeout=30)
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return int(response.json()["item"]["id"])

    def answer(self, item: int, label: str, client_id: str) -> requests.Response:
        body = {"item": item, "labels": [label], "client_id": client_id}
        return self.session.post(f"{self.api}/annotations/", json=body, timeout=30)


class BrowserAnnotator:
    """Logs in on the login page and answers on the labeling screen as htmx sends it."""

    def __init__(self, base_url: str, project: Project, user: User) -> None:
        self.base_url = base_url
        self.username = user.username
        self.screen = f"{base_url}/projects/{project.pk}/label/"
        self.labels = {label.name: label.pk for label in project.labels.all()}
        self.session = http_session()
        self.page = ""

    def log_in(self) -> None:
        login = f"{self.base_url}/accounts/login/"
        form = self.session.get(login, timeout=30)
        response = self.session.post(
            login,
            data={
                "username": self.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": _field(form.text, "csrfmiddlewaretoken"),
            },
            headers={"Referer": login},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, response.text[:500]
        self.page = self.session.get(self.screen, timeout=30).text

    def next_item(self) -> int | None:
        found = re.search(r'name="item" value="(\d+)"', self.page)
        return int(found.group(1)) if found else None

    def answer(self, item: int, label: str, client_id: str) -> requests.Response:
        response = self.session.post(
            f"{self.screen}answer/",
            data={"item": item, "labels": self.labels[label], "client_id": client_id},
            headers={
                "HX-Request": "true",
                "X-CSRFToken": self.session.cookies["csrftoken"],
                "Referer": self.screen,
            },
            timeout=30,
        )
        if response.status_code == 200:
            self.page = response.text
        return response


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found is not None, f"no {name} field in the page"
    return found.group(1)


def label_for(item: int) -> str:
    return ("positive", "negative", "neutral")[item % 3]


def label_round(annotator: ApiAnnotator | BrowserAnnotator, ledger: Ledger, rounds: int) -> None:
    """Next item, answer; every fifth answer is sent twice at once, like a double click."""
    for round_number in range(rounds):
        item = annotator.next_item()
        served_at = time.monotonic()
        if item is None:
            ledger.fail(f"{annotator.username} ran out of items in round {round_number}")
            return
        label, client_id = label_for(item), str(uuid.uuid4())
        answered_at = time.monotonic()
        if round_number % 5 == 4 and isinstance(annotator, ApiAnnotator):
            with ThreadPoolExecutor(2) as pool:
                sent = [pool.submit(annotator.answer, item, label, client_id) for _ in range(2)]
                twins = [future.result() for future in sent]
            codes = sorted(response.status_code for response in twins)
            ids = {response.json()["id"] for response in twins}
            if codes != [200, 201] or len(ids) != 1:
                ledger.fail(f"{annotator.username}: a doubled answer gave {codes}, ids {ids}")
        else:
            response = annotator.answer(item, label, client_id)
            if response.status_code not in (200, 201):
                ledger.fail(f"{annotator.username}: answer {response.status_code}")
                return
            if round_number % 5 == 4:  # the browser resends the same form after a timeout
                before = annotator.next_item()
                again = annotator.answer(item, label, client_id)
                if again.status_code != 200 or annotator.next_item() != before:
                    ledger.fail(f"{annotator.username}: a resent answer {again.status_code}")
        ledger.add(Answered(annotator.username, item, label, served_at, answered_at))


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    held = peak = 0
    for _, change in events:
        held += change
        peak = max(peak, held)
    return peak


# --- Stories --------------------------------------------------------------------------------


def test_thirty_two_annotators_label_at_once_and_every_acknowledged_answer_is_kept(
    web: str,
) -> None:
    alice = make_user("alice")
    team = [make_user(f"annotator{n}") for n in range(ANNOTATORS)]
    project = make_project(
        alice, *[(user, Role.ANNOTATOR) for user in team], items=1000, overlap=OVERLAP
    )
    # The browser users log in with the production password hasher; one hash serves all four.
    encoded = make_password(PASSWORD, hasher=PBKDF2PasswordHasher())
    User.objects.filter(pk__in=[user.pk for user in team[-IN_BROWSER:]]).update(password=encoded)
    annotators: list[ApiAnnotator | BrowserAnnotator] = [
        ApiAnnotator(web, project, user) for user in team[:-IN_BROWSER]
    ]
    browsers = [BrowserAnnotator(web, project, user) for user in team[-IN_BROWSER:]]
    for browser in browsers:
        browser.log_in()
    annotators += browsers
    ledger = Ledger()

    with ThreadPoolExecutor(ANNOTATORS) as pool:
        for done in [pool.submit(label_round, a, ledger, ANSWERS_EACH) for a in annotators]:
            done.result()

    assert ledger.failures == []
    assert len(ledger.answered) == ANNOTATORS * ANSWERS_EACH
    # No item was held by more annotators at once than the overlap allows, nor answered by more.
    held: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for answer in ledger.answered:
        held[answer.item].append((answer.served_at, answer.answered_at))
    assert max(most_at_once(intervals) for intervals in held.values()) <= OVERLAP
    assert max(Counter(answer.item for answer in ledger.answered).values()) <= OVERLAP
    # Every acknowledged answer is in the database, once, with its label; nothing else is.
    stored = set(
        Annotation.objects.filter(item__project=project).values_list(
            "annotator__username", "item_id", "labels__name"
        )
    )
    acknowledged = {(a.annotator, a.item, a.label) for a in ledger.answered}
    assert stored == acknowledged
    assert Annotation.objects.filter(item__project=project).count() == ANNOTATORS * ANSWERS_EACH
    drifted = (
        Item.objects.filter(project=project)
        .annotate(answers=Count("annotations"))
        .filter(~Q(answer_count=F("answers")))
    )
    assert not drifted.exists()


def test_a_dropped_database_connection_fails_requests_cleanly_and_the_next_ones_recover(
    web: str,
) -> None:
    alice = make_user("alice")
    team = [make_user(f"annotator{n}") for n in range(6)]
    project = make_project(alice, *[(user, Role.ANNOTATOR) for user in team], items=200)
    annotators = [ApiAnnotator(web, project, user) for user in team]
    positive = Label.objects.get(project=project, name="positive")
    served = {a.username: a.next_item() for a in annotators}
    client_ids = {a.username: str(uuid.uuid4()) for a in annotators}

    # Hold the table that links answers to their labels: every answer below stops half-way,
    # its Annotation row written but not its label, until its connection is cut.
    with connection.cursor() as blocker:
        blocker.execute("BEGIN")
        blocker.execute(f'LOCK TABLE "{Annotation.labels.through._meta.db_table}"')
        with ThreadPoolExecutor(len(annotators)) as pool:
            pending = [
                pool.submit(a.answer, served[a.username], "positive", client_ids[a.username])
                for a in annotators
            ]
            wait_for(lambda: len(_waiting_on_a_lock()) == len(annotators), 30, "blocked answers")
            _terminate(_web_backends())
            failed = [future.result() for future in pending]
        blocker.execute("ROLLBACK")

    for response in failed:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "detail": "The database is unavailable; try again in a few seconds."
        }
        assert "Traceback" not in response.text
        assert "psycopg" not in response.text.lower()
        assert "terminating connection" not in response.text
    # Nothing half-written: no answer without its label, no count moved.
    assert not Annotation.objects.filter(item__project=project).exists()
    assert not Item.objects.filter(project=project, answer_count__gt=0).exists()

    # Every connection the server kept between requests is cut too; the server reconnects.
    _terminate(_web_backends())
    with ThreadPoolExecutor(len(annotators)) as pool:
        retried = list(
            pool.map(
                lambda a: a.answer(served[a.username], "positive", client_ids[a.username]),
                annotators,
            )
        )
    assert [response.status_code for response in retried] == [201] * len(annotators)
    answers = Annotation.objects.filter(item__project=project)
    assert answers.count() == len(annotators)
    assert set(answers.values_list("labels", flat=True)) == {positive.pk}
    assert all(a.next_item() not in (None, served[a.username]) for a in annotators)


def test_a_lost_database_connection_is_a_503_page_to_retry(
    project: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lose_the_connection(*args: object) -> None:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr("labeling.views.annotate.lease_next_item", lose_the_connection)

    response = client_for(bob).get(reverse("annotate", args=[project.pk]))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Sift is briefly unavailable" in response.content.decode()
    assert "administrator command" not in response.content.decode()


def _web_backends() -> list[int]:
    """PostgreSQL backends of this test database other than the test's own connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def _waiting_on_a_lock() -> list[int]:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps showing its first view of the activity table.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return [row[0] for row in cursor.fetchall()]


def _terminate(pids: list[Any]) -> None:
    assert pids
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
