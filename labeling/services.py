"""Answering items: submit, change, undo, and the annotator's progress."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from labeling.models import Adjudication, Annotation, Item, Label, Lease, Project, QueueEntry
from labeling.queue import is_shown, release_lease
from labeling.review_requests import end_review_requests
from modeling.scheduling import retrain_if_due

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_SECONDS_SPENT = 24 * 3600


class ClientIdConflict(ValidationError):
    """A retried request whose client id belongs to a different answer."""


class NotServed(ValidationError):
    """A first answer to an item the queue did not serve to this annotator."""


@dataclass(frozen=True)
class Progress:
    mine_today: int
    project_done: int
    project_total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.project_done / self.project_total if self.project_total else 0.0


def resolve_labels(project: Project, names: Sequence[str]) -> list[Label]:
    """Map label names (or ids) to the project's labels, refusing unknown ones."""
    by_name = {label.name: label for label in project.labels.all()}
    by_id = {str(label.pk): label for label in by_name.values()}
    chosen: list[Label] = []
    for name in names:
        label = by_name.get(name) or by_id.get(str(name))
        if label is None:
            known = ", ".join(by_name)
            raise ValidationError(f"Unknown label {name!r}; this project's labels are: {known}.")
        if label not in chosen:
            chosen.append(label)
    return chosen


def submit_answer(
    project: Project,
    annotator: User,
    item: Item,
    labels: Sequence[Label],
    *,
    skipped: bool = False,
    seconds_spent: float = 0.0,
    client_id: uuid.UUID | None = None,
) -> tuple[Annotation, bool]:
    """Store the annotator's answer to the item; returns (annotation, created).

    A repeated submit with the same client id returns the stored answer unchanged, so a
    retried request is stored once. Answering an item already answered changes that answer.
    A first answer needs the annotator's lease on the item (the queue served it, or undo
    handed it back): labels stay independent, and overlap holds. A lease that ran out still
    counts while the item needs answers; once others have answered it in full, a late answer
    is refused (NotServed), so no item gets more answers than the overlap asks.
    """
    if item.project_id != project.pk:
        raise ValidationError("This item belongs to another project.")
    if any(label.project_id != project.pk for label in labels):
        raise ValidationError("A label of another project was given.")
    if skipped:
        labels = []
    elif not project.multi_label and len(labels) != 1:
        raise ValidationError("Choose exactly one label, or skip the item.")
    seconds = min(max(float(seconds_spent), 0.0), MAX_SECONDS_SPENT)
    client_id = client_id or uuid.uuid4()

    existing = Annotation.objects.filter(client_id=client_id).first()
    if existing is not None:
        return _same_request(existing, annotator, item, labels, skipped), False
    try:
        with transaction.atomic():
            annotation, created = _write_answer(
                project, item, annotator, labels, skipped, seconds, client_id
            )
            release_lease(item, annotator)
            transaction.on_commit(lambda: retrain_if_due(project))
    except (IntegrityError, NotServed):
        # A concurrent copy of the same request may have won the race (and used the lease up);
        # then it holds the answer.
        existing = Annotation.objects.filter(client_id=client_id).first()
        if existing is None:
            raise
        return _same_request(existing, annotator, item, labels, skipped), False
    return annotation, created


def _same_request(
    existing: Annotation, annotator: User, item: Item, labels: Sequence[Label], skipped: bool
) -> Annotation:
    same = (
        existing.annotator_id == annotator.pk
        and existing.item_id == item.pk
        and existing.skipped == skipped
        and {label.pk for label in existing.labels.all()} == {label.pk for label in labels}
    )
    if not same:
        raise ClientIdConflict("This client id was already used for a different answer.")
    return existing


