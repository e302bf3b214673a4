"""When the live loop fine-tunes by itself: one rule, used by the workers and by ``simulate``.

Plain Python (no torch), so the web side may import it too.
"""

from __future__ import annotations

import math

FINETUNE_GROWTH = 0.2
"""Default share of new labels since the last fine-tune that makes the next one."""
FINETUNE_MIN_LABELS = 50
"""Default number of new labels the next fine-tune waits for at least (the first one too)."""


def next_finetune_at(labels_last_time: int, growth: float, at_least: int) -> int | None:
    """The label count at which the next fine-tune is due: ``growth`` more than last time and at
    least ``at_least`` more (the first one at ``at_least``); None when ``growth`` is 0."""
    if growth <= 0:
        return None
    return max(labels_last_time + at_least, math.ceil(labels_last_time * (1 + growth) - 1e-9))


def finetune_due(labels: int, labels_last_time: int, growth: float, at_least: int) -> bool:
    """Whether ``labels`` reached :func:`next_finetune_at`."""
    due_at = next_finetune_at(labels_last_time, growth, at_least)
    return due_at is not None and labels >= due_at
