"""When the live loop fine-tunes by itself: one rule, used by the workers and by ``simulate``.

Plain Python (no torch), so the web side may import it too.
"""

from __future__ import annotations

FINETUNE_GROWTH = 0.2
"""Default share of new labels since the last fine-tune that makes the next one."""
FINETUNE_MIN_LABELS = 50
"""Default number of new labels the next fine-tune waits for at least (the first one too)."""


def finetune_due(labels: int, labels_last_time: int, growth: float, at_least: int) -> bool:
    """``growth`` more labels than last time (0 turns it off), and at least ``at_least`` more
    (the first fine-tune once there are that many)."""
    if growth <= 0:
        return False
    return labels - labels_last_time >= at_least and labels >= labels_last_time * (1 + growth)
