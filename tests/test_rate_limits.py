"""Mallory guesses Bob's password and token keys; Sift slows her down and leaves Bob alone.

Bob annotates. Mallory calls from 203.0.113.66, Bob from 198.51.100.7.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from labeling import ratelimit
from labeling.models import ApiToken
from tests.conftest import PASSWORD, client_for

MALLORY = "203.0.113.66"
BOB_AT_HOME = "198.51.100.7"


@pytest.fixture(autouse=True)
def small_limits(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.SIFT_LOGIN_ATTEMPTS = 3
    settings.SIFT_TOKEN_ATTEMPTS = 2
    settings.SIFT_RATE_LIMIT_WINDOW = 300
    # A minute before the current window ends; no story crosses into the next by accident.
    monkeypatch.setattr(ratelimit, "_clock", lambda: 1_000_440.0)


def login_answer(address: str, password: str, username: str = "bob") -> int:
    response = Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )
    return response.status_code


def test_mallory_is_refused_after_three_wrong_passwords_even_with_the_right_one(
    bob: User,
) -> None:
    assert [login_answer(MALLORY, f"guess {n}") for n in range(3)] == [200, 200, 200]

    response = Client(REMOTE_ADDR=MALLORY).post(
        reverse("login"), {"username": "bob", "password": PASSWORD}
    )

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert "Too many failed log-ins for this account from your address" in response.content.decode()
    assert "Try again in 60 seconds" in response.content.decode()
    assert "_auth_user_id" not in response.client.session


def test_bob_logs_in_from_home_while_mallory_is_locked_out(bob: User) -> None:
    for n in range(4):
        login_answer(MALLORY, f"guess {n}")

    assert login_answer(BOB_AT_HOME, PASSWORD) == 302
    # Another account from Mallory's address is a separate count.
    assert login_answer(MALLORY, "guess", username="dora") == 200


def test_the_lock_lifts_when_the_window_passes(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        login_answer(MALLORY, f"guess {n}")
    assert login_answer(MALLORY, PASSWORD) == 429

    monkeypatch.setattr(ratelimit, "_clock", lambda: 1_000_500.0)

    assert login_answer(MALLORY, PASSWORD) == 302


def test_successful_log_ins_are_not_counted(bob: User) -> None:
    assert [login_answer(BOB_AT_HOME, PASSWORD) for _ in range(5)] == [302] * 5


def test_behind_a_trusted_proxy_the_forwarded_address_counts(bob: User, settings: Settings) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    proxy = "10.0.0.2"

    def via_proxy(forwarded_for: str, password: str) -> int:
        client = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded_for)
        response = client.post(reverse("login"), {"username": "bob", "password": password})
        return response.status_code

    for n in range(3):
        via_proxy(f"spoofed-{n}, {MALLORY}", f"guess {n}")

    assert via_proxy(MALLORY, PASSWORD) == 429
    assert via_proxy(BOB_AT_HOME, PASSWORD) == 302


def test_bob_creating_tokens_in_a_loop_is_stopped(bob: User) -> None:
    browser = client_for(bob)

    made = [browser.post(reverse("api_tokens"), {"name": f"script {n}"}) for n in range(2)]
    refused = browser.post(reverse("api_tokens"), {"name": "one too many"})

    assert [response.status_code for response in made] == [200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "try again in 60 seconds" in refused.content.decode()
    assert 'value="sift_' not in refused.content.decode()
    assert set(ApiToken.objects.filter(user=bob).values_list("name", flat=True)) == {
        "script 0",
        "script 1",
    }


def test_a_script_looping_on_a_revoked_token_is_told_to_back_off(bob: User) -> None:
    old, old_key = ApiToken.issue(bob, "old script")
    old.revoke()
    _, good_key = ApiToken.issue(bob, "new script")
    url = reverse("project-list")

    def call(key: str) -> int:
        client = Client(REMOTE_ADDR=MALLORY, HTTP_AUTHORIZATION=f"Token {key}")
        return client.get(url).status_code

    assert [call(old_key) for _ in range(2)] == [401, 401]
    throttled = Client(REMOTE_ADDR=MALLORY, HTTP_AUTHORIZATION=f"Token {old_key}").get(url)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "60"
    assert "invalid or revoked token" in throttled.json()["detail"]
    # A valid token from the same address keeps working.
    assert call(good_key) == 200


def test_logging_in_works_when_the_cache_is_down(bob: User, settings: Settings) -> None:
    # Nothing listens on port 1: every cache call fails at once.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }

    assert login_answer(MALLORY, "guess") == 200
    assert login_answer(BOB_AT_HOME, PASSWORD) == 302


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("redis_url", "backend"),
    [("redis://redis:6379/0", "RedisCache"), ("", "FileBasedCache")],
)
def test_every_web_process_shares_the_counts(tmp_path: Path, redis_url: str, backend: str) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "c = s.CACHES['default']; print(c['BACKEND'].rsplit('.', 1)[1], c['LOCATION'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "DEBUG": "1",
            "REDIS_URL": redis_url,
            "SIFT_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expected = redis_url or str(tmp_path / "django-cache")
    assert result.stdout.split() == [backend, expected]
