"""The training loop: set-up, smoke step, epochs of accumulated steps, evaluation that keeps
the best weights, and checkpoints to resume from."""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from modeling.core.checkpoints import CHECKPOINT_NAME, load, load_latest, save_atomic
from modeling.core.energy import EnergyMeter
from modeling.core.finetuning.callbacks import Callback, EarlyStopping, TrainingState
from modeling.core.finetuning.config import FineTuneConfig, Precision, autocast, resolve_precision
from modeling.core.finetuning.data import Collate, Examples, batch_loader, length_batches, to_device
from modeling.core.finetuning.model import StateDict, evaluate_loss, loss_function
from modeling.core.finetuning.optimization import (
    learning_rate_schedule,
    parameter_groups,
    set_trainable,
)

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


class SmokeStepFailed(RuntimeError):
    """The one-batch forward and backward pass before training failed: the set-up is broken."""


@dataclass(frozen=True)
class TrainingResult:
    """What a run did and cost."""

    steps: int
    epochs_run: int
    samples_seen: int
    train_seconds: float
    samples_per_second: float
    device: str
    precision: Precision
    effective_batch_size: int
    peak_memory_bytes: int
    energy_wh: float | None
    energy_source: str
    best_validation_loss: float | None
    best_step: int
    stopped_early: bool
    resumed_from_step: int
    padding_fraction: float
    history: list[dict[str, float]]


def train(
    model: nn.Module,
    train_examples: Examples,
    validation: Examples | None,
    config: FineTuneConfig,
    *,
    multi_label: bool = False,
    epochs: int | None = None,
    new_parameters: frozenset[str] = frozenset(),
    pad_id: int = 0,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: Path | None = None,
    stated_watts: float | None = None,
) -> TrainingResult:
    """Fine-tune ``model`` in place and return what the run did and cost.

    With ``validation``, the model is evaluated at the end of every epoch, the weights with
    the lowest validation loss are kept (and put back at the end), and
    :class:`EarlyStopping` stops once it stops improving. With ``checkpoint_dir``, the model,
    optimizer, scheduler, loss scaler, RNG state and position are written there atomically
    every ``config.checkpoint_every_steps`` steps; a call that finds a checkpoint resumes from
    it and ends with the same weights as a run that was never interrupted.

    Args:
        model: a ``...ForSequenceClassification`` model, already on its device.
        train_examples: what to learn from.
        validation: held-out examples, or None to run every epoch and keep the last weights.
        config: hyper-parameters.
        multi_label: targets are an indicator matrix; the loss is binary cross-entropy.
        epochs: overrides ``config.epochs`` (a warm start runs ``warm_start_epochs``).
        new_parameters: names of freshly initialized parameters (``head_learning_rate``).
        pad_id: the tokenizer's padding id.
        callbacks: progress, cancel...; :class:`EarlyStopping` is added from the config.
        checkpoint_dir: where to write and look for checkpoints; None: no checkpoints.
        stated_watts: power draw for the energy estimate when NVML cannot measure it.

    Raises:
        SmokeStepFailed: the first forward and backward pass failed or gave a non-finite loss.
        TrainingCancelled: a callback cancelled the run.
    """
    run = _Run(
        model,
        train_examples,
        validation,
        config,
        multi_label=multi_label,
        epochs=epochs or config.epochs,
        new_parameters=new_parameters,
        pad_id=pad_id,
        callbacks=[*callbacks, EarlyStopping(config.early_stopping_patience, config.min_steps)],
        checkpoint_dir=checkpoint_dir,
    )
    if config.smoke_step:
        run.smoke_step()
    if checkpoint_dir is not None:
        run.resume_from(checkpoint_dir)
    return run.run_epochs(stated_watts)


