"""The items page's query: search, filters, sort and keyset pages over a project's items.

Built from the page's query string (`ItemQuery.from_params`); bad values are refused with a
message naming the parameter, never ignored. Bulk actions run over the same query, so "every
item that matches" means exactly what the page lists.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from labeling.consensus import final_label_ids_by_item, label_names
from labeling.exports.request import ExportOptions
from labeling.exports.rows import export_rows
from labeling.exports.writers import write_export
from labeling.models import (
    Adjudication,
    Annotation,
    Item,
    ItemDeletion,
    Label,
    Project,
    QueueEntry,
)
from labeling.people import likely_label_errors
from labeling.review_requests import end_review_requests
from labeling.validation import contains_nul, parse_flag, parse_whole_number
from modeling.interface import nearest_rows
from modeling.models import embedding_matrix, latest_predictions, prediction_history
from modeling.scheduling import phrase_vector

if TYPE_CHECKING:
    from django.contrib.auth.models import User

Vector = npt.NDArray[np.float32]
_NO_IDS = np.zeros(0, dtype=np.int64)

STATES = {
    "": "Any state",
    "unlabeled": "Unlabeled",
    "labeled": "Labeled (answered or ruled)",
    "skipped": "Skipped by someone",
    "disputed": "Disputed (answers disagree, no ruling)",
    "ruled": "Ruled by a lead or reviewer",
    "random_control": "Random control (evaluation set)",
    "excluded": "Excluded from labeling",
    "sent_to_review": "Sent to review (waiting for a ruling)",
}
SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "queue": "Next in the queue (most informative first)",
    "uncertain": "Model most unsure first",
    "least_confident": "Lowest model confidence first",
    "most_confident": "Highest model confidence first",
    "disagreement": "Most disagreement between answers first",
}
# Orders that follow the newest model's predictions rather than a column.
MODEL_SORTS = {"uncertain", "least_confident", "most_confident"}
# A search by meaning lists at most this many nearest items.
NEAREST_ITEMS = 500
PAGE_SIZE = 50
# Candidates of a final-label filter read at once, when most of them match.
CANDIDATE_CHUNK = 200
# The most items one query of a page in the model's order asks for by id.
MAX_CHUNK = 12_800
# Likely label errors the "likely label error" filter looks at (the newest version's list).
MAX_SUSPECTS = 1000
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class ItemQuery:
    """What the lead asked the items page for."""

    q: str = ""
    state: str = ""
    label: str = ""
    annotator: str = ""
    sort: str = "newest"
    after: int | None = None
    # The newest model's view: predicted label, confidence range (percent), likely errors.
    predicted: str = ""
    min_confidence: int | None = None
    max_confidence: int | None = None
    suspect: bool = False
    # Search by meaning: items closest to this item, or to this phrase.
    like: int | None = None
    meaning: str = ""
    # Items one import created (its ImportJob's id).
    batch: int | None = None

    @classmethod
    def from_params(cls, project: Project, params: Mapping[str, str]) -> ItemQuery:
        """Read and check the query string; ValidationError({param: message}) when bad."""
        q = (params.get("q") or "").strip()
        if len(q) > MAX_QUERY_CHARS or contains_nul(q):
            raise ValidationError({"q": f"Search for at most {MAX_QUERY_CHARS} characters."})
        state = params.get("state") or ""
        if state not in STATES:
            raise ValidationError({"state": f"Unknown state {state!r}."})
        sort = params.get("sort") or "newest"
        if sort not in SORTS:
            raise ValidationError({"sort": f"Unknown order {sort!r}."})
        label = params.get("label") or ""
        if label and not project.labels.filter(name=label).exists():
            raise ValidationError({"label": f"No label {label!r} in this project."})
        after_raw = params.get("after") or ""
        after = parse_whole_number(after_raw, "after", 0, 2**63 - 1) if after_raw else None
        annotator = (params.get("annotator") or "").strip()
        predicted = params.get("predicted") or ""
        if predicted and not project.labels.filter(name=predicted).exists():
            raise ValidationError({"predicted": f"No label {predicted!r} in this project."})
        low, high = (_percent(params, name) for name in ("min_confidence", "max_confidence"))
        if low is not None and high is not None and low > high:
            raise ValidationError({"min_confidence": "The lowest confidence is above the highest."})
        like_raw = params.get("like") or ""
        like = parse_whole_number(like_raw, "like", 1, 2**63 - 1) if like_raw else None
        if like is not None and not project.items.filter(pk=like).exists():
            raise ValidationError({"like": f"No item {like} in this project."})
        meaning = (params.get("meaning") or "").strip()
        if len(meaning) > MAX_QUERY_CHARS or contains_nul(meaning):
            raise ValidationError({"meaning": f"Search for at most {MAX_QUERY_CHARS} characters."})
        suspect = parse_flag(params.get("suspect"), "suspect")
        batch_raw = params.get("batch") or ""
        batch = parse_whole_number(batch_raw, "batch", 1, 2**63 - 1) if batch_raw else None
        if batch is not None and not project.import_jobs.filter(pk=batch).exists():
            raise ValidationError({"batch": f"No import {batch} in this project."})
        return cls(
            q,
            state,
            label,
            annotator,
            sort,
            after,
            predicted,
            low,
            high,
            suspect,
            like,
            meaning,
            batch,
        )

    def as_params(self, **changes: object) -> dict[str, str]:
        """The query as URL parameters (empty ones left out), with some changed."""
        changed = replace(self, **changes)  # type: ignore[arg-type]
        raw = {
            "q": changed.q,
            "state": changed.state,
            "label": changed.label,
            "annotator": changed.annotator,
            "sort": "" if changed.sort == "newest" else changed.sort,
            "after": "" if changed.after is None else str(changed.after),
            "predicted": changed.predicted,
            "min_confidence": _text(changed.min_confidence),
            "max_confidence": _text(changed.max_confidence),
            "suspect": "1" if changed.suspect else "",
            "like": _text(changed.like),
            "meaning": changed.meaning,
            "batch": _text(changed.batch),
        }
        return {name: value for name, value in raw.items() if value}

    def is_filtered(self) -> bool:
        return bool(
            self.q
            or self.state
            or self.label
            or self.annotator
            or self.batch is not None
            or self.asks_the_model()
        )

    def by_meaning(self) -> bool:
        return self.like is not None or bool(self.meaning)

    def asks_the_model(self) -> bool:
        """Whether the newest model's predictions or embeddings choose or order the items."""
        return bool(
            self.predicted
            or self.min_confidence is not None
            or self.max_confidence is not None
            or self.suspect
            or self.by_meaning()
            or self.sort in MODEL_SORTS
        )


