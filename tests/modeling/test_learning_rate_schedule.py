"""The learning-rate schedule: transformers' get_scheduler, shifted to Sift's warmup."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
import torch

from modeling.core.checkpoints import load, save_atomic
from modeling.core.finetuning import FineTuneConfig
from modeling.core.finetuning.optimization import learning_rate_schedule

PEAKS = (5e-5, 1e-3)  # the encoder's and the new head's peak rates, as in a real run


def hand_written_factor(
    schedule: Literal["linear", "cosine", "constant"], warmup_ratio: float, total_steps: int
) -> list[float]:
    """The factors of the schedule Sift wrote by hand before it used get_scheduler, verbatim."""
    warmup = round(warmup_ratio * total_steps)
    total = max(total_steps, 1)
    factors = []
    for step in range(total_steps):
        if step < warmup:
            factors.append((step + 1) / (warmup + 1))
            continue
        if schedule == "constant":
            factors.append(1.0)
            continue
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            factors.append(0.5 * (1.0 + math.cos(math.pi * progress)))
        else:
            factors.append(1.0 - progress)
    return factors


def _optimizer() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": peak} for peak in PEAKS]
    return torch.optim.AdamW(groups)


def _rates(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int
) -> list[list[float]]:
    """The rate of every group at each of ``steps`` optimizer steps, stepping as the loop does."""
    rates = []
    for _ in range(steps):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("schedule", "warmup_ratio", "total_steps"),
    [
        ("linear", 0.1, 30),
        ("linear", 0.0, 12),
        ("linear", 0.0, 1),
        ("linear", 0.5, 3),
        ("cosine", 0.25, 9),
        ("cosine", 0.1, 50),
        ("constant", 0.3, 10),
        ("constant", 0.0, 4),
    ],
)
def test_each_step_trains_at_the_rate_the_hand_written_schedule_gave(
    schedule: Literal["linear", "cosine", "constant"], warmup_ratio: float, total_steps: int
) -> None:
    config = FineTuneConfig(schedule=schedule, warmup_ratio=warmup_ratio)
    optimizer = _optimizer()
    scheduler = learning_rate_schedule(optimizer, config, total_steps)

    rates = _rates(optimizer, scheduler, total_steps)

    expected = hand_written_factor(schedule, warmup_ratio, total_steps)
    # Not ==: the old `1 - progress` and the library's `(total - step) / (total - warmup)`
    # can differ in the last bit of a float.
    for step, (got, factor) in enumerate(zip(rates, expected, strict=True)):
        assert got == pytest.approx([peak * factor for peak in PEAKS], rel=1e-12), step
    assert rates[0][0] > 0  # the first step already learns (get_scheduler alone gives it 0)


def test_a_resumed_schedule_continues_at_the_step_of_its_checkpoint(tmp_path: Path) -> None:
    config = replace(FineTuneConfig(), schedule="cosine", warmup_ratio=0.2)
    optimizer = _optimizer()
    uninterrupted = _rates(optimizer, learning_rate_schedule(optimizer, config, 20), 20)

    optimizer = _optimizer()
    scheduler = learning_rate_schedule(optimizer, config, 20)
    before_crash = _rates(optimizer, scheduler, 7)
    save_atomic(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp_path / "checkpoint.pt",
    )
    checkpoint = load(tmp_path / "checkpoint.pt")  # weights_only, as a resumed run reads it
    assert checkpoint is not None
    optimizer = _optimizer()
    scheduler = learning_rate_schedule(optimizer, config, 20)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    after_resume = _rates(optimizer, scheduler, 13)

    assert before_crash + after_resume == uninterrupted


def test_building_the_schedule_warns_of_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learning_rate_schedule(_optimizer(), FineTuneConfig(), 10)
