"""Each retrain's prediction of every item, labeled ones included, kept per version."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labeling.models import Label
from modeling.core.predictions import top_predictions
from modeling.models import KEPT_PREDICTION_SETS, ModelVersion, PredictionSet
from modeling.services.training_data import TrainingSet, rows_of


def store_predictions(
    version: ModelVersion,
    labels: list[Label],
    ids: npt.NDArray[np.int64],
    probabilities: npt.NDArray[np.floating],
    training: TrainingSet,
    held_out: npt.NDArray[np.float64] | None,
) -> PredictionSet:
    """Keep the version's prediction of every embedded item (`probabilities`, a row per id) and
    the newest sets only.

    A training item gets its out-of-fold prediction when cross-validation made one (the head
    itself has seen its label, so its own guess would just repeat it).
    """
    top = top_predictions(probabilities)
    honest = np.zeros(len(ids), dtype=bool)
    if held_out is not None:
        trained = np.array(training.item_ids, dtype=np.int64)
        embedded = np.isin(trained, ids)
        rows = rows_of(ids, trained[embedded])
        replaced = top_predictions(held_out[embedded], k=top.classes.shape[1])
        top.classes[rows] = replaced.classes
        top.probabilities[rows] = replaced.probabilities
        honest[rows] = True
    stored = PredictionSet.pack(
        version, [label.pk for label in labels], version.project.multi_label, ids, top, honest
    )
    stored.save()
    older = PredictionSet.objects.filter(project_id=version.project_id).order_by(
        "-version__number"
    )[KEPT_PREDICTION_SETS:]
    PredictionSet.objects.filter(pk__in=list(older.values_list("pk", flat=True))).delete()
    return stored