def _percent(params: Mapping[str, str], name: str) -> int | None:
    raw = (params.get(name) or "").strip().rstrip("%")
    return parse_whole_number(raw, name, 0, 100) if raw else None


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def matching_items(
    project: Project, query: ItemQuery, near: Vector | None = None
) -> QuerySet[Item]:
    """Every item of the project the search and filters select, in no particular order."""
    items = _candidates(project, query)
    if query.asks_the_model():
        items = items.filter(pk__in=model_order(project, query, near).item_ids.tolist())
    if query.label:
        items = items.filter(pk__in=_items_whose_final_label_is(project, query.label, items))
    return items


def _candidates(project: Project, query: ItemQuery) -> QuerySet[Item]:
    """`matching_items` in SQL alone: a final-label filter is only narrowed to items with an
    answer or a ruling that gives the label (the final label is always one of those)."""
    items = Item.objects.filter(project=project)
    if query.q:
        items = items.filter(Q(text__icontains=query.q) | Q(external_id=query.q))
    answers = Annotation.objects.filter(item=OuterRef("pk"))
    ruled = Adjudication.objects.filter(item=OuterRef("pk"))
    if query.state == "unlabeled":
        items = items.filter(answer_count=0).filter(~Exists(ruled))
    elif query.state == "labeled":
        items = items.filter(Q(answer_count__gt=0) | Exists(ruled))
    elif query.state == "skipped":
        items = items.filter(Exists(answers.filter(skipped=True)))
    elif query.state == "ruled":
        items = items.filter(Exists(ruled))
    elif query.state == "random_control":
        items = items.filter(is_random_control=True)
    elif query.state == "excluded":
        items = items.filter(excluded=True)
    elif query.state == "sent_to_review":
        items = items.filter(review_request__isnull=False)
    elif query.state == "disputed":
        given = Count("annotations__labels", filter=Q(annotations__skipped=False), distinct=True)
        disputed = (
            Item.objects.filter(project=project, answer_count__gte=2)
            .annotate(given=given)
            .filter(given__gte=2)
            .values("pk")
        )
        items = items.filter(pk__in=disputed).filter(~Exists(ruled))
    if query.annotator:
        items = items.filter(Exists(answers.filter(annotator__username=query.annotator)))
    if query.batch is not None:
        items = items.filter(import_job_id=query.batch)
    if query.label:
        with_label = answers.filter(skipped=False, labels__name=query.label)
        items = items.filter(Exists(with_label) | Exists(ruled.filter(labels__name=query.label)))
    return items


