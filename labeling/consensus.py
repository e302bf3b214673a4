"""An item's final labels: the one rule that training, evaluation, exports and the people page
share. A reviewer's ruling wins; otherwise the answers' majority, a single-label tie going to
the label answered last."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.db.models import QuerySet

from labeling.models import Adjudication, Annotation, Project

L = TypeVar("L", str, int)  # a label, by name or by id


@dataclass(frozen=True)
class Answer:
    annotator: str
    labels: list[str]
    skipped: bool
    seconds_spent: float
    created_at: datetime


def final_labels(
    answers: Sequence[Answer],
    multi_label: bool,
    label_order: Sequence[str] = (),
    ruling: Sequence[str] = (),
) -> list[str]:
    """The item's final labels from its answers, given oldest change first (see `decide`).

    A non-empty ruling replaces the answers.
    """
    if ruling:
        return list(ruling)
    return decide(
        [answer.labels for answer in answers if not answer.skipped], multi_label, label_order
    )


def decide(
    answers: Sequence[Sequence[L]], multi_label: bool, label_order: Sequence[L] = ()
) -> list[L]:
    """The rule itself, over the labels of each non-skipped answer, oldest change first.

    Single-label: the label most answers chose, a tie going to the label answered last.
    Multi-label: every label chosen by at least half of the answers, in `label_order` (the
    project's label order).
    """
    if not multi_label:
        # A single-label answer has one label (a project cannot change its kind).
        given = [labels[0] for labels in answers if labels]
        if len(set(given)) <= 1:
            return given[:1]
        tally = Counter(given)
        top = max(tally.values())
        return [next(label for label in reversed(given) if tally[label] == top)]
    counts = Counter(label for labels in answers for label in dict.fromkeys(labels))
    chosen = {label for label, count in counts.items() if 2 * count >= len(answers)}
    return [label for label in _in_order(counts, label_order) if label in chosen]


def _in_order(labels: Iterable[L], label_order: Sequence[L]) -> list[L]:
    """`label_order`, then labels outside it (of no project label any more) by name."""
    ordered = list(label_order)
    known = set(ordered)
    ordered.extend(sorted((label for label in labels if label not in known), key=str))
    return ordered


def agreement(answers: Sequence[Answer], final: Sequence[str]) -> float | None:
    """The share of non-skipped answers that gave exactly the final labels; None under two."""
    given = [answer for answer in answers if not answer.skipped]
    if len(given) < 2:
        return None
    return sum(set(answer.labels) == set(final) for answer in given) / len(given)


def label_names(project: Project) -> dict[int, str]:
    """The project's label ids to names, in the project's label order."""
    return dict(project.labels.values_list("pk", "name"))


def answers_by_item(
    query: QuerySet[Annotation], label_names: Mapping[int, str]
) -> dict[int, list[Answer]]:
    """The answers of a query grouped by item, oldest change first, in one query.

    `label_names` maps label ids to names in the project's label order; each answer's labels
    come in that order.
    """
    rows = query.order_by("item_id", "updated_at", "pk").values_list(
        "pk", "item_id", "annotator__username", "skipped", "seconds_spent", "created_at", "labels"
    )
    position = {pk: index for index, pk in enumerate(label_names)}
    answers: dict[int, list[Answer]] = {}
    chosen: dict[int, tuple[Answer, list[int]]] = {}
    for pk, item_pk, username, skipped, seconds, created_at, label_pk in rows:
        if pk not in chosen:
            answer = Answer(username, [], skipped, seconds, created_at)
            chosen[pk] = (answer, [])
            answers.setdefault(item_pk, []).append(answer)
        if label_pk is not None:
            chosen[pk][1].append(label_pk)
    for answer, label_pks in chosen.values():
        answer.labels.extend(label_names[p] for p in sorted(label_pks, key=position.__getitem__))
    return answers


def rulings_by_item(
    rulings: QuerySet[Adjudication], label_names: Mapping[int, str]
) -> dict[int, list[str]]:
    """The rulings' labels by item, in label order (an empty list for a ruling of no label)."""
    chosen: dict[int, set[int]] = {}
    for item_id, label_id in rulings.values_list("item_id", "labels__id"):
        chosen.setdefault(item_id, set()).add(label_id)
    return {
        item_id: [name for pk, name in label_names.items() if pk in picked]
        for item_id, picked in chosen.items()
    }


def final_label_ids_by_item(
    project: Project,
    answers: QuerySet[Annotation],
    rulings: QuerySet[Adjudication] | None = None,
) -> dict[int, list[int]]:
    """Final label ids of every item the answers are about (see `final_labels`), read lean
    for retrains: two queries, no per-answer objects.

    With `rulings`, the items those rulings are about count too, answered or not (a lead
    labeling items in bulk on the items page rules on items nobody answered).
    """
    order = list(project.labels.values_list("pk", flat=True))
    rows = answers.filter(skipped=False).order_by("item_id", "updated_at", "pk")
    grouped: dict[int, dict[int, list[int]]] = {}
    for item_id, answer_id, label_id in rows.values_list("item_id", "pk", "labels"):
        labels = grouped.setdefault(item_id, {}).setdefault(answer_id, [])
        if label_id is not None:
            labels.append(label_id)
    # Every ruling of the project: cheaper than narrowing it to the answered items in SQL.
    scope = Adjudication.objects.filter(item__project=project) if rulings is None else rulings
    ruled: dict[int, list[int]] = {}
    for item_id, label_id in scope.values_list("item_id", "labels"):
        picked = ruled.setdefault(item_id, [])
        if label_id is not None:
            picked.append(label_id)
    final = {
        item_id: (
            _in_order_of(ruled[item_id], order)
            if ruled.get(item_id)
            else decide(list(by_answer.values()), project.multi_label, order)
        )
        for item_id, by_answer in grouped.items()
    }
    if rulings is not None:
        for item_id, picked in ruled.items():
            if picked and item_id not in final:
                final[item_id] = _in_order_of(picked, order)
    return final


def _in_order_of(labels: Sequence[int], order: Sequence[int]) -> list[int]:
    chosen = set(labels)
    return [label for label in order if label in chosen]
