"""The lead's model report: what each model version cost, how accuracy grew, how labels spread.

Reads the database in one query per section. Energy is an estimate from modeling.core.energy;
cost needs SIFT_PRICE_PER_DEVICE_HOUR in the settings and is 0 while that is unset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count

from labeling.charts import BarChart, LineChart, category_bars, line_chart
from labeling.models import Project
from modeling.interface import LearningCurve, energy_wh

EVALUATION = "evaluation accuracy"
CROSS_VALIDATED = "cross-validated accuracy"
RANDOM_SAMPLING = "random sampling (estimated)"
CURVE_COLORS = {EVALUATION: "#2563eb", CROSS_VALIDATED: "#ea580c", RANDOM_SAMPLING: "#6b7280"}


def price_per_device_hour() -> float:
    """What an hour on the training device costs, in the site's currency; 0 when unknown."""
    return float(getattr(settings, "SIFT_PRICE_PER_DEVICE_HOUR", 0.0))


@dataclass(frozen=True)
class Compute:
    """Time, energy and cost of one or more training runs, and the rates they give."""

    device: str
    train_seconds: float
    score_seconds: float
    # Labeled examples trained on and pool items scored, summed over the runs.
    samples_trained: int
    samples_scored: int
    # The labels the (latest) model learned from.
    labels: int
    energy_wh: float | None
    cost: float

    @property
    def device_hours(self) -> float:
        return (self.train_seconds + self.score_seconds) / 3600

    @property
    def train_samples_per_second(self) -> float | None:
        return self.samples_trained / self.train_seconds if self.train_seconds else None

    @property
    def score_samples_per_second(self) -> float | None:
        return self.samples_scored / self.score_seconds if self.score_seconds else None

    @property
    def labels_per_device_hour(self) -> float | None:
        return self.labels / self.device_hours if self.device_hours else None


@dataclass(frozen=True)
class VersionReport(Compute):
    number: int
    created_at: datetime
    cv_accuracy: float | None
    evaluation_accuracy: float | None
    evaluation_ci: tuple[float, float] | None
    kind: str = "head"
    promoted: bool = True
    # Measured by the fine-tuning loop (None for the head): examples per second while
    # training, and the peak memory of the run (GPU memory, or the process's on a CPU).
    measured_samples_per_second: float | None = None
    peak_memory_bytes: int | None = None
    energy_measured: bool = False

    @property
    def train_samples_per_second(self) -> float | None:
        return self.measured_samples_per_second or super().train_samples_per_second


def version_reports(project: Project) -> list[VersionReport]:
    """Every model version of the project, oldest first, with its cost and accuracy."""
    price = price_per_device_hour()
    rows = project.model_versions.order_by("number").values_list(
        "number",
        "created_at",
        "device",
        "labels_used",
        "pool_size",
        "train_seconds",
        "score_seconds",
        # Only these keys: the metrics also hold every stop-set prediction.
        "metrics__cv_accuracy",
        "metrics__evaluation",
        "kind",
        "promoted",
        "samples_per_second",
        "peak_memory_bytes",
        "energy_wh",
        "energy_source",
        "cost",
    )
    reports = []
    for (
        number,
        created_at,
        device,
        labels,
        pool,
        train,
        score,
        cv,
        evaluation,
        kind,
        promoted,
        samples_per_second,
        peak_memory,
        stored_energy,
        energy_source,
        stored_cost,
    ) in rows:
        evaluation = evaluation or {}
        ci = evaluation.get("accuracy_ci")
        reports.append(
            VersionReport(
                device=device,
                train_seconds=train,
                score_seconds=score,
                samples_trained=labels,
                samples_scored=pool,
                labels=labels,
                # A fine-tuned version stored what it measured (NVML) or estimated itself.
                energy_wh=(
                    stored_energy if stored_energy is not None else energy_wh(device, train + score)
                ),
                cost=stored_cost if stored_cost is not None else price * (train + score) / 3600,
                number=number,
                created_at=created_at,
                cv_accuracy=cv,
                evaluation_accuracy=evaluation.get("accuracy"),
                evaluation_ci=(ci[0], ci[1]) if ci else None,
                kind=kind,
                promoted=promoted,
                measured_samples_per_second=samples_per_second,
                peak_memory_bytes=peak_memory,
                energy_measured=energy_source == "nvml",
            )
        )
    return reports