@dataclass(frozen=True)
class Page:
    """One page of the items page's list."""

    items: list[Item]
    # The `after` of the next page; None on the last one.
    cursor: int | None
    # Cosine similarity of each item to what a search by meaning started from.
    closeness: dict[int, float] = field(default_factory=dict)
    # Why a list that asks the model is empty for now (no model, a phrase being embedded).
    waiting: str = ""


def page_of(project: Project, query: ItemQuery, near: Vector | None = None) -> Page:
    """One page of matching items in the asked order, and the cursor of the next page.

    `near` is the embedding of the phrase of a search by meaning (None: not there yet).
    """
    items = _candidates(project, query).select_related("adjudication", "review_request")
    if query.asks_the_model():
        order = model_order(project, query, near)
        page, cursor = _page_in_model_order(project, query, items, order)
        return Page(page, cursor, order.closeness, order.waiting)
    if query.sort == "disagreement":
        # Items with two answers or more, the most labels given first; the cursor is an offset.
        given = Count("annotations__labels", filter=Q(annotations__skipped=False), distinct=True)
        ordered = (
            items.filter(answer_count__gte=2)
            .annotate(given=given)
            .order_by("-given", "-answer_count", "-pk")
        )
        start = query.after or 0
        page = _first_kept(project, query, ordered[start:])
        more = len(page) > PAGE_SIZE
        return Page(page[:PAGE_SIZE], start + PAGE_SIZE if more else None)
    if query.sort == "queue":
        # Ranked items only, by rank: what annotators get next. The cursor is a rank.
        items = items.filter(queue_entry__isnull=False).select_related("queue_entry")
        if query.after is not None:
            items = items.filter(queue_entry__rank__gt=query.after)
        page = _first_kept(project, query, items.order_by("queue_entry__rank"))
        more = len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
        return Page(page, page[-1].queue_entry.rank if more and page else None)
    descending = query.sort == "newest"
    if query.after is not None:
        items = items.filter(pk__lt=query.after) if descending else items.filter(pk__gt=query.after)
    page = _first_kept(project, query, items.order_by("-pk" if descending else "pk"))
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return Page(page, page[-1].pk if more and page else None)


def _first_kept(project: Project, query: ItemQuery, ordered: QuerySet[Item]) -> list[Item]:
    """The first PAGE_SIZE + 1 candidates in order that really match: with a final-label
    filter, candidates are read a chunk at a time and kept when their final label has it."""
    if not query.label:
        return list(ordered[: PAGE_SIZE + 1])
    kept: list[Item] = []
    start = 0
    while len(kept) <= PAGE_SIZE:
        chunk = list(ordered[start : start + CANDIDATE_CHUNK])
        if not chunk:
            break
        final = final_labels_of(project, chunk)
        kept += [item for item in chunk if query.label in final.get(item.pk, [])]
        start += CANDIDATE_CHUNK
    return kept[: PAGE_SIZE + 1]


def phrase_target(project: Project, query: ItemQuery) -> Vector | None:
    """The embedding of the query's phrase in the newest model's space, once a worker has
    made it (asked for here); None without a phrase or while it is being made."""
    predictions = latest_predictions(project) if query.meaning else None
    if predictions is None:
        return None
    return phrase_vector(project, predictions.encoder, query.meaning)


def predictions_of(project: Project, items: list[Item]) -> dict[int, tuple[list[str], float]]:
    """The newest model's predicted labels and confidence for these items."""
    predictions = latest_predictions(project)
    if predictions is None:
        return {}
    names = label_names(project)
    return {
        pk: ([names[label] for label in guess.label_ids if label in names], guess.confidence)
        for pk, guess in predictions.predictions_of([item.pk for item in items]).items()
    }


@dataclass(frozen=True)
class PastPrediction:
    version: int
    labels: list[str]
    confidence: float
    # From cross-validation: a model that never saw the item's label made it.
    held_out: bool


