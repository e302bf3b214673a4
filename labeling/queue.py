"""Serving items: each annotator gets a different item, reserved by a time-limited lease."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from labeling.models import Annotation, Item, Label, Lease, Project, QueueEntry
from modeling.models import latest_predictions

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# How many locked-but-unavailable candidates to step over before giving up on one request.
_MAX_ATTEMPTS = 20
# Draws in [0, 1) deciding whether a request is served a random control; tests replace it.
_draw: Callable[[], float] = random.random


def lease_next_item(project: Project, annotator: User) -> Item | None:
    """Reserve the next item for this annotator, or None when nothing is left for them
    (`lease_next`, for callers that need only the item)."""
    lease = lease_next(project, annotator)
    return lease.item if lease is not None else None


def lease_next(project: Project, annotator: User) -> Lease | None:
    """Reserve the next item for this annotator: their lease, its item attached, or None when
    nothing is left for them.

    Items come in the order of the ranked queue that active learning writes, then in a fixed
    random order. A share of requests (the project's random_control_share) instead takes the
    next item of the fixed random order over the whole pool and flags it as a random control:
    those items are a uniform sample the model never chose, the evaluation set. An annotator
    who still holds a lease gets the same item back, so reloading the page never skips work.
    On PostgreSQL candidates are locked with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent
    requests never wait on each other; on SQLite the settings make every transaction
    IMMEDIATE, which serializes writers.
    """
    now = timezone.now()
    with transaction.atomic():
        held = (
            Lease.objects.select_related("item__queue_entry")
            .filter(project=project, annotator=annotator, expires_at__gt=now)
            .order_by("created_at")
            .first()
        )
        if held is not None:
            held.expires_at = now + project.lease_duration()
            held.save(update_fields=["expires_at"])
            return held

        control = _draw() < project.random_control_share
        # Each order's queryset is built only when the one before it ran dry: building one
        # costs milliseconds of Python, a large share of a request. When every order comes
        # back empty, they are asked once more: a retrain that replaced the queue while the
        # first pass ran is committed by then, and each statement sees the newest commit.
        orders = [_uniform] if control else [_ranked, _unranked]
        rejected: list[int] = []
        for build in orders * 2:
            ordered = build(project, annotator, now)
            while len(rejected) < _MAX_ATTEMPTS:
                # FOR NO KEY UPDATE: leasers still exclude each other, but no item is skipped
                # while a retrain commits its new queue (the entries' foreign-key checks hold a
                # KEY SHARE lock on every queued item then, which FOR UPDATE would skip).
                item = (
                    ordered.exclude(pk__in=rejected)
                    .select_for_update(skip_locked=True, no_key=True, of=("self",))
                    .first()
                )
                if item is None:
                    break
                # Re-check with a fresh statement now that the row is locked: a lease committed
                # after this transaction's query started is only visible from here.
                if _is_available(item, project, annotator, now):
                    guess = model_guess(project, item)
                    lease = Lease(
                        item=item,
                        annotator=annotator,
                        project=project,
                        expires_at=now + project.lease_duration(),
                        suggested_labels=guess[0] if guess else [],
                        suggestion_confidence=guess[1] if guess else None,
                    )
                    # One upsert: an expired lease of this annotator on this item is renewed.
                    Lease.objects.bulk_create(
                        [lease],
                        update_conflicts=True,
                        unique_fields=["item", "annotator"],
                        update_fields=[
                            "project",
                            "expires_at",
                            "suggested_labels",
                            "suggestion_confidence",
                        ],
                    )
                    if control and not item.is_random_control:
                        Item.objects.filter(pk=item.pk).update(is_random_control=True)
                        item.is_random_control = True
                    return lease
                rejected.append(item.pk)
    return None


def release_lease(item: Item, annotator: User) -> None:
    """Give the item back to the pool, e.g. once the annotator has answered it."""
    Lease.objects.filter(item=item, annotator=annotator).delete()


def _pool(project: Project, annotator: User, now: datetime) -> QuerySet[Item]:
    # The queue entry comes along (or its absence): the served item shows its suggestion.
    pool = (
        Item.objects.filter(project=project, answer_count__lt=project.overlap, excluded=False)
        .filter(~_answered_by(annotator))
        .select_related("queue_entry")
    )
    if project.overlap == 1:
        leased = Lease.objects.filter(item=OuterRef("pk"), expires_at__gt=now)
        pool = pool.filter(~Exists(leased))
    else:
        pool = pool.annotate(active_leases=_active_leases(now)).filter(
            answer_count__lt=project.overlap - F("active_leases")
        )
    return pool


def _answered_by(annotator: User) -> Exists:
    return Exists(Annotation.objects.filter(item=OuterRef("pk"), annotator=annotator))


def _active_leases(now: datetime, *, besides: User | None = None) -> Coalesce:
    """How many unexpired leases the outer item has (those of `besides` left out)."""
    active = Lease.objects.filter(item=OuterRef("pk"), expires_at__gt=now)
    if besides is not None:
        active = active.exclude(annotator=besides)
    counted = active.order_by().values("item").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


def _ranked(project: Project, annotator: User, now: datetime) -> QuerySet[Item]:
    # Filtering on the entry's project lets SQLite walk the queue_order index.
    return (
        _pool(project, annotator, now)
        .filter(queue_entry__project=project)
        .order_by("queue_entry__rank")
    )


def _unranked(project: Project, annotator: User, now: datetime) -> QuerySet[Item]:
    # Ordering by answer_count first matches the item_pool index, so the database stops at the
    # first free item instead of sorting the pool; with overlap > 1 it also spreads answers.
    return (
        _pool(project, annotator, now)
        .filter(queue_entry__isnull=True)
        .order_by("answer_count", "random_key")
    )


def _uniform(project: Project, annotator: User, now: datetime) -> QuerySet[Item]:
    # The whole pool, ranked or not, in the fixed random order (the item_pool index again).
    return _pool(project, annotator, now).order_by("answer_count", "random_key")


def _is_available(item: Item, project: Project, annotator: User, now: datetime) -> bool:
    # One statement for both checks: one round trip while the row lock is held. Written out
    # as SQL: building it through the ORM cost more than running it, on every request.
    with connection.cursor() as cursor:
        cursor.execute(_AVAILABILITY_SQL, _availability_params(item, annotator, now))
        answered, others = cursor.fetchone()
    return not answered and item.answer_count + others < project.overlap


_AVAILABILITY_SQL = f"""
SELECT
    EXISTS (
        SELECT 1 FROM {Annotation._meta.db_table} WHERE item_id = %s AND annotator_id = %s
    ),
    (
        SELECT COUNT(*) FROM {Lease._meta.db_table}
        WHERE item_id = %s AND expires_at > %s AND annotator_id <> %s
    )
"""


def _availability_params(item: Item, annotator: User, now: datetime) -> list[Any]:
    expires_after = connection.ops.adapt_datetimefield_value(now)
    return [item.pk, annotator.pk, item.pk, expires_after, annotator.pk]


@dataclass(frozen=True)
class Suggestion:
    """The model's guess for an item, and whether annotators are shown it."""

    labels: list[Label]
    confidence: float
    # False: the model is not sure enough to be usually right (Project.suggest_above).
    shown: bool


def suggestion_to_show(project: Project, item: Item) -> Suggestion | None:
    """The suggestion for the label page and the API: None when suggestions are off or the
    queue has none; not `shown` below the project's threshold (its own, or the one the newest
    version measured for items picked the way this one was; without either, multi-label
    projects show every suggestion)."""
    if not project.show_suggestions:
        return None
    guess = suggestion_for(item, project)
    if guess is None:
        return None
    labels, confidence = guess
    return Suggestion(labels, confidence, is_shown(project, item, confidence))


def is_shown(project: Project, item: Item, confidence: float | None) -> bool:
    """Whether the page shows a suggestion this confident for this item."""
    if not project.show_suggestions or confidence is None:
        return False
    return confidence >= suggestion_threshold(project, control=item.is_random_control)


def suggestion_threshold(project: Project, *, control: bool) -> float:
    """The confidence from which annotators see suggestions (above 1: never).

    The newest head version measures one threshold for the items the model picked and one for
    the random controls, on the suggestions annotators answered (`suggestion_thresholds`):
    the model is much less often right on the items it picked for being hard than on random
    ones at the same confidence.
    """
    if project.suggest_above is not None:
        return project.suggest_above / 100
    if project.multi_label:
        return 0.0
    measured = (
        project.model_versions.filter(kind="head")
        .values_list("metrics__suggestions", flat=True)
        .first()
    )
    kind = (measured or {}).get("controls" if control else "picked") or {}
    threshold = kind.get("threshold")
    return float(threshold) if threshold is not None else 2.0


def suggestion_for(item: Item, project: Project | None = None) -> tuple[list[Label], float] | None:
    """The model's guess for an item and its confidence: from the current queue, or else the
    newest version's prediction of every item."""
    guess = model_guess(project or item.project, item)
    if guess is None:
        return None
    label_ids, confidence = guess
    return list(Label.objects.filter(pk__in=label_ids)), confidence


def model_guess(project: Project, item: Item) -> tuple[list[int], float] | None:
    """The suggested label ids and confidence for an item, if a model has a guess for it.

    The ranked queue's entry comes first (it is read with the item); an item outside it (a
    random control, an item past the ranked top) takes the newest version's stored
    prediction, so annotators get a suggestion there too. Read once per item object: serving
    an item and then showing its suggestion ask for the same guess.
    """
    if "_model_guess" not in item.__dict__:
        item.__dict__["_model_guess"] = _read_guess(project, item)
    guess: tuple[list[int], float] | None = item.__dict__["_model_guess"]
    return guess


def _read_guess(project: Project, item: Item) -> tuple[list[int], float] | None:
    entry: QueueEntry | None
    if Item.queue_entry.is_cached(item):  # the queue read it (or its absence) with the item
        entry = getattr(item, "queue_entry", None)
    else:
        entry = QueueEntry.objects.filter(item=item).first()
    if entry is not None and entry.confidence is not None and entry.suggested_labels:
        return list(entry.suggested_labels), entry.confidence
    predictions = latest_predictions(project)
    rows = predictions.rows_of([item.pk]) if predictions is not None else {}
    if predictions is None or item.pk not in rows:
        return None
    predicted = predictions.prediction(rows[item.pk], uncertainty=0.0)
    return (predicted.label_ids, predicted.confidence) if predicted.label_ids else None
