"""A load balancer and a monitor ask Sift whether its web process, database, broker and
workers are up, without logging in."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.test import Client

from config.celery import app
from tests.worker import running_worker


def test_the_web_process_answers_without_touching_the_database(client: Client) -> None:
    # No `db` fixture: pytest-django would fail this test if the view queried the database.
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_the_database_check_runs_a_query(client: Client) -> None:
    response = client.get("/health/db/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_a_database_outage_is_503_with_the_error_class(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> None:
        raise OperationalError("connection refused by db.internal:5432")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/health/db/")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "OperationalError"}


def test_the_broker_check_connects_to_the_broker(client: Client) -> None:
    response = client.get("/health/broker/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_unreachable_broker_is_503(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1; a Redis client gets "connection refused" at once.
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/health/broker/")
    assert response.status_code == 503
    assert response.json()["status"] == "error"


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_answers_the_ping(client: Client, tmp_path: Path) -> None:
    with running_worker(tmp_path / "worker.log") as worker:
        response = client.get("/health/worker/")
        name = worker.args[worker.args.index("-n") + 1]
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert name in response.json()["workers"]


def test_no_worker_answering_is_503(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another suite's worker may share this Redis database, so the silence is arranged here.
    monkeypatch.setattr(app.control, "ping", lambda timeout: [])
    response = client.get("/health/worker/")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "no worker answered"}