def prediction_history_of(project: Project, item: Item) -> list[PastPrediction]:
    """What each kept model version predicted for the item, newest first."""
    names = label_names(project)
    return [
        PastPrediction(
            guess.version,
            [names[pk] for pk in guess.label_ids if pk in names],
            guess.confidence,
            guess.held_out,
        )
        for guess in prediction_history(project, item.pk)
    ]


@dataclass(frozen=True)
class ModelOrder:
    """The items the newest model's view selects, in the page's order."""

    item_ids: npt.NDArray[np.int64]
    # Cosine similarity to what a search by meaning started from, for those items.
    closeness: dict[int, float]
    # Why there is nothing to show yet ("" when there is).
    waiting: str = ""


def model_order(project: Project, query: ItemQuery, near: Vector | None) -> ModelOrder:
    """The items the newest predictions and embeddings select, in the asked order."""
    predictions = latest_predictions(project)
    if predictions is None:
        return ModelOrder(_NO_IDS, {}, "There is no model yet: the first retrain makes one.")
    ids = predictions.item_ids
    closeness: dict[int, float] = {}
    if query.by_meaning():
        matrix = embedding_matrix(project.pk, predictions.encoder)
        start = matrix.row_of(query.like) if query.like is not None else None
        if query.like is not None and start is None:
            return ModelOrder(
                _NO_IDS, {}, "That item has no embedding yet: the next retrain adds it."
            )
        if query.like is None and near is None:
            return ModelOrder(_NO_IDS, {}, "A worker is embedding your phrase…")
        target = matrix.vectors[start] if start is not None else near
        assert target is not None
        rows, cosines = nearest_rows(matrix.vectors, target, NEAREST_ITEMS, exclude=start)
        ids = matrix.item_ids[rows]
        closeness = dict(zip(ids.tolist(), cosines.tolist(), strict=True))
    found, rows = predictions.find(ids)
    ids, rows = ids[found], rows[found]
    top = predictions.top
    keep = np.ones(len(ids), dtype=bool)
    if query.predicted:
        index = predictions.label_ids.index(project.labels.get(name=query.predicted).pk)
        if predictions.multi_label:
            chosen = (top.classes[rows] == index) & (top.probabilities[rows] >= 0.5)
            keep &= chosen.any(axis=1)
        else:
            keep &= top.classes[rows, 0] == index
    confidence = top.confidence[rows]
    if query.min_confidence is not None:
        keep &= confidence >= query.min_confidence / 100
    if query.max_confidence is not None:
        keep &= confidence <= query.max_confidence / 100
    if query.suspect:
        suspects = [error.item_id for error in likely_label_errors(project, MAX_SUSPECTS, 0.0)]
        keep &= np.isin(ids, np.array(suspects, dtype=np.int64))
    ids, rows = ids[keep], rows[keep]
    if not query.by_meaning():
        if query.sort == "uncertain":
            ids = ids[np.argsort(-top.uncertainty(predictions.multi_label)[rows], kind="stable")]
        elif query.sort == "least_confident":
            ids = ids[np.argsort(top.confidence[rows], kind="stable")]
        elif query.sort == "most_confident":
            ids = ids[np.argsort(-top.confidence[rows], kind="stable")]
        elif query.sort != "oldest":
            ids = ids[::-1]  # newest first; the queue's order needs no model, so newest too
    return ModelOrder(ids, closeness)


def _page_in_model_order(
    project: Project, query: ItemQuery, items: QuerySet[Item], order: ModelOrder
) -> tuple[list[Item], int | None]:
    """The next page of `order` among the items the SQL filters keep; the cursor is an
    offset into `order`. Chunks grow fourfold, so a selective search needs few queries."""
    start = query.after or 0
    kept: list[Item] = []
    size = CANDIDATE_CHUNK
    position = start
    ordered = order.item_ids.tolist()
    while len(kept) <= PAGE_SIZE and position < len(ordered):
        chunk = ordered[position : position + size]
        found = {item.pk: item for item in items.filter(pk__in=chunk)}
        if query.label and found:
            final = final_labels_of(project, list(found.values()))
            found = {pk: item for pk, item in found.items() if query.label in final.get(pk, [])}
        for offset, pk in enumerate(chunk):
            if pk in found:
                kept.append(found[pk])
                if len(kept) > PAGE_SIZE:
                    return kept[:PAGE_SIZE], position + offset
        position += len(chunk)
        size = min(size * 4, MAX_CHUNK)
    return kept, None