def compute_totals(versions: Sequence[VersionReport]) -> Compute:
    """All versions together; labels per device-hour is the latest model's labels per hour spent."""
    energies = [version.energy_wh for version in versions]
    return Compute(
        device=", ".join(sorted({version.device for version in versions})),
        train_seconds=sum(version.train_seconds for version in versions),
        score_seconds=sum(version.score_seconds for version in versions),
        samples_trained=sum(version.samples_trained for version in versions),
        samples_scored=sum(version.samples_scored for version in versions),
        labels=versions[-1].labels if versions else 0,
        energy_wh=None if None in energies else sum(e for e in energies if e is not None),
        cost=sum(version.cost for version in versions),
    )


def compute_csv_rows(versions: Sequence[VersionReport]) -> Iterator[list[object]]:
    """A header, one row per version, then a row of totals."""
    yield [
        "version",
        "created_at",
        "device",
        "labels_used",
        "pool_size",
        "train_seconds",
        "score_seconds",
        "train_samples_per_second",
        "score_samples_per_second",
        "labels_per_device_hour",
        "energy_wh",
        "cost",
    ]
    for version in versions:
        yield [version.number, version.created_at.isoformat(), *_compute_columns(version)]
    yield ["total", "", *_compute_columns(compute_totals(versions))]


def _compute_columns(compute: Compute) -> list[object]:
    rates = [
        compute.train_samples_per_second,
        compute.score_samples_per_second,
        compute.labels_per_device_hour,
        compute.energy_wh,
    ]
    return [
        compute.device,
        compute.labels,
        compute.samples_scored,
        round(compute.train_seconds, 3),
        round(compute.score_seconds, 3),
        *("" if rate is None else round(rate, 3) for rate in rates),
        round(compute.cost, 4),
    ]


@dataclass(frozen=True)
class ClassQuality:
    name: str
    precision: float | None
    recall: float | None
    support: int


@dataclass(frozen=True)
class Quality:
    """One version's quality on the random-control items, as its retrain measured it."""

    version: int
    n: int
    accuracy: float
    accuracy_ci: tuple[float, float] | None
    macro_f1: float | None
    macro_f1_ci: tuple[float, float] | None
    per_class: list[ClassQuality]
    # Rows are the true labels, columns the predicted ones; empty for multi-label projects.
    confusion_labels: list[str]
    confusion: list[list[int]]

    def confusion_rows(self) -> list[tuple[str, list[int]]]:
        return list(zip(self.confusion_labels, self.confusion, strict=True))


def latest_quality(project: Project) -> Quality | None:
    """The newest version's evaluation, or None before one had enough control labels."""
    found = (
        project.model_versions.filter(metrics__evaluation__has_key="accuracy")
        .order_by("-number")
        .values_list("number", "metrics__evaluation")
        .first()
    )
    if found is None:
        return None
    number, evaluation = found
    order = {
        name: index for index, name in enumerate(project.labels.values_list("name", flat=True))
    }
    confusion = evaluation.get("confusion") or {"labels": [], "matrix": []}
    ci, f1_ci = evaluation.get("accuracy_ci"), evaluation.get("macro_f1_ci")
    return Quality(
        version=number,
        n=evaluation.get("n", 0),
        accuracy=evaluation["accuracy"],
        accuracy_ci=(ci[0], ci[1]) if ci else None,
        macro_f1=evaluation.get("macro_f1"),
        macro_f1_ci=(f1_ci[0], f1_ci[1]) if f1_ci else None,
        # PostgreSQL's jsonb keeps no key order: list the labels in the project's order.
        per_class=[
            ClassQuality(name, row["precision"], row["recall"], row["support"])
            for name, row in sorted(
                evaluation.get("per_class", {}).items(),
                key=lambda pair: order.get(pair[0], len(order)),
            )
        ],
        confusion_labels=confusion["labels"],
        confusion=confusion["matrix"],
    )


