"""Alice (lead) reads her project's figures in plain words; the filters that write them.

The story: Alice's project has retrained a few times. Its panel, its model report and its
people page each say what a figure means, in numbers formatted for people: separators,
three significant digits, "under $0.01", "just now", how many stable versions it has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from labeling.models import Annotation, Project, Role
from labeling.people import throughput
from labeling.services import resolve_labels, submit_answer
from labeling.templatetags.plain_numbers import (
    DASH,
    ago,
    money,
    people_number,
    percent,
    percent_range,
)
from modeling.models import ModelState, ModelVersion
from tests.conftest import client_for, make_project, serve

SETTLED = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
ONE_FLIPPED = [1, 0, 0, 0, 0, 1, 1, 1, 1, 1]


# --- The filters, on literal numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (30441489, "30.4 million"),
        (1452981.7, "1.45 million"),
        (2_500_000_000, "2.5 billion"),
        (87506, "87,506"),
        (1333.3, "1,333"),
        (519.4, "519"),
        (25.04, "25"),
        (1.95, "1.95"),
        (0.018372, "0.0184"),
        (0.00003, "0.00003"),
        (0, "0"),
        (None, DASH),
    ],
)
def test_people_numbers_have_separators_and_three_significant_digits(
    value: float | None, words: str
) -> None:
    assert people_number(value) == words


def test_money_says_under_a_cent_and_when_no_price_is_set() -> None:
    assert money(0.00003, 2.0) == "under $0.01"
    assert money(0.06, 2.0) == "$0.06"
    assert money(1234.5, 2.0) == "$1,234.50"
    assert money(0, 2.0) == "$0"
    assert money(0, 0.0) == "not priced"
    assert money(0) == "not priced"


def test_percentages_are_whole_and_ranges_share_one_sign() -> None:
    assert percent(0.594) == "59%"
    assert percent(None) == DASH
    assert percent_range([0.4, 0.8]) == f"40{DASH}80%"


def test_a_moment_within_the_minute_is_just_now() -> None:
    now = timezone.now()

    assert ago(now - timedelta(seconds=20)) == "just now"
    assert ago(now - timedelta(minutes=2, seconds=5)) == "2\xa0minutes ago"
    assert ago(now - timedelta(hours=3, minutes=20)) == "3\xa0hours ago"


# --- Alice's project page -------------------------------------------------------------------


def add_version(project: Project, number: int, **metrics: object) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        encoder="hashing",
        strategy="margin",
        labels_used=24,
        pool_size=180,
        snapshot_at=timezone.now(),
        train_seconds=0.05,
        score_seconds=0.01,
        device="cpu",
        metrics=metrics,
    )


def stop_set(predictions: list[int]) -> dict[str, object]:
    return {"stop_set": {"ids_hash": "set-a", "predictions": predictions}}


def panel(project: Project, user: User) -> str:
    return client_for(user).get(reverse("model_status", args=[project.pk])).content.decode()


@pytest.fixture
def retrained(alice: User, bob: User) -> Project:
    """Three retrains, the latest 59% right on Bob's labels and 84% on the random controls."""
    project = make_project(alice, (bob, Role.ANNOTATOR), items=6)
    add_version(project, 1, **stop_set(ONE_FLIPPED))
    add_version(project, 2, **stop_set(SETTLED))
    add_version(
        project,
        3,
        cv_accuracy=0.59,
        evaluation={"accuracy": 0.84, "accuracy_ci": [0.7, 0.92], "n": 40},
        labels_saved={
            "reason": "cannot tell yet: random sampling would need from 20 to more than the "
            "320 labels its curve can be trusted for to reach 84%, against 24 used; more "
            "random-control labels would narrow that"
        },
        **stop_set(SETTLED),
    )
    return project


def test_each_accuracy_says_what_it_measures(retrained: Project, alice: User) -> None:
    html = panel(retrained, alice)

    assert "<dt>Cross-validated accuracy</dt><dd>59%</dd>" in html
    assert "Right on your labels, each guessed by a model that did not see it." in html
    assert f'84% <span class="muted">(70{DASH}92%, n = 40)</span>' in html
    assert "Right on randomly drawn control items: the fair guess for all items" in html


def test_labels_saved_is_a_short_figure_with_the_reason_folded_away(
    retrained: Project, alice: User
) -> None:
    html = panel(retrained, alice)

    assert "<dt>Labels saved</dt><dd>not known yet</dd>" in html
    assert "Labels random sampling would have needed, beyond yours, to do as well." in html
    assert '<summary>Why not</summary><span class="reason">Cannot tell yet: random sampling' in html


