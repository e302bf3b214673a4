"""The labels a model learns from and is evaluated on, read from the database as arrays."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from django.db.models import QuerySet

from labeling.consensus import final_label_ids_by_item
from labeling.models import Adjudication, Annotation, Item, Label, Project


@dataclass(frozen=True)
class TrainingSet:
    item_ids: list[int]
    targets: npt.NDArray[np.int64]  # class indices, or an (n, n_classes) 0/1 matrix
    class_counts: dict[str, int]

    def counts_in_order(self, labels: list[Label]) -> npt.NDArray[np.float64]:
        """Labeled items per class in the project's label order, for class-balancing strategies."""
        return np.array([self.class_counts.get(label.name, 0) for label in labels], np.float64)

    def can_train(self, multi_label: bool) -> bool:
        """Two labeled items, and two classes seen (one, multi-label)."""
        seen_classes = sum(1 for count in self.class_counts.values() if count)
        return len(self.item_ids) >= 2 and seen_classes >= (1 if multi_label else 2)


def training_set(project: Project, labels: list[Label]) -> TrainingSet:
    """Each answered item with its final label(s) (labeling/consensus.py).

    Random-control items are the evaluation set: they are left out unless the project trains
    on them too.
    """
    answers = Annotation.objects.filter(item__project=project, item__excluded=False, skipped=False)
    rulings = Adjudication.objects.filter(item__project=project, item__excluded=False)
    if not project.train_on_control:
        answers = answers.exclude(item__is_random_control=True)
        rulings = rulings.exclude(item__is_random_control=True)
    return _as_arrays(project, labels, answers, rulings)


def evaluation_set(project: Project, labels: list[Label]) -> TrainingSet:
    """The answered random-control items with their final label(s)."""
    controls = {"item__project": project, "item__is_random_control": True, "item__excluded": False}
    answers = Annotation.objects.filter(**controls, skipped=False)
    rulings = Adjudication.objects.filter(**controls)
    return _as_arrays(project, labels, answers, rulings)


def _as_arrays(
    project: Project,
    labels: list[Label],
    annotations: QuerySet[Annotation],
    rulings: QuerySet[Adjudication],
) -> TrainingSet:
    index = {label.pk: i for i, label in enumerate(labels)}
    final = final_label_ids_by_item(project, annotations, rulings)
    item_ids = sorted(final)
    counts: Counter[int] = Counter()
    targets: npt.NDArray[np.int64]
    if project.multi_label:
        targets = np.zeros((len(item_ids), len(labels)), dtype=np.int64)
        for row, item_id in enumerate(item_ids):
            for label_id in final[item_id]:
                targets[row, index[label_id]] = 1
                counts[index[label_id]] += 1
    else:
        targets = np.zeros(len(item_ids), dtype=np.int64)
        for row, item_id in enumerate(item_ids):
            targets[row] = index[final[item_id][0]]
            counts[int(targets[row])] += 1
    return TrainingSet(
        item_ids=item_ids,
        targets=targets,
        class_counts={label.name: counts[i] for i, label in enumerate(labels)},
    )


def rows_of(ids: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Rows of `ids` holding each of `wanted`, in the order of `wanted`."""
    sorter = np.argsort(ids, kind="stable")
    return sorter[np.searchsorted(ids, wanted, sorter=sorter)].astype(np.intp)


def pool_rows(project: Project, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Rows of `ids` whose items still want answers (fewer than the project's overlap)."""
    pool_ids = np.fromiter(
        Item.objects.filter(
            project=project, answer_count__lt=project.overlap, excluded=False
        ).values_list("id", flat=True),
        dtype=np.int64,
    )
    return np.flatnonzero(np.isin(ids, pool_ids))
