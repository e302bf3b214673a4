"""Alice asks the model panel whether to keep labeling and how many labels the model saved."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labeling.models import Item, Project
from modeling.models import ModelVersion
from modeling.services import version_metrics
from modeling.services.refresh import refresh_model
from tests.conftest import add_items, client_for, label, topic_of
from tests.fixtures import finance_texts, sports_texts


def label_with_controls(project: Project, user: User, ranked: int, controls: int) -> None:
    """Bob labels items; the last `controls` of them are flagged as random controls."""
    # A fixed shuffle instead of the items' random keys, so every run labels the same items.
    in_order = list(project.items.order_by("pk"))
    shuffled = np.random.default_rng(0).permutation(len(in_order))
    items = [in_order[i] for i in shuffled[: ranked + controls]]
    for item in items:
        label(project, user, item, topic_of(item))
    Item.objects.filter(pk__in=[item.pk for item in items[ranked:]]).update(is_random_control=True)


def panel(project: Project, user: User) -> str:
    response = client_for(user).get(reverse("model_status", args=[project.pk]))
    assert response.status_code == 286  # nothing in progress: the panel stops polling
    return response.content.decode()


def test_after_one_version_alice_is_told_to_keep_labeling_and_why(
    topics: Project, alice: User, bob: User
) -> None:
    label_with_controls(topics, bob, ranked=6, controls=12)

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    assert len(version.metrics["stop_set"]["predictions"]) == 24
    html = panel(topics, alice)
    assert "<strong>Keep labeling</strong>" in html
    assert "0 of 3 stable versions in a row" in html
    assert "v1 is the first version to predict it" in html
    assert "Needs 40 random-control labels, has 12." in html


def test_when_retraining_no_longer_changes_predictions_alice_may_stop(
    topics: Project, alice: User, bob: User
) -> None:
    label_with_controls(topics, bob, ranked=6, controls=12)

    for run in range(4):
        refresh_model(topics.pk, run_id=f"run-{run}")

    html = panel(topics, alice)
    assert "<strong>Consider stopping</strong>" in html
    assert "3 of 3 stable versions in a row" in html
    assert "kappa ≥ 0.99): v2 to v4" in html
    assert "mean uncertainty on unlabeled items" in html


def test_labels_saved_on_an_easy_project_says_why_there_is_no_number(
    topics: Project, alice: User, bob: User
) -> None:
    add_items(topics, sports_texts(40)[12:] + finance_texts(40)[12:])
    label_with_controls(topics, bob, ranked=6, controls=44)

    version = refresh_model(topics.pk, run_id="run-1")

    # Every subset of the control labels already classifies these topics perfectly.
    assert version is not None
    assert version.metrics["evaluation"]["n"] == 44
    reason = "Random sampling&#x27;s learning curve on the control items is too flat or noisy"
    assert reason in panel(topics, alice)


def test_random_samplings_curve_is_measured_again_once_the_controls_grow_by_a_tenth(
    topics: Project, bob: User
) -> None:
    add_items(topics, sports_texts(40)[12:] + finance_texts(40)[12:])
    label_with_controls(topics, bob, ranked=6, controls=44)

    def measured_on_after_more_controls(more: int, run: str) -> int:
        unlabeled = list(topics.items.filter(answer_count=0).order_by("pk")[:more])
        for item in unlabeled:
            label(topics, bob, item, topic_of(item))
        Item.objects.filter(pk__in=[item.pk for item in unlabeled]).update(is_random_control=True)
        version = refresh_model(topics.pk, run_id=run)
        assert version is not None
        return int(version.metrics["labels_saved"]["measured_on"])

    # Measuring trains 80 classifiers; four more controls (48 < 44 * 1.1) hardly move the
    # curve, so the next retrain keeps it; a fifth and sixth make it worth measuring again.
    assert measured_on_after_more_controls(0, "run-1") == 44
    assert measured_on_after_more_controls(4, "run-2") == 44
    assert measured_on_after_more_controls(2, "run-3") == 50


def test_a_control_item_relabeled_gets_random_samplings_curve_measured_again(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_items(topics, sports_texts(40)[12:] + finance_texts(40)[12:])
    label_with_controls(topics, bob, ranked=6, controls=44)
    measured = []
    measure = version_metrics.measure_random_curve
    monkeypatch.setattr(
        version_metrics, "measure_random_curve", lambda *args: measured.append(1) or measure(*args)
    )
    refresh_model(topics.pk, run_id="run-1")
    control = topics.items.filter(is_random_control=True).order_by("pk").first()
    assert control is not None

    # Bob changes his mind about one control item: the kept curve was measured on its old label.
    label(topics, bob, control, "finance" if topic_of(control) == "sports" else "sports")
    refresh_model(topics.pk, run_id="run-2")
    refresh_model(topics.pk, run_id="run-3")

    assert len(measured) == 2


def panel_with_labels_saved(project: Project, alice: User, bob: User, saved: dict) -> str:
    """The panel after a real retrain whose labels-saved figure is replaced by `saved`."""
    label_with_controls(project, bob, ranked=6, controls=12)
    version = refresh_model(project.pk, run_id="run-1")
    assert version is not None
    metrics = {**version.metrics, "labels_saved": saved}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    return panel(project, alice)


def test_labels_saved_shows_the_estimate_with_its_band_and_method(
    topics: Project, alice: User, bob: User
) -> None:
    saved = {"estimate": 120, "low": 80, "high": None, "note": "the method"}

    html = panel_with_labels_saved(topics, alice, bob, saved)

    assert '120 <span class="muted">(80 to more)</span>' in html
    assert "Labels saved against random sampling: the method." in html


def test_labels_saved_beyond_random_samplings_reach_shows_a_lower_bound(
    topics: Project, alice: User, bob: User
) -> None:
    saved = {"low": 300, "high": None, "at_least": True, "note": "the method"}

    html = panel_with_labels_saved(topics, alice, bob, saved)

    assert "<dd>at least 300</dd>" in html
    assert "More than random sampling's curve can be trusted for, so only a lower bound." in html
