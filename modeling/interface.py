"""What the labeling side (pages, API, reports) uses of the model side, besides the models
(modeling/models.py), the stored metrics' types (modeling/metrics.py) and the requests for
work (modeling/scheduling.py). import-linter holds labeling to these four (`make lint`).

All of it is pure and light: nothing here loads torch into the web process.
"""

from __future__ import annotations

from modeling.core.agreement import cohen_kappa, krippendorff_alpha
from modeling.core.energy import energy_wh
from modeling.core.labels_saved import LearningCurve
from modeling.core.neighbours import nearest_rows
from modeling.core.stopping import STABLE_RUN, StopSetPredictions, stopping_advice
from modeling.core.strategies import DEFAULT_STRATEGY, STRATEGIES

STRATEGY_NAMES = tuple(STRATEGIES)

__all__ = [
    "DEFAULT_STRATEGY",
    "STABLE_RUN",
    "STRATEGY_NAMES",
    "LearningCurve",
    "StopSetPredictions",
    "cohen_kappa",
    "energy_wh",
    "krippendorff_alpha",
    "nearest_rows",
    "stopping_advice",
]