def final_labels_of(project: Project, items: list[Item]) -> dict[int, list[str]]:
    """The final labels of these items (labeling/consensus.py), for one page."""
    names = label_names(project)
    final = _final_label_ids(project, [item.pk for item in items])
    return {item_id: [names[pk] for pk in label_ids] for item_id, label_ids in final.items()}


def _items_whose_final_label_is(
    project: Project, name: str, candidates: QuerySet[Item]
) -> list[int]:
    label = project.labels.get(name=name)
    final = _final_label_ids(project, candidates.values_list("pk", flat=True))
    return [item_id for item_id, label_ids in final.items() if label.pk in label_ids]


def _final_label_ids(project: Project, items: Iterable[int]) -> dict[int, list[int]]:
    """Final label ids of these items (ids, or a query of them), rulings on unanswered ones too."""
    return final_label_ids_by_item(
        project,
        Annotation.objects.filter(item__in=items),
        Adjudication.objects.filter(item__in=items),
    )


@dataclass(frozen=True)
class BulkResult:
    items: int
    label: str


def label_in_bulk(
    project: Project, lead: User, items: QuerySet[Item], label: Label, note: str
) -> BulkResult:
    """Give every item the label as the lead's ruling (their answers stay as they are).

    Training, evaluation and exports follow a ruling; each ruling records who made it, when,
    and the note, which says it was a bulk action. A ruling ends the item's review request.
    """
    if label.project_id != project.pk:
        raise ValidationError("A label of another project was given.")
    if project.multi_label:
        raise ValidationError("Bulk labeling is for single-label projects for now.")
    ids = list(items.filter(project=project).values_list("pk", flat=True))
    with transaction.atomic():
        existing = set(
            Adjudication.objects.filter(item_id__in=ids).values_list("item_id", flat=True)
        )
        Adjudication.objects.filter(item_id__in=existing).update(
            resolved_by=lead, note=note, updated_at=timezone.now()
        )
        Adjudication.objects.bulk_create(
            [
                Adjudication(item_id=pk, resolved_by=lead, note=note)
                for pk in ids
                if pk not in existing
            ]
        )
        rulings = list(Adjudication.objects.filter(item_id__in=ids).values_list("pk", flat=True))
        through = Adjudication.labels.through
        through.objects.filter(adjudication_id__in=rulings).delete()
        through.objects.bulk_create(
            [through(adjudication_id=pk, label_id=label.pk) for pk in rulings]
        )
        # A ruled item leaves the ranked queue: nobody needs to be asked about it first.
        QueueEntry.objects.filter(item_id__in=ids).delete()
        end_review_requests(ids)
    return BulkResult(len(ids), label.name)


def exclude_in_bulk(project: Project, items: QuerySet[Item], excluded: bool) -> int:
    """Take the items out of labeling (or back in); returns how many changed.

    An excluded item keeps its answers and rulings and stays in exports, but it is never
    served, ranked or trained on; its ranked entries leave the queue at once.
    """
    ids = list(items.filter(project=project, excluded=not excluded).values_list("pk", flat=True))
    with transaction.atomic():
        Item.objects.filter(pk__in=ids).update(excluded=excluded)
        if excluded:
            QueueEntry.objects.filter(item_id__in=ids).delete()
    return len(ids)


def delete_in_bulk(project: Project, lead: User, items: QuerySet[Item], note: str) -> ItemDeletion:
    """Delete the items with their answers and rulings, keeping a file of them first.

    The file is the export's JSONL with every answer, under SIFT_MEDIA_ROOT/deleted: a lead
    downloads it from the items page, and it imports back (texts, ids, final labels).
    """
    ids = list(items.filter(project=project).values_list("pk", flat=True))
    folder = Path(settings.MEDIA_ROOT) / "deleted"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"project-{project.pk}-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.jsonl"
    among = Item.objects.filter(pk__in=ids)
    with (folder / name).open("wb") as target:
        rows = export_rows(project, ExportOptions(with_answers=True), among=among)
        write_export(rows, "jsonl", target, True, project)
    with transaction.atomic():
        answers = Annotation.objects.filter(item_id__in=ids, skipped=False).count()
        record = ItemDeletion.objects.create(
            project=project,
            deleted_by=lead,
            items=len(ids),
            answers=answers,
            note=note,
            file=f"deleted/{name}",
        )
        Item.objects.filter(pk__in=ids).delete()
    return record
