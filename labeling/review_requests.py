"""Items a lead sends to review: sending and withdrawing them (the items page), the reviewers'
list of them (the people page), and the ruling that ends a request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from labeling.consensus import Answer, answers_by_item, label_names
from labeling.models import Annotation, Item, Project, ReviewRequest
from labeling.validation import contains_nul

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# As long as a ruling's note may be.
MAX_NOTE_CHARS = 1000


@dataclass(frozen=True)
class RequestedReview:
    item_id: int
    text: str
    answers: list[Answer]
    requested_by: str
    note: str
    at: datetime


def send_to_review(project: Project, lead: User, items: QuerySet[Item], note: str = "") -> int:
    """Put the items on the reviewers' list with the lead's note; returns how many are new.

    An item already on the list keeps its request: who sent it, when, and its note.
    """
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS or contains_nul(note):
        raise ValidationError(f"Write a note of at most {MAX_NOTE_CHARS} characters.")
    new = list(
        items.filter(project=project, review_request__isnull=True).values_list("pk", flat=True)
    )
    # A request made meanwhile by another lead wins; this one is dropped, not an error.
    ReviewRequest.objects.bulk_create(
        [ReviewRequest(item_id=pk, requested_by=lead, note=note) for pk in new],
        ignore_conflicts=True,
    )
    return len(new)


def withdraw_from_review(project: Project, items: QuerySet[Item]) -> int:
    """Take the items off the reviewers' list; returns how many were on it."""
    withdrawn, _ = ReviewRequest.objects.filter(
        item__in=items.filter(project=project).values("pk")
    ).delete()
    return withdrawn


def end_review_requests(item_ids: Iterable[int]) -> None:
    """A ruling ends the item's request: every service that rules calls this in its
    transaction."""
    ReviewRequest.objects.filter(item_id__in=list(item_ids)).delete()


def requested_reviews(project: Project, limit: int = 50) -> list[RequestedReview]:
    """The items sent to review and not ruled on since, the longest waiting first, with every
    answer given to them."""
    requests = list(
        ReviewRequest.objects.filter(item__project=project)
        .select_related("item", "requested_by")
        .order_by("created_at", "pk")[:limit]
    )
    if not requests:
        return []
    answers = answers_by_item(
        Annotation.objects.filter(item_id__in=[request.item_id for request in requests]),
        label_names(project),
    )
    return [
        RequestedReview(
            item_id=request.item_id,
            text=request.item.text,
            answers=answers.get(request.item_id, []),
            requested_by=request.requested_by.username if request.requested_by else "",
            note=request.note,
            at=request.created_at,
        )
        for request in requests
    ]
