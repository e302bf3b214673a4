"""The lead's view of the people: annotator pace, agreement, disagreements, likely label errors.

Every statistic about people leaves out the pseudo-user that owns imported labels. Each
function reads the database in a fixed handful of queries (two or three), whatever the number
of annotators.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import Literal

from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Trunc
from django.utils import timezone

from labeling.charts import BarChart, stacked_bars
from labeling.consensus import Answer, answers_by_item, final_labels
from labeling.models import (
    IMPORTED_USERNAME,
    LABEL_COLORS,
    Adjudication,
    Annotation,
    Item,
    Project,
)
from modeling.interface import cohen_kappa, krippendorff_alpha
from modeling.models import ModelVersion

# A kappa from fewer shared items than this says more about luck than about the pair.
MIN_SHARED_ITEMS = 5
# Only a model this sure of its guess is worth a reviewer's time when it contradicts a label.
CONFIDENT = 0.9
# Answers spanning less than this are counted per hour, up to MAX_DAILY_SPAN per day, then per week.
MAX_HOURLY_SPAN = timedelta(days=2)
MAX_DAILY_SPAN = timedelta(days=120)
_PERIOD_NAMES = {"hour": "{day} {hour}:00", "day": "{day}", "week": "week of {day}"}
_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}

Period = Literal["hour", "day", "week"]


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    answered: int
    skipped: int
    labels_per_hour: float | None
    median_seconds: float | None

    @property
    def answers(self) -> int:
        return self.answered + self.skipped

    @property
    def skip_rate(self) -> float:
        return self.skipped / self.answers


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    shared_items: int
    kappa: float


@dataclass(frozen=True)
class Agreement:
    overlapped_items: int
    disagreeing_items: int
    alpha: float | None
    pairs: list[PairAgreement]


@dataclass(frozen=True)
class Disagreement:
    item_id: int
    text: str
    answers: list[Answer]


@dataclass(frozen=True)
class LikelyLabelError:
    item_id: int
    text: str
    given: list[str]
    predicted: list[str]
    confidence: float


@dataclass(frozen=True)
class Ruling:
    item_id: int
    text: str
    labels: list[str]
    reviewer: str
    note: str
    at: datetime


@dataclass(frozen=True)
class Throughput:
    unit: Period
    periods: list[datetime]
    counts: dict[str, list[int]]

    def period_names(self) -> list[str]:
        return [
            _PERIOD_NAMES[self.unit].format(day=f"{period:%b} {period.day}", hour=f"{period:%H}")
            for period in map(timezone.localtime, self.periods)
        ]

    def csv_rows(self) -> Iterator[list[object]]:
        """A header, then one row per period and annotator (zeros included)."""
        yield ["period_start", "annotator", "answers"]
        for index, period in enumerate(self.periods):
            for username, counts in self.counts.items():
                yield [timezone.localtime(period).isoformat(), username, counts[index]]


def human_answers(project: Project) -> Q:
    """Filter for the project's answers given by people, not read from an imported file."""
    return Q(item__project=project) & ~Q(annotator__username=IMPORTED_USERNAME)


def annotator_stats(project: Project) -> list[AnnotatorStats]:
    """Pace and skip rate of everyone who answered in the project, by username.

    Time is the `seconds_spent` the annotator screen measures while an item is on screen,
    so breaks between items never count. Answers without a measured time (0 s, as most API
    clients send) are left out of both the rate and the median rather than read as instant.
    Labels per hour is the timed non-skipped answers over the hours of all timed answers,
    skips included, since a skip takes time too. The median is over timed non-skipped answers.
    """
    rows = (
        Annotation.objects.filter(human_answers(project))
        .order_by("annotator__username")
        .values_list("annotator__username", "skipped", "seconds_spent")
    )
    by_user: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for username, skipped, seconds in rows:
        by_user[username].append((skipped, seconds))
    stats = []
    for username, answers in by_user.items():
        timed_seconds = sum(seconds for _, seconds in answers if seconds > 0)
        timed_labels = [seconds for skipped, seconds in answers if not skipped and seconds > 0]
        skips = sum(skipped for skipped, _ in answers)
        stats.append(
            AnnotatorStats(
                username=username,
                answered=len(answers) - skips,
                skipped=skips,
                labels_per_hour=3600 * len(timed_labels) / timed_seconds if timed_seconds else None,
                median_seconds=statistics.median(timed_labels) if timed_labels else None,
            )
        )
    return stats


