"""Small hooks into the training loop, each doing one thing: early stopping, progress, cancel."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class TrainingCancelled(RuntimeError):
    """A cancel callback stopped the run; its last checkpoint is kept."""


@dataclass
class TrainingState:
    """Where a run stands; callbacks read it and may set ``should_stop``."""

    step: int = 0
    """Optimizer steps done."""
    total_steps: int = 0
    epoch: int = 0
    next_batch: int = 0
    """Index of the next micro-batch within the epoch."""
    samples_seen: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    evaluations_without_improvement: int = 0
    resumed_from_step: int = 0
    should_stop: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class Callback:
    """Hooks into the loop; each callback does one thing. Override what you need."""

    def on_train_begin(self, state: TrainingState) -> None:
        pass

    def on_step_end(self, state: TrainingState) -> None:
        pass

    def on_evaluate(self, state: TrainingState, validation_loss: float) -> None:
        pass


class EarlyStopping(Callback):
    """Stop once the validation loss has not improved for ``patience`` evaluations, but never
    before ``min_steps`` optimizer steps: with few labels an epoch is one or two steps, and a
    loss that rises for two of them says nothing yet."""

    def __init__(self, patience: int, min_steps: int = 0) -> None:
        self.patience = patience
        self.min_steps = min_steps

    def on_evaluate(self, state: TrainingState, validation_loss: float) -> None:
        if (
            self.patience
            and state.step >= self.min_steps
            and state.evaluations_without_improvement >= self.patience
        ):
            state.should_stop = True


class ProgressCallback(Callback):
    """Report ``(steps done, total steps)`` at most every ``every_seconds``, and at the start."""

    def __init__(self, report: Callable[[int, int], None], every_seconds: float = 2.0) -> None:
        self.report = report
        self.every_seconds = every_seconds
        self._last = -math.inf

    def on_train_begin(self, state: TrainingState) -> None:
        self._last = time.monotonic()
        self.report(state.step, state.total_steps)

    def on_step_end(self, state: TrainingState) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_seconds or state.step == state.total_steps:
            self._last = now
            self.report(state.step, state.total_steps)


class CancelCallback(Callback):
    """Raise :class:`TrainingCancelled` when ``is_cancelled()`` says so (asked every few s)."""

    def __init__(self, is_cancelled: Callable[[], bool], every_seconds: float = 2.0) -> None:
        self.is_cancelled = is_cancelled
        self.every_seconds = every_seconds
        self._last = -math.inf

    def on_step_end(self, state: TrainingState) -> None:
        now = time.monotonic()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        if self.is_cancelled():
            raise TrainingCancelled(f"cancelled at step {state.step}")
