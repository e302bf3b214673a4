"""Findings 8 and 10 of the penetration test (issue 15): the API's errors and its checks.

Alice leads the project and scripts it with a token; Bob annotates. Every error under /api/
is JSON with a message that says what was wrong, and the API refuses what the pages refuse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labeling.models import ApiToken, Label, Project, Role
from tests.conftest import client_for, make_project, token_client


@pytest.fixture
def project(alice: User, bob: User) -> Project:
    return make_project(alice, (bob, Role.ANNOTATOR), items=5)


def api(project: Project, path: str = "") -> str:
    return f"/api/v1/projects/{project.pk}/{path}"


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def assert_json_error(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert words in json.dumps(response.json())


# --- Finding 8: unhandled 500s with an HTML body under /api/ -----------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("items/?page_size=²", id="page_size superscript two"),
        pytest.param("items/?page_size=١٠", id="page_size Arabic-Indic digits"),  # noqa: RUF001
        pytest.param("annotations/?item=²", id="item superscript two"),
    ],
)
def test_numbers_in_non_ascii_digits_are_refused_with_a_reason(
    project: Project, alice: User, query: str
) -> None:
    response = token_client(alice).get(api(project, query))

    assert_json_error(response, 400, "must be a whole number")


def test_settings_nested_350_deep_are_refused_not_a_server_error(
    project: Project, alice: User
) -> None:
    response = token_client(alice).patch(
        api(project), json.dumps({"settings": nested(350)}), "application/json"
    )

    assert_json_error(response, 400, "JSON nested more than 32 levels deep")
    project.refresh_from_db()
    assert project.settings == {}


def test_an_import_nested_400_deep_is_refused_whole_as_json(project: Project, alice: User) -> None:
    body = json.dumps([{"text": "deep one", "meta": nested(400)}])

    response = token_client(alice).post(api(project, "items/"), body, "application/json")

    assert_json_error(response, 400, "JSON nested more than 32 levels deep")
    assert project.items.count() == 5


def test_a_jsonl_line_nested_400_deep_is_rejected_and_the_rest_imported(
    project: Project, alice: User
) -> None:
    lines = [{"text": "fine line"}, {"text": "deep line", "meta": nested(400)}]
    body = "\n".join(json.dumps(line) for line in lines)

    response = token_client(alice).post(api(project, "items/"), body, "application/x-ndjson")

    assert response.status_code == 201
    report = response.json()
    assert (report["imported"], report["rejected"]) == (1, 1)
    assert report["rejections"] == [{"line": 2, "reason": "JSON nested more than 32 levels deep"}]


def test_an_unknown_api_url_answers_json_and_a_page_html(alice: User) -> None:
    api_miss = token_client(alice).get("/api/v1/nothing-here/")
    page_miss = client_for(alice).get("/nothing-here/")

    assert_json_error(api_miss, 404, "Not found.")
    assert page_miss.status_code == 404
    assert page_miss["Content-Type"].startswith("text/html")


def test_an_unexpected_error_under_the_api_is_json_and_says_it_was_logged(
    project: Project, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("labeling.api.views.ProjectViewSet.get_queryset", broken)

    response = token_client(alice, raise_request_exception=False).get(api(project))

    assert_json_error(response, 500, "unexpected error; it was logged")
    assert b"a bug" not in response.content


def test_a_body_django_refuses_before_the_view_is_json(
    project: Project, alice: User, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    form = "&".join(f"f{i}=x" for i in range(50))

    response = token_client(alice).patch(api(project), form, "application/x-www-form-urlencoded")

    assert_json_error(response, 400, "could not be read")


# --- Finding 10: the API skips the form checks ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        pytest.param({"name": "new", "color": "#zzzzzz"}, "color", "#rrggbb", id="colour"),
        pytest.param({"name": "new", "color": "red;x:1"}, "color", "#rrggbb", id="colour css"),
        pytest.param({"name": "new", "hotkey": '"'}, "hotkey", "one letter or digit", id="quote"),
        pytest.param({"name": "new", "hotkey": "é"}, "hotkey", "one letter or digit", id="accent"),
        pytest.param({"name": "two\nlines"}, "name", "line breaks", id="LF in name"),
        pytest.param({"name": "bell\x07"}, "name", "U+0007", id="control char"),
    ],
)
def test_a_label_from_the_api_gets_the_checks_the_settings_page_has(
    project: Project, alice: User, body: dict[str, str], field: str, words: str
) -> None:
    response = token_client(alice).post(
        api(project, "labels/"), json.dumps(body), "application/json"
    )

    assert_json_error(response, 400, words)
    assert field in response.json()
    assert not Label.objects.filter(project=project, name=body["name"]).exists()


def test_a_project_name_or_label_list_with_line_breaks_is_refused(alice: User) -> None:
    script = token_client(alice)

    crlf = script.post(
        "/api/v1/projects/",
        json.dumps({"name": "A\r\nB", "label_names": ["x"]}),
        "application/json",
    )
    label = script.post(
        "/api/v1/projects/",
        json.dumps({"name": "Fine", "label_names": ["a\tb"]}),
        "application/json",
    )

    assert_json_error(crlf, 400, "line breaks")
    assert_json_error(label, 400, "U+0009")
    assert not Project.objects.filter(name__in=["A\r\nB", "Fine"]).exists()


def test_the_encoder_path_is_checked_on_the_api_as_on_the_settings_page(
    project: Project, alice: User
) -> None:
    response = token_client(alice).patch(
        api(project), json.dumps({"encoder": "/etc"}), "application/json"
    )

    assert_json_error(response, 400, "not a Hugging Face model folder")
    project.refresh_from_db()
    assert project.encoder == ""


def test_the_settings_page_refuses_a_bad_colour_and_key_too(project: Project, alice: User) -> None:
    labels = list(project.labels.all())
    data: dict[str, Any] = {
        f"project-{name}": value
        for name, value in {
            "name": project.name,
            "overlap": 1,
            "lease_seconds": 300,
            "retrain_every": 10,
            "strategy": project.strategy,
            "random_control_share": 0.1,
            "finetune_growth": 0.2,
            "finetune_min_labels": 50,
        }.items()
    }
    data |= {
        "labels-TOTAL_FORMS": len(labels),
        "labels-INITIAL_FORMS": len(labels),
        "labels-MIN_NUM_FORMS": 0,
        "labels-MAX_NUM_FORMS": 1000,
    }
    for i, existing in enumerate(labels):
        data |= {
            f"labels-{i}-id": existing.pk,
            f"labels-{i}-name": existing.name,
            f"labels-{i}-hotkey": '"' if i == 0 else existing.hotkey,
            f"labels-{i}-color": "#12345g" if i == 1 else existing.color,
        }

    response = client_for(alice).post(reverse("project_settings", args=[project.pk]), data)

    assert response.status_code == 422
    assert b"one letter or digit" in response.content
    assert b"#rrggbb" in response.content


def test_a_token_name_with_a_line_break_is_refused(alice: User) -> None:
    response = client_for(alice).post(reverse("api_tokens"), {"name": "ci\r\nbot"})

    assert b"line breaks" in response.content
    assert not ApiToken.objects.filter(user=alice).exists()


@pytest.mark.parametrize("path", ["0" * 600, "/tmp/a\x00b"], ids=["too long", "NUL"])
def test_an_encoder_path_the_file_system_cannot_take_is_refused_too(
    project: Project, alice: User, path: str
) -> None:
    response = token_client(alice).patch(
        api(project), json.dumps({"encoder": path}), "application/json"
    )

    assert response.status_code == 400
    assert "encoder" in response.json()
