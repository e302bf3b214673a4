"""Operators configure Sift through the environment; a bad value stops it at start-up."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list

ROOT = Path(__file__).resolve().parent.parent


def test_booleans_accept_only_clear_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "Yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be one of"):
        env_bool("FLAG", False)


def test_integers_refuse_words_and_values_below_the_minimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIZE", "ten")
    with pytest.raises(ImproperlyConfigured, match="SIZE must be an integer, got 'ten'"):
        env_int("SIZE", 1)
    monkeypatch.setenv("SIZE", "0")
    with pytest.raises(ImproperlyConfigured, match="SIZE must be at least 1"):
        env_int("SIZE", 5, minimum=1)
    monkeypatch.delenv("SIZE")
    assert env_int("SIZE", 5) == 5


def test_numbers_refuse_words_and_negative_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICE", "cheap")
    with pytest.raises(ImproperlyConfigured, match="PRICE must be a number, got 'cheap'"):
        env_float("PRICE", 0.0)
    monkeypatch.setenv("PRICE", "-1")
    with pytest.raises(ImproperlyConfigured, match=r"PRICE must be at least 0\.0"):
        env_float("PRICE", 0.0, minimum=0.0)
    monkeypatch.setenv("PRICE", "2.5")
    assert env_float("PRICE", 0.0) == 2.5


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTS", " a.example, ,b.example ")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def without_secrets(tmp_path: Path) -> dict[str, str]:
    """A fresh shell: no SECRET_KEY, DEBUG or DATABASE_URL, an empty var folder."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "SIFT_OFFLINE_COMMAND"}
    }
    return {**clean, "SIFT_VAR_DIR": str(tmp_path / "var")}


def test_production_refuses_to_serve_without_a_secret_key(tmp_path: Path) -> None:
    env = {**without_secrets(tmp_path), "DEBUG": "false"}
    for command in (["-c", "import config.wsgi"], ["manage.py", "runserver", "--noreload"]):
        result = subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_readmes_offline_commands_run_as_written_in_a_fresh_shell(tmp_path: Path) -> None:
    """README: create_project, import_items, create_api_token and simulate, word for word,
    with no SECRET_KEY or DEBUG in the environment (issue 17, finding 8)."""
    env = without_secrets(tmp_path)
    items = tmp_path / "items.csv"
    items.write_text("text,label\nThe Lions won the match,Sports\nShares rose,Business\n")

    def manage(*args: str) -> str:
        result = subprocess.run(
            [".venv/bin/python", "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    manage("migrate", "--no-input", "-v", "0")
    project = manage("create_project", "News topics", "--labels", "World,Sports,Business,Sci/Tech")
    assert project.strip().isdigit()
    assert "imported 2" in manage("import_items", "News topics", str(items))
    manage("seed_demo")
    assert (
        manage("create_api_token", "lead", "--name", "my script")
        .strip()
        .split()[-1]
        .startswith("sift_")
    )
    assert "--first-seed" in manage("simulate", "--help")


def test_a_bad_database_url_is_named(tmp_path: Path) -> None:
    result = run_check(DEBUG="true", DATABASE_URL="nosuchdb://x", SIFT_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DATABASE_URL is not a valid database URL" in result.stderr


def test_development_defaults_to_an_embedded_sqlite_file(tmp_path: Path) -> None:
    result = run_check(DEBUG="true", SIFT_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


PRODUCTION_UNSET = {"DEBUG", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def test_a_production_configuration_passes_the_deployment_checklist(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            # tests/browser.py sets DJANGO_ALLOW_ASYNC_UNSAFE for Playwright; no deployment does.
            **{k: v for k, v in os.environ.items() if k not in PRODUCTION_UNSET},
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "ALLOWED_HOSTS": "sift.example.org",
            "SIFT_VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_leaves_cookies_and_hsts_to_plain_http(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={
            **os.environ,
            "DEBUG": "1",
            "SIFT_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.split() == ["False", "False", "0"], result.stderr


def test_worker_processes_yield_the_cpu_to_the_web_app() -> None:
    code = (
        "import os; before = os.nice(0); "
        "from config.celery import yield_to_the_web_app; yield_to_the_web_app(); "
        "print(os.nice(0) - before)"
    )
    env = {**os.environ, "SIFT_WORKER_NICENESS": "7", "DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