def _write_answer(
    project: Project,
    item: Item,
    annotator: User,
    labels: Sequence[Label],
    skipped: bool,
    seconds: float,
    client_id: uuid.UUID,
) -> tuple[Annotation, bool]:
    annotation = (
        Annotation.objects.select_for_update().filter(item=item, annotator=annotator).first()
    )
    created = annotation is None
    if annotation is None:
        lease = _check_served(item, annotator)
        confidence = lease.suggestion_confidence if lease.suggested_labels else None
        annotation = Annotation.objects.create(
            item=item,
            annotator=annotator,
            skipped=skipped,
            seconds_spent=seconds,
            client_id=client_id,
            suggested_labels=lease.suggested_labels if confidence is not None else [],
            suggestion_confidence=confidence,
            suggestion_shown=is_shown(project, item, confidence),
        )
        delta = 0 if skipped else 1
    else:
        delta = int(annotation.skipped) - int(skipped)
        annotation.skipped = skipped
        annotation.seconds_spent += seconds
        annotation.client_id = client_id
        annotation.save()
    if created:
        annotation.labels.add(*labels)  # nothing to compare with: no read of the old labels
    else:
        annotation.labels.set(labels)
    if delta:
        Item.objects.filter(pk=item.pk).update(answer_count=F("answer_count") + delta)
    if delta > 0:
        # A fully answered item leaves the ranked queue at once: serving would otherwise step
        # over every answered entry at the head of the queue until the next retrain rewrites it.
        QueueEntry.objects.filter(
            item=item, item__answer_count__gte=F("item__project__overlap")
        ).delete()
    return annotation, created


def _check_served(item: Item, annotator: User) -> Lease:
    """The annotator's lease on the item, or NotServed."""
    lease = Lease.objects.filter(item=item, annotator=annotator).first()
    if lease is None:
        raise NotServed(
            "This item was not served to you: ask for the next item, or reopen one of your own "
            "answers to change it."
        )
    if lease.is_active():
        return lease
    needed = Item.objects.filter(pk=item.pk, answer_count__lt=F("project__overlap")).exists()
    if not needed:
        raise NotServed(
            "Your time on this item ran out and others have answered it meanwhile; your answer "
            "was not stored."
        )
    return lease


def undo_last_answer(project: Project, annotator: User) -> Item | None:
    """Delete the annotator's latest answer in the project and hand that item back to them."""
    with transaction.atomic():
        last = (
            Annotation.objects.select_for_update()
            .filter(item__project=project, annotator=annotator)
            .order_by("-created_at", "-pk")
            .first()
        )
        if last is None:
            return None
        item = last.item
        if not last.skipped:
            Item.objects.filter(pk=item.pk).update(answer_count=F("answer_count") - 1)
        last.delete()
        # Put any item currently served back to the pool, then serve the undone one.
        Lease.objects.filter(project=project, annotator=annotator).delete()
        Lease.objects.create(
            item=item,
            annotator=annotator,
            project=project,
            expires_at=timezone.now() + project.lease_duration(),
            # The answer given again records what was suggested the first time.
            suggested_labels=last.suggested_labels,
            suggestion_confidence=last.suggestion_confidence,
        )
    item.refresh_from_db()
    return item


def recent_answers(project: Project, annotator: User, limit: int = 10) -> QuerySet[Annotation]:
    """The annotator's latest answers in the project, newest first."""
    return (
        Annotation.objects.filter(item__project=project, annotator=annotator)
        .select_related("item")
        .prefetch_related("labels")
        .order_by("-created_at", "-pk")[:limit]
    )


def progress_for(project: Project, annotator: User) -> Progress:
    """Counts shown beside the item: my answers today (not skips) and how far the project is."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine_today = Annotation.objects.filter(
        item__project=project, annotator=annotator, created_at__gte=start_of_day, skipped=False
    ).count()
    items = Item.objects.filter(project=project)
    return Progress(
        mine_today=mine_today,
        project_done=items.filter(answer_count__gte=project.overlap).count(),
        project_total=items.count(),
    )


def adjudicate(
    project: Project, reviewer: User, item: Item, labels: Sequence[Label], note: str = ""
) -> Adjudication:
    """Record a reviewer's final labels for an item, replacing any earlier ruling on it; the
    ruling ends the item's review request."""
    if item.project_id != project.pk:
        raise ValidationError("This item belongs to another project.")
    if any(label.project_id != project.pk for label in labels):
        raise ValidationError("A label of another project was given.")
    if not project.multi_label and len(labels) != 1:
        raise ValidationError("Choose exactly one label.")
    if not labels:
        raise ValidationError("Choose at least one label.")
    with transaction.atomic():
        ruling, _ = Adjudication.objects.update_or_create(
            item=item, defaults={"resolved_by": reviewer, "note": note.strip()}
        )
        ruling.labels.set(labels)
        end_review_requests([item.pk])
    return ruling