def test_stopping_advice_counts_the_stable_versions_it_has_and_needs(
    retrained: Project, alice: User
) -> None:
    html = panel(retrained, alice)

    assert "<strong>Keep labeling</strong> · 1 of 3 stable versions in a row" in html
    assert "(predictions on the stop set agree with the version before, kappa ≥ 0.99)" in html
    assert "v2 changed predictions from v1 (kappa 0.80)" in html
    assert 'data-stable="1"' in html


def test_an_idle_panel_says_no_retrain_is_waiting(retrained: Project, alice: User) -> None:
    ModelState.objects.create(project=retrained, queue_refreshed_at=timezone.now())

    html = panel(retrained, alice)

    assert "Idle: no retrain is waiting" in html
    assert "it retrains by itself every 10 new labels" in html
    assert "refreshed just now" in html
    assert "waiting for a worker" not in html


def test_a_waiting_retrain_says_who_it_waits_for_and_since_when(
    retrained: Project, alice: User
) -> None:
    two_minutes_ago = timezone.now() - timedelta(minutes=2, seconds=10)
    ModelState.objects.create(
        project=retrained, queued_at=two_minutes_ago, queue_refreshed_at=two_minutes_ago
    )

    html = panel(retrained, alice)

    assert "Waiting for a worker to pick up the retrain</strong>" in html
    assert "(asked 2\xa0minutes ago)" in html
    assert "refreshed 2\xa0minutes ago" in html
    assert "Idle" not in html


def test_a_new_project_says_when_its_first_model_comes(alice: User) -> None:
    html = panel(make_project(alice), alice)

    assert "Idle: no model yet" in html
    assert "the first trains by itself after 10 labels" in html


# --- The model report -----------------------------------------------------------------------


def test_compute_shows_rates_in_words_and_the_cost_as_not_priced(
    retrained: Project, alice: User
) -> None:
    html = client_for(alice).get(reverse("model_report", args=[retrained.pk])).content.decode()

    # Each version: 24 labels in 0.06 s of device time, 1,440,000 labels per device-hour;
    # in all, the latest 24 labels over 0.18 s.
    assert "<td>1.44 million</td>" in html
    assert '<td id="total-labels-per-hour">480,000</td>' in html
    assert '<td id="total-cost">not priced</td>' in html
    assert "Not priced: set SIFT_PRICE_PER_DEVICE_HOUR to see what training costs." in html
    assert "Labels learned per hour of device time; higher is cheaper." in html
    assert "0.0000" not in html


def test_a_tiny_cost_is_under_a_cent(retrained: Project, alice: User, settings: Any) -> None:
    settings.SIFT_PRICE_PER_DEVICE_HOUR = 2.0

    html = client_for(alice).get(reverse("model_report", args=[retrained.pk])).content.decode()

    # 0.18 s at $2.00 an hour is $0.0001.
    assert '<td id="total-cost">under $0.01</td>' in html
    assert "Device time at $2.00 per device-hour." in html


def test_the_learning_curve_says_why_the_two_accuracies_differ(
    retrained: Project, alice: User
) -> None:
    html = client_for(alice).get(reverse("model_report", args=[retrained.pk])).content.decode()

    assert "cross-validated accuracy (on your labels, which the queue chose because they" in html


# --- The people page ------------------------------------------------------------------------


def answer_at(project: Project, user: User, at: datetime) -> None:
    item = project.items.filter(answer_count=0).order_by("pk").first()
    assert item is not None
    serve(project, user, item)
    saved, _ = submit_answer(project, user, item, resolve_labels(project, ["positive"]))
    Annotation.objects.filter(pk=saved.pk).update(created_at=at)


def test_throughput_covers_every_day_of_the_project_with_zeros(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=6)
    now = timezone.now()
    Project.objects.filter(pk=project.pk).update(created_at=now - timedelta(days=5))
    project.refresh_from_db()
    answer_at(project, bob, now - timedelta(days=4))
    answer_at(project, bob, now - timedelta(days=4))
    answer_at(project, bob, now - timedelta(days=1))

    result = throughput(project)

    assert result.unit == "day"
    assert result.counts == {"bob": [0, 2, 0, 0, 1, 0]}  # five days ago up to today
    page = client_for(alice).get(reverse("people", args=[project.pk])).content.decode()
    assert page.count('<rect class="chart-bar"') == 2
    assert "Answers per day since the project began" in page
    assert "a day without answers shows as a gap" in page


def test_a_project_younger_than_two_days_is_counted_per_hour(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=6)
    now = timezone.now()
    Project.objects.filter(pk=project.pk).update(created_at=now - timedelta(hours=5))
    project.refresh_from_db()
    answer_at(project, bob, now - timedelta(hours=3))

    result = throughput(project)

    assert result.unit == "hour"
    assert len(result.periods) == 6  # the creation hour up to this one
    assert sum(result.counts["bob"]) == 1
