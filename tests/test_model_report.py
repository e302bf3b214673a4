"""Alice (lead) reads the model report of her project; Bob (annotator) and Charlie may not.

The story: Alice's project has trained twice on the CPU. Version 1 learned from 20 labels in
30 s and scored 180 items in 6 s; version 2 learned from 40 labels in 60 s and scored 160 items
in 12 s. Bob has labeled three items and a file Alice imported labeled one more.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.conf import Settings
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from labeling.models import Project, Role, imported_annotator
from labeling.reports import (
    CROSS_VALIDATED,
    EVALUATION,
    RANDOM_SAMPLING,
    learning_curve_chart,
    random_baseline,
    version_reports,
)
from modeling.models import ModelVersion
from tests.conftest import client_for, label, make_project

TRAINED_AT = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TABLES = ["compute", "learning-curve", "labels", "per-class", "confusion"]


def add_version(
    project: Project, number: int, labels: int, pool: int, train: float, score: float, **metrics
) -> None:
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        encoder="hashing",
        strategy="margin",
        labels_used=labels,
        pool_size=pool,
        snapshot_at=timezone.now(),
        train_seconds=train,
        score_seconds=score,
        device="cpu",
        metrics=metrics,
    )
    ModelVersion.objects.filter(pk=version.pk).update(created_at=TRAINED_AT)


@pytest.fixture
def trained(alice: User, bob: User, charlie: User) -> Project:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=6)
    add_version(
        project,
        1,
        20,
        180,
        30,
        6,
        cv_accuracy=0.55,
        evaluation={"accuracy": 0.6, "accuracy_ci": [0.4, 0.8], "n": 20},
    )
    add_version(project, 2, 40, 160, 60, 12, evaluation={"n": 3})
    items = list(project.items.order_by("pk"))
    for item, name in zip(items, ["positive", "positive", "negative"], strict=False):
        label(project, bob, item, name)
    label(project, imported_annotator(), items[3], "positive")
    return project


def report_url(project: Project, table: str | None = None) -> str:
    if table is None:
        return reverse("model_report", args=[project.pk])
    return reverse("model_report_csv", args=[project.pk, table])


def test_lead_finds_the_report_from_the_project_page(trained: Project, alice: User) -> None:
    page = client_for(alice).get(reverse("project_detail", args=[trained.pk]))

    assert report_url(trained) in page.content.decode()


def test_lead_sees_what_training_cost_and_both_charts(
    trained: Project, alice: User, settings: Settings
) -> None:
    settings.SIFT_PRICE_PER_DEVICE_HOUR = 2.0

    page = client_for(alice).get(report_url(trained))

    assert page.status_code == 200
    html = page.content.decode()
    # 108 s in all at 65 W is 1.95 Wh; 0.03 h at 2.0 costs 0.06; 40 labels / 0.03 h.
    assert '<td id="total-energy">1.95</td>' in html
    assert '<td id="total-cost">$0.06</td>' in html
    assert '<td id="total-labels-per-hour">1,333</td>' in html
    assert "Device time at $2.00 per device-hour." in html
    assert 'aria-label="Accuracy against labels used"' in html
    assert 'aria-label="Answers per label"' in html


def test_without_a_price_the_report_says_which_setting_to_add(
    trained: Project, alice: User
) -> None:
    page = client_for(alice).get(report_url(trained))

    assert "set SIFT_PRICE_PER_DEVICE_HOUR" in page.content.decode()


def test_a_project_without_models_or_answers_says_so(alice: User) -> None:
    project = make_project(alice)

    html = client_for(alice).get(report_url(project)).content.decode()

    assert "No model has been trained yet." in html
    assert "No answers yet." in html
    assert "<svg" not in html


@pytest.mark.parametrize("table", [None, *TABLES])
def test_annotators_and_outsiders_get_a_404(
    trained: Project, bob: User, charlie: User, table: str | None
) -> None:
    assert client_for(bob).get(report_url(trained, table)).status_code == 404
    assert client_for(charlie).get(report_url(trained, table)).status_code == 404


def test_an_unknown_table_is_a_404(trained: Project, alice: User) -> None:
    assert client_for(alice).get(report_url(trained, "secrets")).status_code == 404


def test_compute_csv_has_a_row_per_version_and_the_totals(
    trained: Project, alice: User, settings: Settings
) -> None:
    settings.SIFT_PRICE_PER_DEVICE_HOUR = 2.0

    response = client_for(alice).get(report_url(trained, "compute"))

    assert response["Content-Disposition"] == f'attachment; filename="compute-{trained.pk}.csv"'
    assert response.content.decode().splitlines() == [
        "version,created_at,device,labels_used,pool_size,train_seconds,score_seconds,"
        "train_samples_per_second,score_samples_per_second,labels_per_device_hour,energy_wh,cost",
        "1,2025-03-03T09:00:00+00:00,cpu,20,180,30.0,6.0,0.667,30.0,2000.0,0.65,0.02",
        "2,2025-03-03T09:00:00+00:00,cpu,40,160,60.0,12.0,0.667,13.333,2000.0,1.3,0.04",
        "total,,cpu,40,340,90.0,18.0,0.667,18.889,1333.333,1.95,0.06",
    ]


def test_learning_curve_csv_leaves_unknown_accuracies_blank(trained: Project, alice: User) -> None:
    response = client_for(alice).get(report_url(trained, "learning-curve"))

    assert response.content.decode().splitlines() == [
        "version,labels_used,evaluation_accuracy,ci_low,ci_high,cv_accuracy,"
        "random_sampling_estimate",
        "1,20,0.6,0.4,0.8,0.55,",
        "2,40,,,,,",
    ]


def test_the_learning_curve_shows_what_random_sampling_would_have_reached(
    trained: Project, alice: User
) -> None:
    # The latest retrain fitted random sampling's curve on the control: 0.9 - 2 / sqrt(n),
    # trusted up to 30 labels.
    fitted = {"random_curve": {"a": 0.9, "b": 2.0, "c": 0.5, "up_to": 30}}
    add_version(trained, 3, 60, 140, 60, 12, labels_saved=fitted)

    chart = learning_curve_chart(version_reports(trained), random_baseline(trained))

    lines = {line.name: line for line in chart.lines}
    # At 20 labels: 0.9 - 2 / sqrt(20) = 0.453; 40 and 60 lie beyond the trusted range.
    assert [p.title for p in lines[RANDOM_SAMPLING].points] == [
        f"{RANDOM_SAMPLING}: 45.3% at 20 labels"
    ]
    response = client_for(alice).get(report_url(trained, "learning-curve"))
    assert response.content.decode().splitlines()[1] == "1,20,0.6,0.4,0.8,0.55,0.4528"
    page = client_for(alice).get(report_url(trained))
    assert RANDOM_SAMPLING in page.content.decode()


def test_a_slow_starting_random_curve_is_drawn_as_fitted(trained: Project) -> None:
    # A project with many labels: random sampling's curve was fitted as a sigmoid in log n,
    # 0.95 - 0.9 / (1 + (n / 300)^1.4), trusted up to 4,000 labels.
    curve = {"a": 0.95, "b": 0.9, "scale": 300.0, "family": "sigmoid", "shape": 1.4}
    add_version(
        trained, 3, 60, 140, 60, 12, labels_saved={"random_curve": {**curve, "up_to": 4000}}
    )

    chart = learning_curve_chart(version_reports(trained), random_baseline(trained))

    lines = {line.name: line for line in chart.lines}
    # At 20 labels: 0.95 - 0.9 / (1 + (20 / 300)^1.4) = 0.070; at 40: 0.101; at 60: 0.136.
    assert [p.title for p in lines[RANDOM_SAMPLING].points] == [
        f"{RANDOM_SAMPLING}: 7% at 20 labels",
        f"{RANDOM_SAMPLING}: 10.1% at 40 labels",
        f"{RANDOM_SAMPLING}: 13.6% at 60 labels",
    ]


def test_a_long_compute_table_shows_the_latest_versions_and_totals_them_all(
    trained: Project, alice: User
) -> None:
    # Retraining every few answers makes a version each time: 13 more, 15 in all.
    for number in range(3, 16):
        add_version(trained, number, 20 * number, 100, 30, 6)

    html = client_for(alice).get(report_url(trained)).content.decode()
    compute = html[html.index('id="compute"') :]

    assert "<td>v15</td>" in compute
    assert "<td>v4</td>" in compute
    assert "<td>v3</td>" not in compute
    assert compute.count("<tr><td>v") == 12
    assert "The latest 12 of 15 versions" in compute
    # The total is over all 15: 36 + 72 + 13 * 36 = 576 s of device time at 65 W is 10.4 Wh.
    assert '<td id="total-energy">10.4</td>' in compute
    csv_rows = client_for(alice).get(report_url(trained, "compute")).content.decode().splitlines()
    assert len(csv_rows) == 1 + 15 + 1


def test_label_csv_counts_every_answer_per_label(trained: Project, alice: User) -> None:
    response = client_for(alice).get(report_url(trained, "labels"))

    assert response.content.decode().splitlines() == [
        "label,answers",
        "positive,3",
        "negative,1",
        "neutral,0",
    ]


def test_the_learning_curve_bands_only_the_evaluation(trained: Project) -> None:
    chart = learning_curve_chart(version_reports(trained))

    lines = {line.name: line for line in chart.lines}
    assert [p.title for p in lines[EVALUATION].points] == [f"{EVALUATION}: 60% at 20 labels"]
    assert [p.title for p in lines[CROSS_VALIDATED].points] == [
        f"{CROSS_VALIDATED}: 55% at 20 labels"
    ]
    assert lines[EVALUATION].band.count(" ") == 1  # one version's interval: two corners
    assert lines[CROSS_VALIDATED].band == ""


def test_lead_sees_precision_recall_and_the_confusion_matrix_of_the_latest_version(
    trained: Project, alice: User
) -> None:
    evaluation = {
        "n": 12,
        "accuracy": 0.75,
        "accuracy_ci": [0.5, 0.92],
        "macro_f1": 0.7,
        "macro_f1_ci": [0.4, 0.9],
        "per_class": {
            "positive": {"precision": 0.8, "recall": 1.0, "support": 4},
            "negative": {"precision": 0.5, "recall": 0.5, "support": 8},
            "neutral": {"precision": None, "recall": None, "support": 0},
        },
        "confusion": {
            "labels": ["positive", "negative", "neutral"],
            "matrix": [[4, 0, 0], [1, 4, 3], [0, 0, 0]],
        },
    }
    add_version(trained, 3, 60, 140, 60, 12, evaluation=evaluation)

    page = client_for(alice).get(report_url(trained)).content.decode()

    assert "Version v3 on 12 random-control items: accuracy 75% (50" in page
    assert "never predicted" in page
    per_class = client_for(alice).get(report_url(trained, "per-class")).content.decode()
    assert per_class.splitlines() == [
        "version,label,precision,recall,support",
        "3,positive,0.8,1.0,4",
        "3,negative,0.5,0.5,8",
        "3,neutral,,,0",
    ]
    confusion = client_for(alice).get(report_url(trained, "confusion")).content.decode()
    assert confusion.splitlines() == [
        "true/predicted,positive,negative,neutral",
        "positive,4,0,0",
        "negative,1,4,3",
        "neutral,0,0,0",
    ]
