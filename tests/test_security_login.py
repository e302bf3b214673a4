"""Mallory attacks Sift's log-ins and pages as the penetration test did (issue 15); she gets
nowhere, and Alice and Bob work on.

Alice leads and is staff, Bob annotates. Mallory calls from 203.0.113.66, Bob from home.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session
from django.contrib.staticfiles import finders
from django.db import connections
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from pytest_django import Settings

from config import middleware
from labeling import ratelimit
from labeling.models import ApiToken, Project
from tests.conftest import PASSWORD, client_for

MALLORY = "203.0.113.66"
BOB_AT_HOME = "198.51.100.7"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.fixture(autouse=True)
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # A minute before the current window ends; no story crosses into the next by accident.
    monkeypatch.setattr(ratelimit, "_clock", lambda: 1_000_440.0)


@pytest.fixture
def passwords_checked() -> Iterator[list[str]]:
    """The usernames whose password Sift checked and found wrong, in order."""
    checked: list[str] = []

    def record(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        checked.append(credentials.get("username", ""))

    user_login_failed.connect(record, dispatch_uid="passwords_checked")
    yield checked
    user_login_failed.disconnect(dispatch_uid="passwords_checked")


def log_in(path: str, password: str, username: str = "bob", address: str = MALLORY) -> Client:
    client = Client(REMOTE_ADDR=address)
    client.post(path, {"username": username, "password": password})
    return client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# Finding 2: the admin's log-in bypassed the limit.


def test_the_admin_log_in_checks_no_password_while_mallory_is_locked_out(
    bob: User, settings: Settings, passwords_checked: list[str]
) -> None:
    bob.is_staff = True
    bob.save()
    for n in range(settings.SIFT_LOGIN_ATTEMPTS):
        log_in(reverse("login"), f"guess {n}")
    assert log_in(reverse("login"), PASSWORD).session.get("_auth_user_id") is None
    checked_before = len(passwords_checked)

    admin = Client(REMOTE_ADDR=MALLORY)
    answers = [
        admin.post("/admin/login/", {"username": "bob", "password": f"admin guess {n}"})
        for n in range(30)
    ]
    right = admin.post("/admin/login/?next=/admin/", {"username": "bob", "password": PASSWORD})

    assert {answer.status_code for answer in answers} == {302}
    assert right["Location"] == f"{reverse('login')}?next=/admin/"
    assert len(passwords_checked) == checked_before
    assert not logged_in(admin)
    assert admin.get("/admin/").status_code == 302


def test_alice_reaches_the_admin_through_the_one_log_in_page(alice: User) -> None:
    alice.is_staff = True
    alice.is_superuser = True
    alice.save()
    browser = Client()

    to_login = browser.get("/admin/", follow=True)
    assert to_login.redirect_chain[-1][0] == f"{reverse('login')}?next=%2Fadmin%2F"
    response = browser.post(
        to_login.redirect_chain[-1][0], {"username": "alice", "password": PASSWORD}
    )

    assert response["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200


def test_there_is_no_password_reset_since_sift_sends_no_mail(bob: User) -> None:
    bob.email = "bob@example.org"
    bob.save()
    anyone = Client(REMOTE_ADDR=MALLORY)

    assert anyone.get("/accounts/password_reset/").status_code == 404
    assert anyone.post("/accounts/password_reset/", {"email": bob.email}).status_code == 404
    assert anyone.get("/accounts/reset/MQ/set-password/").status_code == 404
    with pytest.raises(NoReverseMatch):
        reverse("password_reset")


# Finding 12: spraying usernames, and parallel guesses, beat the limit.


def test_mallory_spraying_many_usernames_from_one_address_is_stopped(
    bob: User, settings: Settings, passwords_checked: list[str]
) -> None:
    settings.SIFT_LOGIN_ADDRESS_ATTEMPTS = 20
    sprayed = [f"user{n}" for n in range(20)]
    for username in sprayed:
        log_in(reverse("login"), "Summer2026!", username=username)

    refused = Client(REMOTE_ADDR=MALLORY).post(
        reverse("login"), {"username": "bob", "password": PASSWORD}
    )

    assert passwords_checked == sprayed
    assert refused.status_code == 429
    assert "_auth_user_id" not in refused.client.session
    assert logged_in(log_in(reverse("login"), PASSWORD, address=BOB_AT_HOME))


def test_parallel_wrong_passwords_get_no_more_checks_than_the_limit(
    transactional_db: None,
    bob: User,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    passwords_checked: list[str],
) -> None:
    # Each check takes a while, as a real password hash does, so all guesses are in flight
    # before the first one has its answer.
    check_password = User.check_password

    def slow_check(user: User, raw_password: str) -> bool:
        time.sleep(0.3)
        return check_password(user, raw_password)

    monkeypatch.setattr(User, "check_password", slow_check)
    guesses = settings.SIFT_LOGIN_ATTEMPTS + 5
    start = threading.Barrier(guesses)
    answers: list[int] = []

    def guess(n: int) -> None:
        client = Client(REMOTE_ADDR=MALLORY)
        start.wait()
        try:
            response = client.post(reverse("login"), {"username": "bob", "password": f"g{n}"})
            answers.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(passwords_checked) == settings.SIFT_LOGIN_ATTEMPTS
    assert sorted(answers) == [200] * settings.SIFT_LOGIN_ATTEMPTS + [429] * 5


# Finding 11: no Content-Security-Policy, cacheable private pages, ReDoc from a CDN, long
# sessions.


def policy_of(response: Any) -> dict[str, list[str]]:
    directives = (part.split() for part in response["Content-Security-Policy"].split(";"))
    return {words[0]: words[1:] for words in directives if words}


def test_pages_run_only_sifts_own_scripts_and_styles(alice: User, project: Project) -> None:
    pages = [
        Client().get(reverse("login")),
        client_for(alice).get(reverse("project_detail", args=[project.pk])),
        client_for(alice).get(reverse("annotate", args=[project.pk])),
    ]

    for page in pages:
        policy = policy_of(page)
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
    # The API docs allow ReDoc's own <style> elements, never another script source.
    docs = policy_of(Client().get(reverse("api-docs")))
    assert docs["script-src"] == ["'self'"]


def test_no_template_holds_a_script_or_an_event_handler_the_policy_would_block() -> None:
    inline = {
        "inline script": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>"),
        "style element": re.compile(r"<style\b"),
        "event handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
        "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
        "htmx expression (eval)": re.compile(r"hx-on|hx-vars|js:|hx-trigger=\"[^\"]*\["),
    }

    found = [
        f"{path.relative_to(TEMPLATES)}: {what}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for what, pattern in inline.items()
        if pattern.search(path.read_text())
    ]

    assert found == []


def test_bobs_pages_api_answers_and_exports_are_not_stored_by_caches(
    alice: User, bob: User, project: Project
) -> None:
    _, key = ApiToken.issue(alice, "alice's script")
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")

    answers = {
        "project page": client_for(bob).get(reverse("project_detail", args=[project.pk])),
        "labeling screen": client_for(bob).get(reverse("annotate", args=[project.pk])),
        "API": api.get(reverse("project-list")),
        "API refusal": Client().get(reverse("project-list")),
        "export": api.get(reverse("project-export", args=[project.pk])),
        "throughput CSV": client_for(alice).get(reverse("throughput_csv", args=[project.pk])),
    }

    assert {name: answer["Cache-Control"] for name, answer in answers.items()} == {
        name: "no-store" for name in answers
    }


def test_public_answers_keep_their_own_caching(
    bob: User, settings: Settings, client: Client
) -> None:
    settings.WHITENOISE_USE_FINDERS = True  # read when the client's handler starts
    client.force_login(bob)

    static = client.get("/static/sift/htmx.min.js")
    health = client.get(reverse("health"))

    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")
    # Views that set their own header keep it.
    assert health["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"


def test_the_api_docs_load_redoc_from_sift_itself() -> None:
    response = Client().get(reverse("api-docs"))
    page = response.content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert [source for source in sources if "//" in source] == []
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in sources
    assert finders.find("drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")


def test_bobs_session_ends_after_twelve_idle_hours_but_not_while_he_works(
    bob: User, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Client(REMOTE_ADDR=BOB_AT_HOME)
    response = browser.post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert response.cookies["sessionid"]["max-age"] == 12 * 3600
    sessions = Session.objects.filter(session_key=browser.session.session_key)
    page = reverse("project_detail", args=[project.pk])

    def idle(hours: float, left: timedelta) -> None:
        """Bob's session was last saved `hours` ago and, unless he clicks, ends in `left`."""
        monkeypatch.setattr(middleware, "_clock", lambda: time.time() + hours * 3600)
        sessions.update(expire_date=timezone.now() + left)

    # A click a minute after the last save writes nothing.
    idle(1 / 60, timedelta(hours=11, minutes=59))
    assert browser.get(page).status_code == 200
    assert sessions.get().expire_date < timezone.now() + timedelta(hours=11, minutes=59)

    # Eleven hours and 59 minutes idle: the next click still works and starts a new 12 hours.
    idle(11 + 59 / 60, timedelta(minutes=1))
    assert browser.get(page).status_code == 200
    assert sessions.get().expire_date > timezone.now() + timedelta(hours=11, minutes=59)

    # Twelve hours idle: he logs in again.
    idle(24, -timedelta(seconds=1))
    assert browser.get(page)["Location"].startswith(reverse("login"))
