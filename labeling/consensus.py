"""An item's final labels: the one rule that training, evaluation, exports and the people page
share. A reviewer's ruling wins; otherwise the answers' majority, a single-label tie going to
the label answered last."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from labeling.models import Adjudication, Annotation, Project


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
    """The item's final labels from its answers, given oldest change first.

    A non-empty ruling replaces the answers. Single-label: the label most non-skipped answers
    chose, a tie going to the label answered last. Multi-label: every label chosen by at least
    half of the non-skipped answers, in `label_order` (the project's label order).
    """
    if ruling:
        return list(ruling)
    given = [answer for answer in answers if not answer.skipped]
    counts = Counter(name for answer in given for name in dict.fromkeys(answer.labels))
    if not counts:
        return []
    if multi_label:
        chosen = {name for name, count in counts.items() if 2 * count >= len(given)}
        ordered = [*label_order, *sorted(set(counts) - set(label_order))]
        return [name for name in ordered if name in chosen]
    top = max(counts.values())
    tied = {name for name, count in counts.items() if count == top}
    latest = next(answer for answer in reversed(given) if tied.intersection(answer.labels))
    return [next(name for name in latest.labels if name in tied)]


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


def final_labels_by_item(project: Project, answers: QuerySet[Annotation]) -> dict[int, list[str]]:
    """Final labels of every item the answers are about, by item id (see `final_labels`)."""
    names = label_names(project)
    order = list(names.values())
    grouped = answers_by_item(answers, names)
    rulings = rulings_by_item(
        Adjudication.objects.filter(item__project=project, item_id__in=answers.values("item_id")),
        names,
    )
    return {
        item_id: final_labels(item_answers, project.multi_label, order, rulings.get(item_id, ()))
        for item_id, item_answers in grouped.items()
    }
