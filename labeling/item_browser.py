"""The items page's query: search, filters, sort and keyset pages over a project's items.

Built from the page's query string (`ItemQuery.from_params`); bad values are refused with a
message naming the parameter, never ignored. Bulk actions run over the same query, so "every
item that matches" means exactly what the page lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from labeling.consensus import final_label_ids_by_item, label_names
from labeling.models import Adjudication, Annotation, Item, Label, Project, QueueEntry
from labeling.validation import contains_nul, parse_whole_number

if TYPE_CHECKING:
    from django.contrib.auth.models import User

STATES = {
    "": "Any state",
    "unlabeled": "Unlabeled",
    "labeled": "Labeled (answered or ruled)",
    "skipped": "Skipped by someone",
    "disputed": "Disputed (answers disagree, no ruling)",
    "ruled": "Ruled by a lead or reviewer",
    "random_control": "Random control (evaluation set)",
}
SORTS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "queue": "Next in the queue (most informative first)",
}
PAGE_SIZE = 50
# Candidates of a final-label filter read at once, when most of them match.
CANDIDATE_CHUNK = 200
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
        return cls(q, state, label, annotator, sort, after)

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
        }
        return {name: value for name, value in raw.items() if value}

    def is_filtered(self) -> bool:
        return bool(self.q or self.state or self.label or self.annotator)


def matching_items(project: Project, query: ItemQuery) -> QuerySet[Item]:
    """Every item of the project the search and filters select, in no particular order."""
    items = _candidates(project, query)
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
    if query.label:
        with_label = answers.filter(skipped=False, labels__name=query.label)
        items = items.filter(Exists(with_label) | Exists(ruled.filter(labels__name=query.label)))
    return items


def page_of(project: Project, query: ItemQuery) -> tuple[list[Item], int | None]:
    """One page of matching items in the asked order, and the cursor of the next page."""
    items = _candidates(project, query).select_related("adjudication")
    if query.sort == "queue":
        # Ranked items only, by rank: what annotators get next. The cursor is a rank.
        items = items.filter(queue_entry__isnull=False).select_related("queue_entry")
        if query.after is not None:
            items = items.filter(queue_entry__rank__gt=query.after)
        page = _first_kept(project, query, items.order_by("queue_entry__rank"))
        more = len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
        return page, (page[-1].queue_entry.rank if more and page else None)
    descending = query.sort == "newest"
    if query.after is not None:
        items = items.filter(pk__lt=query.after) if descending else items.filter(pk__gt=query.after)
    page = _first_kept(project, query, items.order_by("-pk" if descending else "pk"))
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return page, (page[-1].pk if more and page else None)


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
    and the note, which says it was a bulk action.
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
    return BulkResult(len(ids), label.name)
