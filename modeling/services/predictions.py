"""Each retrain's prediction of every item, labeled ones included, kept per version."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labeling.models import Label
from modeling.core.classifiers import Classifier
from modeling.core.predictions import TopPredictions, top_predictions
from modeling.models import KEPT_PREDICTION_SETS, ModelVersion, PredictionSet
from modeling.services.training_data import TrainingSet, rows_of

# Items predicted at once: bounds the probability matrix a 100,000-item pool needs.
PREDICT_BATCH = 20_000


def store_predictions(
    version: ModelVersion,
    labels: list[Label],
    classifier: Classifier,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    training: TrainingSet,
    held_out: npt.NDArray[np.float64] | None,
) -> PredictionSet:
    """Predict every embedded item with the version's head and keep the newest sets only.

    A training item gets its out-of-fold prediction when cross-validation made one (the head
    itself has seen its label, so its own guess would just repeat it).
    """
    top = _predict_all(classifier, vectors, len(labels))
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


def _predict_all(
    classifier: Classifier, vectors: npt.NDArray[np.float32], n_classes: int
) -> TopPredictions:
    parts = [
        top_predictions(classifier.predict_proba(vectors[start : start + PREDICT_BATCH]))
        for start in range(0, len(vectors), PREDICT_BATCH)
    ] or [top_predictions(np.zeros((0, n_classes)))]
    return TopPredictions(
        np.concatenate([part.classes for part in parts]),
        np.concatenate([part.probabilities for part in parts]),
    )