def agreement(project: Project) -> Agreement:
    """Chance-corrected agreement on the items two or more people answered.

    An answer's category is the tuple of its label names in alphabetical order: the one label
    of a single-label project, and in multi-label projects the whole set, so two answers
    agree only when they chose exactly the same labels. Cohen's kappa is given for each pair
    of annotators sharing at least MIN_SHARED_ITEMS answered items; Krippendorff's alpha
    covers all overlapped items and annotators at once.
    """
    units = _overlapped_answers(project)
    categories = {item: _categories(answers) for item, answers in units.items()}
    by_pair: dict[tuple[str, str], tuple[list[Hashable], list[Hashable]]] = {}
    for answers in categories.values():
        for (first, a), (second, b) in combinations(sorted(answers.items()), 2):
            pair = by_pair.setdefault((first, second), ([], []))
            pair[0].append(a)
            pair[1].append(b)
    pairs = [
        PairAgreement(first, second, len(a), cohen_kappa(a, b))
        for (first, second), (a, b) in sorted(by_pair.items())
        if len(a) >= MIN_SHARED_ITEMS
    ]
    alpha = krippendorff_alpha([list(c.values()) for c in categories.values()]) if units else None
    return Agreement(
        overlapped_items=len(units),
        disagreeing_items=sum(len(set(c.values())) > 1 for c in categories.values()),
        alpha=alpha,
        pairs=pairs,
    )


def disagreements(project: Project, limit: int = 50) -> list[Disagreement]:
    """Unresolved items whose people's answers differ, newest first, with everyone's labels."""
    units = _overlapped_answers(project)
    ruled = set(
        Adjudication.objects.filter(item__project=project).values_list("item_id", flat=True)
    )
    disputed = sorted(
        (
            item
            for item, answers in units.items()
            if item not in ruled and len(set(_categories(answers).values())) > 1
        ),
        reverse=True,
    )[:limit]
    texts = dict(Item.objects.filter(pk__in=disputed).values_list("pk", "text"))
    return [Disagreement(item, texts[item], units[item]) for item in disputed]


def recent_rulings(project: Project, limit: int = 20) -> list[Ruling]:
    """The reviewers' latest rulings, newest first."""
    rulings = (
        Adjudication.objects.filter(item__project=project)
        .select_related("item", "resolved_by")
        .prefetch_related("labels")
        .order_by("-updated_at", "-pk")[:limit]
    )
    return [
        Ruling(
            item_id=ruling.item_id,
            text=ruling.item.text,
            labels=[label.name for label in ruling.labels.all()],
            reviewer=ruling.resolved_by.username if ruling.resolved_by else "",
            note=ruling.note,
            at=ruling.updated_at,
        )
        for ruling in rulings
    ]