def per_class_csv_rows(quality: Quality | None) -> Iterator[list[object]]:
    """A header, then precision, recall and support per label ("" where undefined)."""
    yield ["version", "label", "precision", "recall", "support"]
    if quality is None:
        return
    for row in quality.per_class:
        yield [quality.version, row.name, _blank(row.precision), _blank(row.recall), row.support]


def confusion_csv_rows(quality: Quality | None) -> Iterator[list[object]]:
    """A header of predicted labels, then one row of counts per true label."""
    if quality is None:
        yield ["true/predicted"]
        return
    yield ["true/predicted", *quality.confusion_labels]
    for name, counts in quality.confusion_rows():
        yield [name, *counts]


@dataclass(frozen=True)
class RandomBaseline:
    """Random sampling's learning curve, fitted on the random control by the latest retrain."""

    curve: LearningCurve
    up_to: int  # labels beyond this are too far from the fitted range to trust

    def accuracy_at(self, labels: int) -> float | None:
        if not 0 < labels <= self.up_to:
            return None
        return min(max(self.curve.accuracy_at(labels), 0.0), 1.0)


def random_baseline(project: Project) -> RandomBaseline | None:
    """The latest fitted random-sampling curve, or None before one could be fitted."""
    fitted = (
        project.model_versions.filter(metrics__labels_saved__has_key="random_curve")
        .order_by("-number")
        .values_list("metrics__labels_saved__random_curve", flat=True)
        .first()
    )
    if not fitted:
        return None
    return RandomBaseline(LearningCurve.from_json(fitted), int(fitted["up_to"]))


def learning_curve_chart(
    versions: Sequence[VersionReport], baseline: RandomBaseline | None = None
) -> LineChart:
    """Accuracy in percent against labels used: evaluation with its 95% band, CV, and what
    random sampling would have reached with as many labels (where it has been estimated)."""

    def percent(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 1)

    series = {
        EVALUATION: [percent(version.evaluation_accuracy) for version in versions],
        CROSS_VALIDATED: [percent(version.cv_accuracy) for version in versions],
    }
    if baseline is not None:
        series[RANDOM_SAMPLING] = [percent(baseline.accuracy_at(v.labels)) for v in versions]
    return line_chart(
        [version.labels for version in versions],
        series,
        CURVE_COLORS,
        bands={
            EVALUATION: [
                (100 * v.evaluation_ci[0], 100 * v.evaluation_ci[1]) if v.evaluation_ci else None
                for v in versions
            ]
        },
        y_max=100,
        x_name="labels",
        y_suffix="%",
    )


def learning_curve_csv_rows(
    versions: Sequence[VersionReport], baseline: RandomBaseline | None = None
) -> Iterator[list[object]]:
    """A header, then one row per version with accuracies as fractions ("" where unknown)."""
    yield [
        "version",
        "labels_used",
        "evaluation_accuracy",
        "ci_low",
        "ci_high",
        "cv_accuracy",
        "random_sampling_estimate",
    ]
    for version in versions:
        low, high = version.evaluation_ci or ("", "")
        random = baseline.accuracy_at(version.labels) if baseline else None
        yield [
            version.number,
            version.labels,
            _blank(version.evaluation_accuracy),
            low,
            high,
            _blank(version.cv_accuracy),
            "" if random is None else round(random, 4),
        ]


@dataclass(frozen=True)
class LabelCount:
    name: str
    color: str
    answers: int


def label_distribution(project: Project) -> list[LabelCount]:
    """How many answers chose each label, imported ones included, in the project's label order."""
    # Django drops Meta.ordering from grouped queries, so the label order is asked for again.
    rows = (
        project.labels.annotate(answers=Count("annotations"))
        .order_by("position", "pk")
        .values_list("name", "color", "answers")
    )
    return [LabelCount(name, color, answers) for name, color, answers in rows]


def label_distribution_chart(counts: Sequence[LabelCount]) -> BarChart:
    return category_bars(
        [count.name for count in counts],
        [count.answers for count in counts],
        [count.color for count in counts],
    )


def label_distribution_csv_rows(counts: Sequence[LabelCount]) -> Iterator[list[object]]:
    yield ["label", "answers"]
    for count in counts:
        yield [count.name, count.answers]


def _blank(value: Any) -> object:
    return "" if value is None else value