class _Run:
    """One call of :func:`train`: the model and everything that changes with it, step by step.

    Its state (optimizer, scheduler, loss scaler, position) is what a checkpoint holds.
    """

    def __init__(
        self,
        model: nn.Module,
        train_examples: Examples,
        validation: Examples | None,
        config: FineTuneConfig,
        *,
        multi_label: bool,
        epochs: int,
        new_parameters: frozenset[str],
        pad_id: int,
        callbacks: list[Callback],
        checkpoint_dir: Path | None,
    ) -> None:
        self.model = model
        self.validation = validation
        self.config = config
        self.multi_label = multi_label
        self.new_parameters = new_parameters
        self.pad_id = pad_id
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.device = next(model.parameters()).device
        self.precision = resolve_precision(config.mixed_precision, self.device)
        self.lengths = train_examples.lengths
        n_batches = math.ceil(len(train_examples) / config.batch_size)
        steps_per_epoch = math.ceil(n_batches / config.accumulation_steps)
        self.epochs = max(epochs, math.ceil(config.min_steps / steps_per_epoch))
        self.state = TrainingState(total_steps=steps_per_epoch * self.epochs)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(model, config, new_parameters), lr=config.learning_rate
        )
        self.scheduler = learning_rate_schedule(self.optimizer, config, self.state.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.collate = Collate(
            train_examples.token_ids, train_examples.targets, pad_id, multi_label
        )
        self.loss_fn = loss_function(multi_label)
        self.best_in_memory: dict[int, StateDict] = {}
        self.padded_positions = 0
        self.real_positions = 0

    def run_epochs(self, stated_watts: float | None) -> TrainingResult:
        """The epochs left, timed and metered; the best weights are put back at the end."""
        meter = EnergyMeter(str(self.device), stated_watts)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        meter.start()
        started = time.perf_counter()
        samples_at_start = self.state.samples_seen
        for callback in self.callbacks:
            callback.on_train_begin(self.state)
        if self.validation is not None and self.config.evaluate_at_start and not self.state.step:
            self._evaluate_and_keep_best(self.validation)
        while self.state.epoch < self.epochs and not self.state.should_stop:
            self.train_epoch()
        seconds = time.perf_counter() - started
        energy = meter.stop(seconds)
        if self.validation is not None and math.isfinite(self.state.best_loss):
            self.restore_best_weights()
        trained = self.state.samples_seen - samples_at_start
        return self.result(seconds, trained, energy, meter.source)

    def _logits(self, batch: Batch) -> torch.Tensor:
        with autocast(self.device, self.precision):
            logits: torch.Tensor = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        return logits.float()

    def smoke_step(self) -> None:
        """Forward and backward on the two longest examples (the worst case for memory and
        position embeddings); gradients are thrown away, so training is unchanged."""
        started = time.perf_counter()
        longest = [int(i) for i in np.argsort(-self.lengths, kind="stable")[:2]]
        try:
            batch = to_device(self.collate(longest), self.device)
            self.model.train()
            loss = self.loss_fn(self._logits(batch), batch["labels"])
            self.scaler.scale(loss).backward()
        except Exception as exc:
            raise SmokeStepFailed(f"the smoke step failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.model.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise SmokeStepFailed(f"the smoke step gave a non-finite loss ({loss.item()})")
        log.info("Smoke step passed in %.2f s", time.perf_counter() - started)

    def train_epoch(self) -> None:
        """The rest of the current epoch, from ``state.next_batch`` when resuming inside it."""
        config, state = self.config, self.state
        set_trainable(self.model, config, state.epoch, self.epochs, self.new_parameters)
        batches = length_batches(
            self.lengths,
            config.batch_size,
            np.random.default_rng([config.seed, state.epoch]),
            bucket=config.bucket_by_length,
        )
        self.model.train()
        accumulation = config.accumulation_steps
        groups = [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]
        groups = groups[state.next_batch // accumulation :]
        remaining = [batch for group in groups for batch in group]
        loader: Iterator[Batch] = (
            iter(batch_loader(self.collate, remaining, config, self.device))
            if remaining
            else iter(())
        )
        for group in groups:
            group_size = self._accumulate_gradients(group, loader)
            self._optimizer_step()
            self._count_step(group_size, len(group), len(batches))
            for callback in self.callbacks:
                callback.on_step_end(state)
            if self.checkpoint_dir is not None and state.step % config.checkpoint_every_steps == 0:
                self._save_checkpoint(self.checkpoint_dir)
            if state.should_stop:
                break

    def _accumulate_gradients(
        self, group: Sequence[npt.NDArray[np.intp]], loader: Iterator[Batch]
    ) -> int:
        """Backward passes over one step's micro-batches; returns the step's example count."""
        group_size = sum(len(batch) for batch in group)
        for batch_indices in group:
            batch = to_device(next(loader), self.device)
            self.padded_positions += batch["input_ids"].numel()
            self.real_positions += int(self.lengths[batch_indices].sum())
            # Summed, then divided by the whole step's examples: the gradient is exactly
            # that of one batch of `effective_batch_size`, however it was split.
            loss = self.loss_fn(self._logits(batch), batch["labels"]) / group_size
            self.scaler.scale(loss).backward()
        return group_size

    def _optimizer_step(self) -> None:
        if self.config.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _count_step(self, group_size: int, group_batches: int, epoch_batches: int) -> None:
        """Advance the position; at the end of an epoch, evaluate on the held-out examples."""
        state = self.state
        state.step += 1
        state.samples_seen += group_size
        state.next_batch += group_batches
        if state.next_batch >= epoch_batches:
            state.epoch += 1
            state.next_batch = 0
            if self.validation is not None:
                self._evaluate_and_keep_best(self.validation)
                self.model.train()

    def _evaluate_and_keep_best(self, validation: Examples) -> None:
        state = self.state
        validation_loss = evaluate_loss(
            self.model, validation, self.config, self.multi_label, self.pad_id
        )
        state.history.append({"step": state.step, "validation_loss": validation_loss})
        if validation_loss < state.best_loss:
            state.best_loss = validation_loss
            state.best_step = state.step
            state.evaluations_without_improvement = 0
            self._keep_best_weights()
        else:
            state.evaluations_without_improvement += 1
        for callback in self.callbacks:
            callback.on_evaluate(state, validation_loss)

    def _keep_best_weights(self) -> None:
        """Without a checkpoint folder the best weights stay in memory; with one, on disk beside
        the checkpoint that names them, so a resumed run finds them."""
        step = self.state.step
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.checkpoint_dir is None:
            self.best_in_memory.clear()
            self.best_in_memory[step] = weights
            return
        save_atomic(weights, self.checkpoint_dir / f"best-{step}.pt")
        for old in self.checkpoint_dir.glob("best-*.pt"):
            if old.name != f"best-{step}.pt":
                old.unlink(missing_ok=True)

    def restore_best_weights(self) -> None:
        """Put back the weights of the evaluation with the lowest validation loss."""
        step = self.state.best_step
        best = (
            self.best_in_memory.get(step)
            if self.checkpoint_dir is None
            else load(self.checkpoint_dir / f"best-{step}.pt")
        )
        if best is not None:
            self.model.load_state_dict(best)

    def _save_checkpoint(self, folder: Path) -> None:
        save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": _rng_state(),
                "state": asdict(self.state),
            },
            folder / CHECKPOINT_NAME,
        )

    def resume_from(self, folder: Path) -> None:
        """Continue from the checkpoint in ``folder``, if there is one."""
        checkpoint = load_latest(folder)
        if checkpoint is None:
            return
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        state = self.state
        for key, value in checkpoint["state"].items():
            if key != "total_steps":
                setattr(state, key, value)
        if math.isfinite(state.best_loss) and not (folder / f"best-{state.best_step}.pt").is_file():
            raise FileNotFoundError(f"checkpoint names best-{state.best_step}.pt, which is missing")
        state.resumed_from_step = state.step
        log.info("Resuming fine-tuning from step %s in %s", state.step, folder)

    def result(
        self, seconds: float, trained: int, energy: float | None, energy_source: str
    ) -> TrainingResult:
        """What the run did: ``trained`` examples in ``seconds`` of this call."""
        state = self.state
        return TrainingResult(
            steps=state.step,
            epochs_run=state.epoch,
            samples_seen=state.samples_seen,
            train_seconds=seconds,
            samples_per_second=trained / seconds if seconds > 0 else 0.0,
            device=str(self.device),
            precision=self.precision,
            effective_batch_size=self.config.batch_size * self.config.accumulation_steps,
            peak_memory_bytes=_peak_memory(self.device),
            energy_wh=energy,
            energy_source=energy_source,
            best_validation_loss=state.best_loss if math.isfinite(state.best_loss) else None,
            best_step=state.best_step,
            stopped_early=state.should_stop and state.epoch < self.epochs,
            resumed_from_step=state.resumed_from_step,
            padding_fraction=(
                1.0 - self.real_positions / self.padded_positions if self.padded_positions else 0.0
            ),
            history=state.history,
        )


def _peak_memory(device: torch.device) -> int:
    """Peak memory of the run on a GPU; on the CPU, the peak resident size of the process."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
