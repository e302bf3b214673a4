"""What the pages say is true: Bob is told why there is nothing to label, his count leaves out
his skips, Alice's settings fields name the limits the form applies, and a missing page is
Sift's own 404, under `make run` too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from django.contrib.auth.models import User
from django.urls import reverse

from labeling.models import LABEL_HOTKEYS, Project, Role
from labeling.services import resolve_labels, submit_answer
from tests.conftest import client_for, make_project, serve

ROOT = Path(__file__).resolve().parent.parent


def test_an_empty_project_says_it_has_no_items_yet(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR))

    page = client_for(bob).get(reverse("annotate", args=[project.pk])).content.decode()
    lead_page = client_for(alice).get(reverse("annotate", args=[project.pk])).content.decode()

    assert "No items yet" in page
    assert "Every item has been answered" not in page
    assert reverse("project_import", args=[project.pk]) not in page
    assert reverse("project_import", args=[project.pk]) in lead_page


def test_a_finished_project_still_says_nothing_is_left(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=1)
    item = project.items.get()
    serve(project, bob, item)
    submit_answer(project, bob, item, resolve_labels(project, ["positive"]))

    page = client_for(bob).get(reverse("annotate", args=[project.pk])).content.decode()

    assert "Nothing left for you here" in page
    assert "No items yet" not in page


def test_today_counts_bobs_answers_not_his_skips(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=3)
    first, second, third = project.items.order_by("pk")
    serve(project, bob, first, second, third)
    submit_answer(project, bob, first, resolve_labels(project, ["positive"]))
    submit_answer(project, bob, second, resolve_labels(project, ["negative"]))
    submit_answer(project, bob, third, [], skipped=True)

    page = client_for(bob).get(reverse("project_detail", args=[project.pk])).content.decode()

    assert "2 by you today" in page


def test_the_overlap_field_says_the_minimum_the_form_applies(alice: User) -> None:
    project = make_project(alice)
    client = client_for(alice)

    settings_page = client.get(reverse("project_settings", args=[project.pk])).content.decode()
    new_page = client.get(reverse("project_create")).content.decode()
    refused = client.post(
        reverse("project_create"), {"name": "Zero", "labels": "a, b", "overlap": 0}
    )

    for page, name in [(settings_page, "project-overlap"), (new_page, "overlap")]:
        field = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
        assert field is not None
        assert 'min="1"' in field.group(0)
    assert refused.status_code == 200
    assert not Project.objects.filter(name="Zero").exists()


def test_every_settings_input_is_named_and_described_by_text_on_the_page(alice: User) -> None:
    project = make_project(alice)

    page = client_for(alice).get(reverse("project_settings", args=[project.pk])).content.decode()

    ids = set(re.findall(r'\sid="([^"]+)"', page))
    described = {
        target
        for value in re.findall(r'aria-describedby="([^"]+)"', page)
        for target in value.split()
    }
    assert described
    assert described <= ids, described - ids
    labelled = set(re.findall(r'<label for="([^"]+)"', page))
    for field in re.findall(r"<(?:input|textarea|select)[^>]*>", page):
        if 'type="hidden"' in field:
            continue
        field_id = re.search(r'id="([^"]+)"', field)
        assert "aria-label=" in field or (field_id and field_id.group(1) in labelled), field


def test_the_new_label_row_offers_the_next_free_key_and_a_new_colour(alice: User) -> None:
    project = make_project(alice)  # positive 1, negative 2, neutral 3

    page = client_for(alice).get(reverse("project_settings", args=[project.pk])).content.decode()

    new_key = re.search(r'<input[^>]*name="labels-3-hotkey"[^>]*>', page)
    new_colour = re.search(r'<input[^>]*name="labels-3-color"[^>]*>', page)
    assert new_key is not None
    assert new_colour is not None
    assert 'value="4"' in new_key.group(0)
    used = set(project.labels.values_list("color", flat=True))
    colour = re.search(r'value="(#[0-9a-f]{6})"', new_colour.group(0))
    assert colour is not None
    assert colour.group(1) not in used


def test_forty_labels_get_thirty_six_keys_and_forty_colours(alice: User) -> None:
    project = make_project(alice)
    project.labels.all().delete()

    labels = project.set_labels([f"label {n}" for n in range(40)])

    keys = [label.hotkey for label in labels]
    assert keys[:12] == list("1234567890ab")
    assert len({key for key in keys if key}) == len(LABEL_HOTKEYS) == 36
    assert keys[36:] == ["", "", "", ""]
    assert len({label.color for label in labels}) == 40


def test_a_missing_page_is_sifts_own_404(alice: User) -> None:
    response = client_for(alice).get("/projects/424242/nothing-here/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
    assert "Django" not in response.content.decode()


def test_make_run_serves_with_debug_off_and_a_generated_key() -> None:
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    launch = next(line for line in lines if "sh -c" in line and "celery" in line)
    assert launch.startswith('DEBUG=0 SECRET_KEY="$(cat var/secret_key)" ')
    assert any("secrets.token_urlsafe" in line for line in lines)
    assert any("collectstatic" in line for line in lines)