def likely_label_errors(
    project: Project, limit: int = 50, min_confidence: float = CONFIDENT
) -> list[LikelyLabelError]:
    """Labeled items whose final label a confident model contradicts, surest guess first.

    The guesses come from the latest retrain, which predicted every labeled item with models
    that did not learn from it (out-of-fold), so a model cannot simply agree with what it was
    taught. The given label is the export's final label over every answer, imported ones
    included: a wrong label in an imported file is exactly what this list should catch. Items
    a reviewer has ruled on are left out, and so are items whose answers changed since and
    now agree with the model.
    """
    metrics = (
        ModelVersion.objects.filter(project=project, metrics__has_key="label_errors")
        .order_by("-number")
        .values_list("metrics", flat=True)
        .first()
    )
    suspects = [
        (item_id, label_id, confidence)
        for item_id, label_id, confidence in (metrics or {}).get("label_errors", [])
        if confidence >= min_confidence
    ]
    label_names = dict(project.labels.values_list("pk", "name"))
    item_ids = [item_id for item_id, _, _ in suspects]
    texts = dict(
        Item.objects.filter(pk__in=item_ids, adjudication__isnull=True).values_list("pk", "text")
    )
    answers = answers_by_item(Annotation.objects.filter(item_id__in=texts), label_names)
    found: list[LikelyLabelError] = []
    for item_id, label_id, confidence in suspects:
        if item_id not in texts or label_id not in label_names:
            continue
        given = final_labels(answers.get(item_id, []), project.multi_label, [*label_names.values()])
        predicted = [label_names[label_id]]
        if given and given != predicted:
            found.append(LikelyLabelError(item_id, texts[item_id], given, predicted, confidence))
    return found[:limit]


def throughput(project: Project, until: datetime | None = None) -> Throughput:
    """Non-skipped answers per annotator over the project's life, up to `until` (now).

    Per hour while the project is younger than MAX_HOURLY_SPAN, per day up to MAX_DAILY_SPAN,
    then per week; periods without answers count as zeros, so quiet days show as gaps.
    """
    answers = Annotation.objects.filter(human_answers(project), skipped=False)
    span = answers.aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is None:
        return Throughput("day", [], {})
    start = min(project.created_at, span["first"])
    end = max(until or timezone.now(), span["last"])
    length = end - start
    unit: Period = (
        "hour" if length < MAX_HOURLY_SPAN else "day" if length <= MAX_DAILY_SPAN else "week"
    )
    rows = (
        answers.annotate(period=Trunc("created_at", unit))
        .values_list("period", "annotator__username")
        .annotate(answers=Count("pk"))
        .order_by("period", "annotator__username")
    )
    counted = {(period, username): count for period, username, count in rows}
    periods = _periods(_period_start(start, unit), end, unit)
    usernames = sorted({username for _, username in counted})
    counts = {
        username: [counted.get((period, username), 0) for period in periods]
        for username in usernames
    }
    return Throughput(unit, periods, counts)


def throughput_chart(data: Throughput) -> BarChart:
    """Stacked bars of answers per period, one colour per annotator."""
    colors = {
        username: LABEL_COLORS[index % len(LABEL_COLORS)]
        for index, username in enumerate(data.counts)
    }
    return stacked_bars(data.period_names(), data.counts, colors)


def _period_start(moment: datetime, unit: Period) -> datetime:
    """The start of the local hour, day or (Monday) week holding `moment`, as Trunc gives it."""
    start = timezone.localtime(moment).replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return start
    start = start.replace(hour=0)
    return start - timedelta(days=start.weekday()) if unit == "week" else start


def _periods(first: datetime, last: datetime, unit: Period) -> list[datetime]:
    # Stepping in local wall-clock time keeps day and week starts at local midnight.
    current, periods = timezone.localtime(first), []
    while current <= last:
        periods.append(current)
        current += _STEPS[unit]
    return periods


def _overlapped_answers(project: Project) -> dict[int, list[Answer]]:
    """Non-skipped answers by people, for each item that two or more people answered."""
    label_names = dict(project.labels.values_list("pk", "name"))
    # answer_count also counts imported answers, so it narrows the read without deciding.
    query = Annotation.objects.filter(
        human_answers(project), skipped=False, item__answer_count__gte=2
    )
    by_item = answers_by_item(query, label_names)
    return {item: answers for item, answers in by_item.items() if len(answers) >= 2}


def _categories(answers: Sequence[Answer]) -> dict[str, Hashable]:
    """Each annotator's answer as one category, the sorted tuple of its label names."""
    return {answer.annotator: tuple(sorted(answer.labels)) for answer in answers}
