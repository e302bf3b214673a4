"""What a model version stores in `ModelVersion.metrics`, typed (a JSON object in the database).

Written by the workers (modeling/services/), read by the pages, the API and the reports. Keys
are optional: a version stores what applied to it (a head version has no `promotion`, a
version without enough random-control labels an `evaluation` with only `n` and a `note`).
"""

from __future__ import annotations

from typing import Any, TypedDict


class PerClass(TypedDict):
    precision: float | None
    recall: float | None
    support: int


class Confusion(TypedDict):
    labels: list[str]
    matrix: list[list[int]]


class Evaluation(TypedDict, total=False):
    """Quality on the labeled random-control items, with 95% bootstrap intervals."""

    n: int
    note: str
    trained_on_control: bool
    accuracy: float  # multi-label: the share of items with exactly the right labels
    accuracy_ci: list[float]
    macro_f1: float
    macro_f1_ci: list[float]
    micro_f1: float  # multi-label only
    per_class: dict[str, PerClass]
    confusion: Confusion  # single-label only
    # Single-label: the confidence from which random controls are shown suggestions.
    suggest_above: float | None


class SuggestionFigures(TypedDict):
    """Suggestions answered on items picked one way: from which confidence to show them."""

    threshold: float | None  # None: never shown
    answers: int
    shown: int
    shown_right: float | None


class Suggestions(TypedDict):
    picked: SuggestionFigures  # served from the model's ranked queue
    controls: SuggestionFigures  # drawn at random


class LabelsSaved(TypedDict, total=False):
    """Labels saved against random sampling, or the reason there is no figure."""

    reason: str
    estimate: int | None
    low: int | None
    high: int | None
    at_least: bool
    note: str
    measured_on: int  # control items random sampling's curve was measured on
    random_curve: dict[str, Any]  # LearningCurve.as_json() and "up_to"


class StopSet(TypedDict):
    ids_hash: str
    predictions: list[int]


class Promotion(TypedDict, total=False):
    accuracy: float | None
    baseline_version: int | None
    baseline_accuracy: float | None
    promoted: bool
    reason: str
    forced: bool


class Training(TypedDict, total=False):
    """How a fine-tuned version was trained."""

    precision: str
    steps: int
    epochs_run: int
    samples_seen: int
    effective_batch_size: int
    best_validation_loss: float | None
    stopped_early: bool
    resumed_from_step: int
    warm_start_version: int | None
    padding_fraction: float


class VersionMetrics(TypedDict, total=False):
    cv_accuracy: float  # head only: cross-validated on the training labels
    head_C: float  # head only: the inverse regularization its head chose (or was given)
    label_errors: list[list[Any]]  # [item id, predicted label id, confidence]
    evaluation: Evaluation
    labels_saved: LabelsSaved
    stop_set: StopSet
    suggestions: Suggestions  # single-label head versions
    pool_uncertainty: float | None
    promotion: Promotion
    training: Training
