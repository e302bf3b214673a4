"""What an export asks for: its query parameters, checked, and the items they select."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from labeling.models import Adjudication, Annotation, Item, Project
from labeling.validation import contains_nul, parse_flag, parse_iso_time

FORMATS = ("jsonl", "csv", "parquet", "hf")
DEFAULT_SYNC_LIMIT = 200_000


class ExportRefused(ValueError):
    """A query parameter has a value the export cannot use; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ExportOptions:
    """Which items to export and whether each row lists every answer."""

    since: datetime | None = None
    annotator: str = ""
    label: str = ""
    min_agreement: float | None = None
    final_only: bool = False
    random_control: bool = False
    with_answers: bool = False

    def to_json(self) -> dict[str, Any]:
        """The options as stored in `ExportJob.filters`."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "annotator": self.annotator,
            "label": self.label,
            "min_agreement": self.min_agreement,
            "final_only": self.final_only,
            "random_control": self.random_control,
            "answers": self.with_answers,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportOptions:
        since = data.get("since")
        return cls(
            since=parse_iso_time(since) if since else None,
            annotator=data.get("annotator") or "",
            label=data.get("label") or "",
            min_agreement=data.get("min_agreement"),
            final_only=bool(data.get("final_only")),
            random_control=bool(data.get("random_control")),
            with_answers=bool(data.get("answers")),
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a built row passes the filters that depend on the final label."""
        if self.final_only and row["label"] is None:
            return False
        if self.label and self.label not in row["labels"]:
            return False
        return self.min_agreement is None or (
            row["agreement"] is not None and row["agreement"] >= self.min_agreement
        )


@dataclass(frozen=True)
class ExportRequest:
    """An export as asked for in a query string."""

    fmt: str
    options: ExportOptions
    background: bool


def read_export_request(project: Project, params: Mapping[str, str]) -> ExportRequest:
    """Parse and check the export's query parameters; ExportRefused names the bad one."""
    fmt = (params.get("format") or "jsonl").lower()
    if fmt not in FORMATS:
        raise ExportRefused(
            "format", f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}."
        )
    since = None
    if params.get("since"):
        try:
            since = parse_iso_time(params["since"])
        except ValidationError as exc:
            raise ExportRefused("since", exc.messages[0]) from exc
    for name, value in params.items():
        if contains_nul(value):
            raise ExportRefused(name, "Must not contain a NUL character.")
    annotator = params.get("annotator", "").strip()
    if annotator and not _takes_part(project, annotator):
        # One answer for a stranger and for a name nobody has: the filter tells nothing about
        # accounts outside the project.
        raise ExportRefused("annotator", f"No member of this project is called {annotator!r}.")
    label = params.get("label", "").strip()
    if label:
        names = list(project.labels.values_list("name", flat=True))
        if label not in names:
            raise ExportRefused(
                "label", f"Unknown label {label!r}; the project's labels: {', '.join(names)}."
            )
    return ExportRequest(
        fmt=fmt,
        options=ExportOptions(
            since=since,
            annotator=annotator,
            label=label,
            min_agreement=_share(params.get("min_agreement", "")),
            final_only=_flag(params, "final_only"),
            random_control=_flag(params, "random_control"),
            with_answers=_flag(params, "answers"),
        ),
        background=_flag(params, "async"),
    )


def _flag(params: Mapping[str, str], name: str) -> bool:
    try:
        return parse_flag(params.get(name), name)
    except ValidationError as exc:
        raise ExportRefused(name, exc.messages[0]) from exc


def _share(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ExportRefused("min_agreement", "Give a share from 0 to 1, e.g. 0.8.")
    return value


def _takes_part(project: Project, username: str) -> bool:
    """A member of the project, or someone who answered in it (a removed member included)."""
    users = get_user_model().objects.filter(username=username)
    return (
        users.filter(memberships__project=project).exists()
        or users.filter(annotations__item__project=project).exists()
    )


def candidate_items(project: Project, options: ExportOptions) -> QuerySet[Item]:
    """The project's items that pass the filters the database can apply by itself."""
    items = Item.objects.filter(project=project)
    if options.random_control:
        items = items.filter(is_random_control=True)
    answers = Annotation.objects.filter(item=OuterRef("pk"))
    if options.since is not None:
        items = items.filter(Exists(answers.filter(updated_at__gte=options.since)))
    if options.annotator:
        items = items.filter(Exists(answers.filter(annotator__username=options.annotator)))
    if options.final_only or options.label or options.min_agreement is not None:
        # Only an item with a non-skipped answer or a ruling can have a final label.
        ruled = Adjudication.objects.filter(item=OuterRef("pk"))
        items = items.filter(Exists(answers.filter(skipped=False)) | Exists(ruled))
    return items


def runs_in_background(item_count: int) -> bool:
    """Whether an export of this many items is too large to stream in the request."""
    return item_count > getattr(settings, "SIFT_EXPORT_SYNC_LIMIT", DEFAULT_SYNC_LIMIT)
