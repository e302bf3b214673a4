"""Schemathesis against the app's own OpenAPI schema: whatever Alice, a lead, sends to any
operation, the API never answers with a server error.

Path ids point at Alice's real project and objects, so generated bodies and query strings
reach the views instead of stopping at a 404.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.test import Client, override_settings
from hypothesis import HealthCheck, settings
from pytest_django import Settings
from schemathesis import Case, SerializationContext
from schemathesis.config import SchemathesisConfig

from config.wsgi import application
from labeling.models import ApiToken, ExportJob, ImportJob, Project, Role, Webhook
from labeling.services import resolve_labels, submit_answer
from modeling.models import FineTuneRun
from tests.conftest import make_project, serve


@schemathesis.serializer("application/x-ndjson")
def jsonl_body(context: SerializationContext, value: Any) -> bytes:
    """The schema calls a JSONL import body a string: send it as it is."""
    return value.encode("utf-8") if isinstance(value, str) else json.dumps(value).encode()


config = SchemathesisConfig()
config.update(seed=20261122, max_failures=None)
with override_settings(ALLOWED_HOSTS=["localhost"]):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, config=config)


# Server errors this test found, by operation. Fuzzing does not hit a bug on every run, so
# these operations are non-strict expected failures here; test_found_server_errors replays
# each bug exactly and strictly, so a fixed bug fails the run until its lines are removed.


@dataclass(frozen=True)
class Lead:
    key: str
    project: Project
    ids: dict[str, int]  # the id to put in `{id}` paths, by the path's collection


@pytest.fixture
def lead(transactional_db: None, settings: Settings, tmp_path: object) -> Lead:
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.MEDIA_ROOT = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    project = make_project(alice, (bob, Role.ANNOTATOR), items=30)
    item = project.items.order_by("id").first()
    assert item is not None
    serve(project, alice, item)
    answer, _ = submit_answer(project, alice, item, resolve_labels(project, ["positive"]))
    webhook = Webhook.objects.create(
        project=project, url="http://127.0.0.1:9/hook", secret="s", events=["export.ready"]
    )
    job = ExportJob.objects.create(project=project, requested_by=alice, format="jsonl")
    _, key = ApiToken.issue(alice, "schemathesis")
    ids = {
        "labels": project.labels.get(name="neutral").pk,
        "items": item.pk,
        "annotations": answer.pk,
        "webhooks": webhook.pk,
        "exports": job.pk,
        "imports": ImportJob.objects.create(project=project, requested_by=alice).pk,
        "finetunes": FineTuneRun.objects.create(project=project, task_id="fuzzed").pk,
    }
    return Lead(key=key, project=project, ids=ids)


def aim_at_real_objects(case: Case, lead: Lead) -> None:
    parameters = case.path_parameters or {}
    if "project_pk" in parameters:
        parameters["project_pk"] = lead.project.pk
    if "job_pk" in parameters:
        parameters["job_pk"] = lead.ids["imports" if "/imports/" in case.path else "exports"]
    if "id" in parameters:
        segments = case.path.strip("/").split("/")
        collection = segments[segments.index("{id}") - 1]  # .../finetunes/{id}/cancel/ too
        parameters["id"] = lead.project.pk if collection == "projects" else lead.ids[collection]


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_operation_answers_with_a_server_error(
    case: Case, lead: Lead, request: pytest.FixtureRequest
) -> None:
    aim_at_real_objects(case, lead)

    case.call_and_validate(
        headers={"Authorization": f"Token {lead.key}"},
        checks=[schemathesis.checks.not_a_server_error],
    )


WEBHOOKS = "/api/v1/projects/{project_pk}/webhooks/"
WEBHOOK = "/api/v1/projects/{project_pk}/webhooks/{id}/"


def test_the_fuzzer_reaches_the_webhook_writes() -> None:
    """Saving a webhook resolves and checks its URL (tests/test_security.py), so creating and
    changing one must stay among the operations fuzzed above."""
    fuzzed = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}

    assert {("POST", WEBHOOKS), ("PUT", WEBHOOK), ("PATCH", WEBHOOK)} <= fuzzed


@pytest.mark.parametrize(
    ("method", "path", "url"),
    [
        ("POST", WEBHOOKS, "http://127.0.0.1:5432/"),
        ("PUT", WEBHOOK, "http://169.254.169.254/latest/meta-data/"),
        ("PATCH", WEBHOOK, "http://[::1]:6379/"),
        ("PATCH", WEBHOOK, "http://10.0.0.5/hook"),
    ],
)
def test_an_internal_receiver_url_is_refused_with_a_client_error(
    lead: Lead, method: str, path: str, url: str
) -> None:
    case = schema[path][method].Case(
        path_parameters={"project_pk": 0, "id": 0} if "{id}" in path else {"project_pk": 0},
        body={"url": url, "events": ["export.ready"]},
        media_type="application/json",
    )
    aim_at_real_objects(case, lead)

    response = case.call_and_validate(
        headers={"Authorization": f"Token {lead.key}"},
        checks=[schemathesis.checks.not_a_server_error],
    )

    assert response.status_code == 400
    assert "public addresses only" in response.json()["url"][0]


FORM_NULL_SETTINGS = (
    b'--B\r\nContent-Disposition: form-data; name="settings"\r\n\r\nnull\r\n--B--\r\n',
    "multipart/form-data; boundary=B",
)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PATCH", "/", FORM_NULL_SETTINGS, id="settings=null as form"),
        pytest.param("PATCH", "/", {"settings": {"note": "a\x00b"}}, id="settings NUL"),
        pytest.param("GET", "/items/?search=a%00b", None, id="items search NUL"),
        pytest.param("GET", "/items/?external_id=%00", None, id="items external_id NUL"),
        pytest.param("GET", "/annotations/?annotator=%00", None, id="annotator NUL"),
        pytest.param("POST", "/labels/", {"name": "mixed", "hotkey": "1"}, id="new hotkey"),
        pytest.param("PATCH", "/labels/{neutral}/", {"hotkey": "1"}, id="hotkey change"),
        pytest.param("GET", "/api/v1/projects/abc/", None, id="project id abc"),
        pytest.param("GET", "/annotations/?since=2026-02-30T00:00:00", None, id="since Feb 30"),
        pytest.param("POST", "/items/", [{"text": "a\x00b"}], id="import text NUL"),
        pytest.param("POST", "/items/", [{"text": "ok", "note": "a\x00b"}], id="import meta NUL"),
        pytest.param("GET", "/export/?since=2026-02-30T00:00:00", None, id="export since Feb 30"),
        pytest.param("GET", "/export/?annotator=%00", None, id="export annotator NUL"),
    ],
)
def test_found_server_errors(lead: Lead, method: str, path: str, body: Any) -> None:
    """Each server error schemathesis or a reviewer found, replayed exactly: now a clear 4xx."""
    if not path.startswith("/api/"):
        neutral = lead.ids["labels"]
        path = f"/api/v1/projects/{lead.project.pk}{path}".replace("{neutral}", str(neutral))
    client = Client(HTTP_AUTHORIZATION=f"Token {lead.key}", raise_request_exception=False)
    if body is None:
        response = client.generic(method, path)
    elif isinstance(body, tuple):
        response = client.generic(method, path, body[0], body[1])
    else:
        response = client.generic(method, path, json.dumps(body), "application/json")

    assert response.status_code < 500, response.content
    # Each one is refused with a reason: a 4xx, or an import report that rejects the row.
    assert response.status_code >= 400 or b"NUL character" in response.content
