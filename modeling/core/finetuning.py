"""Fine-tuning the transformer itself on the labeled items, on a GPU when there is one.

:class:`FineTunedClassifier` puts ``AutoModelForSequenceClassification`` (single- or
multi-label) behind the same :class:`~modeling.core.classifiers.Classifier` interface as the fast
head, so the live queue and ``simulate`` use it the same way; its ``X`` is an array of texts.
:func:`train` is the loop, with everything that makes device time count: mixed precision,
gradient accumulation, warmup and decay, early stopping that keeps the best weights, optional
gradual unfreezing, cached tokenization, length-bucketed batches, a DataLoader that keeps the
device fed, a smoke step that fails a broken configuration in seconds, and atomic checkpoints
to resume from after a crash. Hyper-parameters live in :class:`FineTuneConfig`; progress,
early stopping and cancelling are small :class:`Callback` objects. Nothing here imports Django.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from modeling.core.checkpoints import CHECKPOINT_NAME, load, load_latest, save_atomic
from modeling.core.classifiers import Classifier
from modeling.core.encoders import default_encoder_path
from modeling.core.energy import EnergyMeter

log = logging.getLogger(__name__)

Precision = Literal["bf16", "fp16", "fp32"]
TokenIds = npt.NDArray[np.int32]
StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FineTuneConfig:
    """Every hyper-parameter of a fine-tuning run, with defaults that fit a CPU or one GPU."""

    max_length: int = 128
    """Texts are truncated to this many tokens."""
    epochs: int = 3
    """Passes over the training examples of a run from the pretrained encoder."""
    warm_start_epochs: int = 2
    """Passes when starting from an earlier fine-tuned version (it already knows most labels)."""
    batch_size: int = 16
    """Examples per forward pass (micro-batch); lower it when the device runs out of memory."""
    effective_batch_size: int = 32
    """Examples per optimizer step: gradients of ceil(this / batch_size) micro-batches add up."""
    learning_rate: float = 5e-5
    """Peak learning rate of the pretrained encoder's weights."""
    head_learning_rate: float = 1e-3
    """Peak learning rate of the weights the checkpoint did not have (classifier, pooler)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; never applied to biases and LayerNorm weights."""
    warmup_ratio: float = 0.1
    """Share of the optimizer steps over which the learning rate rises linearly from 0."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay of the learning rate after warmup, down to 0 at the last step."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm (0 turns clipping off)."""
    mixed_precision: Literal["auto", "bf16", "fp16", "off"] = "auto"
    """auto: bf16 on GPUs that support it, else fp16 with loss scaling; off on CPU."""
    validation_fraction: float = 0.15
    """Share of the labeled examples held out to pick the best epoch and stop early."""
    min_validation_examples: int = 8
    """With fewer held-out examples than this there is no early stopping: all epochs run."""
    early_stopping_patience: int = 2
    """Evaluations without a lower validation loss before training stops (0: never stop)."""
    train_token_embeddings: bool = False
    """Also update the token-embedding matrix (half of MiniLM's weights). With hundreds of
    labels it learns little there, and on a CPU its AdamW update was ~12% of a step."""
    gradual_unfreezing: bool = False
    """Train only the new head first, then unfreeze encoder layers from the top, epoch by epoch."""
    bucket_by_length: bool = True
    """Batch examples of similar length together, so little compute goes into padding."""
    num_workers: int | None = None
    """DataLoader worker processes; None: 2 on a GPU (collating overlaps compute), 0 on CPU."""
    prefetch_factor: int = 4
    """Batches each DataLoader worker prepares ahead."""
    smoke_step: bool = True
    """One forward and backward pass on a tiny batch before training, to fail fast."""
    checkpoint_every_steps: int = 50
    """Optimizer steps between checkpoints (a killed run loses at most this many)."""
    inference_batch_size: int = 64
    """Examples per forward pass when scoring."""
    mc_dropout_samples: int = 10
    """Stochastic forward passes per item for MC-dropout (BALD)."""
    seed: int = 0
    """Seeds the weights of new layers, the validation split, batch order and dropout."""
    device: str = "auto"
    """auto (CUDA when visible, else CPU), cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        positive = ("max_length", "batch_size", "effective_batch_size", "inference_batch_size")
        for name in (*positive, "checkpoint_every_steps", "mc_dropout_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs < 1 or self.warm_start_epochs < 1:
            raise ValueError("epochs and warm_start_epochs must be at least 1")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ValueError("learning rates must be positive")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.validation_fraction < 1:
            raise ValueError("warmup_ratio and validation_fraction must lie in [0, 1)")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"unknown mixed_precision {self.mixed_precision!r}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches whose gradients make one optimizer step."""
        return max(1, math.ceil(self.effective_batch_size / self.batch_size))


class SmokeStepFailed(RuntimeError):
    """The one-batch forward and backward pass before training failed: the set-up is broken."""


class TrainingCancelled(RuntimeError):
    """A cancel callback stopped the run; its last checkpoint is kept."""


# --- Devices and precision -----------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else the CPU; anything else is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("a CUDA device was asked for, but torch sees no GPU")
    return device


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """The autocast precision for a ``mixed_precision`` setting on ``device``."""
    if setting == "off":
        return "fp32"
    if setting == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if setting == "bf16" else "fp16"


def _autocast(device: torch.device, precision: Precision) -> torch.autocast:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "fp32")


# --- Tokens and batches --------------------------------------------------------------------


class TokenCache:
    """Token ids per text, computed once: later rounds and resumed runs only tokenize new texts.

    Ids are kept as compact int32 arrays (a 100,000-item pool at 128 tokens is about 50 MB).
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._ids: dict[str, TokenIds] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def encode(self, texts: Sequence[str]) -> list[TokenIds]:
        missing = list(dict.fromkeys(text for text in texts if text not in self._ids))
        if missing:
            encoded = self.tokenizer(missing, truncation=True, max_length=self.max_length)
            for text, ids in zip(missing, encoded["input_ids"], strict=True):
                self._ids[text] = np.asarray(ids, dtype=np.int32)
        return [self._ids[text] for text in texts]


def length_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    batch_size: int,
    rng: np.random.Generator,
    *,
    bucket: bool = True,
    pool_batches: int = 50,
) -> list[npt.NDArray[np.intp]]:
    """Split example indices into shuffled batches; with ``bucket``, of similar lengths.

    Bucketing shuffles, takes ``pool_batches * batch_size`` examples at a time, sorts them by
    length and cuts them into batches, then shuffles the batch order: batches stay random
    from epoch to epoch, but a short text rarely waits for a long one in the same batch.
    """
    order = rng.permutation(len(lengths))
    if bucket:
        lengths = np.asarray(lengths)
        pool = batch_size * pool_batches
        order = (
            np.concatenate(
                [
                    chunk[np.argsort(-lengths[chunk], kind="stable")]
                    for chunk in np.split(order, range(pool, len(order), pool))
                ]
            )
            if len(order)
            else order
        )
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [np.asarray(batch, dtype=np.intp) for batch in batches]


def padding_fraction(
    batches: Sequence[npt.NDArray[np.intp]], lengths: npt.NDArray[np.integer]
) -> float:
    """Share of the padded token positions that are padding (wasted compute)."""
    padded = sum(len(batch) * int(lengths[batch].max()) for batch in batches if len(batch))
    real = sum(int(lengths[batch].sum()) for batch in batches)
    return 1.0 - real / padded if padded else 0.0


class _Collate:
    """Pads a batch of token-id arrays; picklable, so DataLoader workers can run it."""

    def __init__(
        self,
        token_ids: Sequence[TokenIds],
        targets: npt.NDArray[np.integer] | None,
        pad_id: int,
        multi_label: bool,
    ) -> None:
        self.token_ids = token_ids
        self.targets = targets
        self.pad_id = pad_id
        self.multi_label = multi_label

    def __call__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = [self.token_ids[i] for i in indices]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.from_numpy(row.astype(np.int64))
            attention_mask[r, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.targets is not None:
            picked = self.targets[np.asarray(indices)]
            batch["labels"] = (
                torch.as_tensor(picked, dtype=torch.float32)
                if self.multi_label
                else torch.as_tensor(picked, dtype=torch.long)
            )
        return batch


def _loader(
    collate: _Collate,
    batches: Sequence[npt.NDArray[np.intp]],
    config: FineTuneConfig,
    device: torch.device,
) -> DataLoader[dict[str, torch.Tensor]]:
    """Batches in the given order; on a GPU, collated ahead by workers into pinned memory."""
    workers = config.num_workers
    if workers is None:
        workers = 2 if device.type == "cuda" else 0
    workers = min(workers, len(batches))
    return DataLoader(
        range(len(collate.token_ids)),  # type: ignore[arg-type]
        batch_sampler=[list(map(int, b)) for b in batches],
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=config.prefetch_factor if workers else None,
        pin_memory=device.type == "cuda",
        # Its own generator: an iterator drawing its seed from the global RNG would shift the
        # dropout masks of a resumed run away from those of the uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed),
    )


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


# --- Callbacks -----------------------------------------------------------------------------


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
    """Stop once the validation loss has not improved for ``patience`` evaluations."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_evaluate(self, state: TrainingState, validation_loss: float) -> None:
        if self.patience and state.evaluations_without_improvement >= self.patience:
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


# --- The loop ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """Tokenized examples and their targets (class indices, or an indicator matrix)."""

    token_ids: list[TokenIds]
    targets: npt.NDArray[np.integer]

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.fromiter((len(ids) for ids in self.token_ids), dtype=np.int64)


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
    device = next(model.parameters()).device
    precision = resolve_precision(config.mixed_precision, device)
    epochs = epochs or config.epochs
    accumulation = config.accumulation_steps
    lengths = train_examples.lengths
    n_batches = math.ceil(len(train_examples) / config.batch_size)
    steps_per_epoch = math.ceil(n_batches / accumulation)
    state = TrainingState(total_steps=steps_per_epoch * epochs)

    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config, new_parameters), lr=config.learning_rate
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _ScheduleFactor(config.schedule, config.warmup_ratio, state.total_steps)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    collate = _Collate(train_examples.token_ids, train_examples.targets, pad_id, multi_label)
    loss_fn = _loss_function(multi_label)

    if config.smoke_step:
        _smoke_step(model, collate, lengths, device, precision, loss_fn, scaler)
    if checkpoint_dir is not None:
        checkpoint = load_latest(checkpoint_dir)
        if checkpoint is not None:
            _restore(checkpoint, model, optimizer, scheduler, scaler, state, checkpoint_dir)
            state.resumed_from_step = state.step
            log.info("Resuming fine-tuning from step %s in %s", state.step, checkpoint_dir)

    all_callbacks = [*callbacks, EarlyStopping(config.early_stopping_patience)]
    meter = EnergyMeter(str(device), stated_watts)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    meter.start()
    started = time.perf_counter()
    samples_at_start = state.samples_seen
    for callback in all_callbacks:
        callback.on_train_begin(state)
    padded = real = 0
    best_in_memory: dict[int, StateDict] = {}
    while state.epoch < epochs and not state.should_stop:
        _set_trainable(model, config, state.epoch, epochs, new_parameters)
        batches = length_batches(
            lengths,
            config.batch_size,
            np.random.default_rng([config.seed, state.epoch]),
            bucket=config.bucket_by_length,
        )
        model.train()
        groups = [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]
        first_group = state.next_batch // accumulation
        remaining = [batch for group in groups[first_group:] for batch in group]
        loader = iter(_loader(collate, remaining, config, device)) if remaining else iter(())
        for group in groups[first_group:]:
            group_size = sum(len(batch) for batch in group)
            for batch_indices in group:
                batch = _to_device(next(loader), device)
                padded += batch["input_ids"].numel()
                real += int(lengths[batch_indices].sum())
                with _autocast(device, precision):
                    logits = model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits
                # Summed, then divided by the whole step's examples: the gradient is exactly
                # that of one batch of `effective_batch_size`, however it was split.
                loss = loss_fn(logits.float(), batch["labels"]) / group_size
                scaler.scale(loss).backward()
            if config.max_grad_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.samples_seen += group_size
            state.next_batch += len(group)
            if state.next_batch >= len(batches):
                state.epoch += 1
                state.next_batch = 0
                if validation is not None:
                    _evaluate_and_keep_best(
                        model,
                        validation,
                        config,
                        state,
                        all_callbacks,
                        multi_label,
                        pad_id,
                        checkpoint_dir,
                        best_in_memory,
                    )
                    model.train()
            for callback in all_callbacks:
                callback.on_step_end(state)
            if checkpoint_dir is not None and state.step % config.checkpoint_every_steps == 0:
                _save_checkpoint(checkpoint_dir, model, optimizer, scheduler, scaler, state)
            if state.should_stop:
                break
    seconds = time.perf_counter() - started
    energy = meter.stop(seconds)
    if validation is not None and state.best_step:
        best = _best_weights(checkpoint_dir, state.best_step, best_in_memory)
        if best is not None:
            model.load_state_dict(best)
    trained = state.samples_seen - samples_at_start
    return TrainingResult(
        steps=state.step,
        epochs_run=state.epoch,
        samples_seen=state.samples_seen,
        train_seconds=seconds,
        samples_per_second=trained / seconds if seconds > 0 else 0.0,
        device=str(device),
        precision=precision,
        effective_batch_size=config.batch_size * accumulation,
        peak_memory_bytes=_peak_memory(device),
        energy_wh=energy,
        energy_source=meter.source,
        best_validation_loss=state.best_loss if math.isfinite(state.best_loss) else None,
        best_step=state.best_step,
        stopped_early=state.should_stop and state.epoch < epochs,
        resumed_from_step=state.resumed_from_step,
        padding_fraction=1.0 - real / padded if padded else 0.0,
        history=state.history,
    )


class _ScheduleFactor:
    """Learning-rate factor per step: linear warmup, then linear or cosine decay to 0."""

    def __init__(self, schedule: str, warmup_ratio: float, total_steps: int) -> None:
        self.schedule = schedule
        self.warmup = round(warmup_ratio * total_steps)
        self.total = max(total_steps, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress


def _loss_function(multi_label: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if multi_label:
            per_label = nn.functional.binary_cross_entropy_with_logits(
                logits, targets, reduction="none"
            )
            return per_label.mean(dim=1).sum()
        return nn.functional.cross_entropy(logits, targets, reduction="sum")

    return loss


def _parameter_groups(
    model: nn.Module, config: FineTuneConfig, new_parameters: frozenset[str]
) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((name in new_parameters, no_decay), []).append(parameter)
    return [
        {
            "params": parameters,
            "lr": config.head_learning_rate if is_new else config.learning_rate,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (is_new, no_decay), parameters in sorted(groups.items())
    ]


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, bottom first: the longest ModuleList in the model."""
    lists: list[nn.ModuleList] = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    return max((list(blocks) for blocks in lists), key=len, default=[])


def _token_embeddings(model: nn.Module) -> nn.Parameter | None:
    get_input_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_input_embeddings() if get_input_embeddings is not None else None
    return getattr(embeddings, "weight", None)


def _set_trainable(
    model: nn.Module,
    config: FineTuneConfig,
    epoch: int,
    epochs: int,
    new_parameters: frozenset[str],
) -> None:
    """Gradual unfreezing: the new head alone first, then blocks from the top, then all."""
    token_embeddings = _token_embeddings(model)
    if not config.gradual_unfreezing or epochs < 2:
        for parameter in model.parameters():
            parameter.requires_grad_(
                config.train_token_embeddings or parameter is not token_embeddings
            )
        return
    layers = _encoder_layers(model)
    per_epoch = math.ceil(len(layers) / max(1, epochs - 2)) if epochs > 2 else len(layers)
    open_layers = {id(p) for layer in layers[::-1][: epoch * per_epoch] for p in layer.parameters()}
    everything = epoch >= epochs - 1
    for name, parameter in model.named_parameters():
        frozen_embeddings = parameter is token_embeddings and not config.train_token_embeddings
        parameter.requires_grad_(
            not frozen_embeddings
            and (everything or name in new_parameters or id(parameter) in open_layers)
        )


def _smoke_step(
    model: nn.Module,
    collate: _Collate,
    lengths: npt.NDArray[np.int64],
    device: torch.device,
    precision: Precision,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: torch.amp.GradScaler,
) -> None:
    """Forward and backward on the two longest examples (the worst case for memory and
    position embeddings); gradients are thrown away, so training is unchanged."""
    started = time.perf_counter()
    longest = [int(i) for i in np.argsort(-lengths, kind="stable")[:2]]
    try:
        batch = _to_device(collate(longest), device)
        model.train()
        with _autocast(device, precision):
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
        loss = loss_fn(logits.float(), batch["labels"])
        scaler.scale(loss).backward()
    except Exception as exc:
        raise SmokeStepFailed(f"the smoke step failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        raise SmokeStepFailed(f"the smoke step gave a non-finite loss ({loss.item()})")
    log.info("Smoke step passed in %.2f s", time.perf_counter() - started)


def _evaluate_and_keep_best(
    model: nn.Module,
    validation: Examples,
    config: FineTuneConfig,
    state: TrainingState,
    callbacks: Sequence[Callback],
    multi_label: bool,
    pad_id: int,
    checkpoint_dir: Path | None,
    best_in_memory: dict[int, StateDict],
) -> None:
    validation_loss = evaluate_loss(model, validation, config, multi_label, pad_id)
    state.history.append({"step": state.step, "validation_loss": validation_loss})
    if validation_loss < state.best_loss:
        state.best_loss = validation_loss
        state.best_step = state.step
        state.evaluations_without_improvement = 0
        _keep_best_weights(model, checkpoint_dir, state.step, best_in_memory)
    else:
        state.evaluations_without_improvement += 1
    for callback in callbacks:
        callback.on_evaluate(state, validation_loss)


def _keep_best_weights(
    model: nn.Module, checkpoint_dir: Path | None, step: int, in_memory: dict[int, StateDict]
) -> None:
    """Without a checkpoint folder the best weights stay in memory; with one, on disk beside
    the checkpoint that names them, so a resumed run finds them."""
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if checkpoint_dir is None:
        in_memory.clear()
        in_memory[step] = weights
        return
    save_atomic(weights, checkpoint_dir / f"best-{step}.pt")
    for old in checkpoint_dir.glob("best-*.pt"):
        if old.name != f"best-{step}.pt":
            old.unlink(missing_ok=True)


def _best_weights(
    checkpoint_dir: Path | None, step: int, in_memory: dict[int, StateDict]
) -> StateDict | None:
    if checkpoint_dir is None:
        return in_memory.get(step)
    return load(checkpoint_dir / f"best-{step}.pt")


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    examples: Examples,
    config: FineTuneConfig,
    multi_label: bool,
    pad_id: int = 0,
) -> float:
    """Mean loss of ``model`` over ``examples`` (eval mode, no dropout)."""
    logits = predict_logits(model, examples.token_ids, config, pad_id)
    targets = torch.as_tensor(examples.targets, dtype=torch.float32 if multi_label else torch.long)
    return float(_loss_function(multi_label)(logits, targets)) / max(len(examples), 1)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    token_ids: Sequence[TokenIds],
    config: FineTuneConfig,
    pad_id: int = 0,
    *,
    dropout: bool = False,
) -> torch.Tensor:
    """Float32 logits on the CPU, in the order of ``token_ids``; batched longest first.

    With ``dropout``, dropout layers stay active (one MC-dropout sample).
    """
    device = next(model.parameters()).device
    precision = resolve_precision(config.mixed_precision, device)
    model.eval()
    if dropout:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.train()
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    order = np.argsort(-lengths, kind="stable")
    batches = [
        order[start : start + config.inference_batch_size]
        for start in range(0, len(order), config.inference_batch_size)
    ]
    collate = _Collate(token_ids, None, pad_id, multi_label=False)
    outputs: list[torch.Tensor] = []
    if batches:
        for batch in _loader(collate, batches, config, device):
            batch = _to_device(batch, device)
            with _autocast(device, precision):
                logits = model(**batch).logits
            outputs.append(logits.float().cpu())
    model.eval()
    if not outputs:
        return torch.zeros((0, _num_labels(model)))
    result = torch.empty((len(token_ids), outputs[0].shape[1]))
    result[torch.as_tensor(order)] = torch.cat(outputs)
    return result


def _num_labels(model: nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "num_labels", 0))


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


def _save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    state: TrainingState,
) -> None:
    save_atomic(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
            "state": asdict(state),
        },
        folder / CHECKPOINT_NAME,
    )


def _restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    state: TrainingState,
    folder: Path,
) -> None:
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    saved = checkpoint["state"]
    for key, value in saved.items():
        if key != "total_steps":
            setattr(state, key, value)
    if state.best_step and not (folder / f"best-{state.best_step}.pt").is_file():
        raise FileNotFoundError(f"checkpoint names best-{state.best_step}.pt, which is missing")


# --- Loading, warm starts and the Classifier ---------------------------------------------


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading a classifier warns that its new head is untrained: that is the point here."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_classifier_model(
    model_path: Path,
    n_classes: int,
    *,
    multi_label: bool,
    device: torch.device,
    init_state: StateDict | None = None,
    seed: int = 0,
) -> tuple[nn.Module, Any, frozenset[str]]:
    """``AutoModelForSequenceClassification`` and its tokenizer from a local folder.

    Returns the model on ``device``, the tokenizer and the names of the parameters the folder
    did not hold (the new classifier head, and a pooler the sentence encoder never had).
    ``init_state`` (a warm start) overwrites every weight whose shape still fits; a head
    trained for a different number of labels is left new.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_path,
            num_labels=n_classes,
            problem_type=(
                "multi_label_classification" if multi_label else "single_label_classification"
            ),
            local_files_only=True,
            output_loading_info=True,
        )
    names = {name for name, _ in model.named_parameters()}
    new = frozenset(name for name in info.get("missing_keys", ()) if name in names)
    if init_state is not None:
        current = model.state_dict()
        fitting = {
            key: value
            for key, value in init_state.items()
            if key in current and current[key].shape == value.shape
        }
        model.load_state_dict(fitting, strict=False)
        new = frozenset(name for name in new if name not in fitting)
    model.to(device)
    return model, tokenizer, new


def mc_dropout_probabilities(
    model: nn.Module,
    token_ids: Sequence[TokenIds],
    config: FineTuneConfig,
    *,
    multi_label: bool,
    pad_id: int = 0,
) -> npt.NDArray[np.float64]:
    """``(samples, n, n_classes)`` probabilities from forward passes with dropout on."""
    samples = [
        _probabilities(predict_logits(model, token_ids, config, pad_id, dropout=True), multi_label)
        for _ in range(config.mc_dropout_samples)
    ]
    return np.stack(samples)


def _probabilities(logits: torch.Tensor, multi_label: bool) -> npt.NDArray[np.float64]:
    probabilities = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
    return probabilities.double().numpy()


def validation_split(
    targets: npt.NDArray[np.integer], fraction: float, minimum: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp] | None]:
    """Training and held-out rows; no held-out rows when they would be fewer than ``minimum``.

    Single-label splits are stratified, and a class with one example stays in training.
    """
    n = len(targets)
    if int(n * fraction) < minimum:
        return np.arange(n, dtype=np.intp), None
    held: list[int] = []
    if targets.ndim == 1:
        for value in np.unique(targets):
            rows = rng.permutation(np.flatnonzero(targets == value))
            held.extend(rows[: int(len(rows) * fraction)].tolist())
    else:
        held = rng.permutation(n)[: int(n * fraction)].tolist()
    if len(held) < minimum:
        return np.arange(n, dtype=np.intp), None
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    return np.flatnonzero(~is_held).astype(np.intp), np.flatnonzero(is_held).astype(np.intp)


class FineTunedClassifier(Classifier):
    """A fine-tuned transformer behind the :class:`Classifier` interface; ``X`` holds texts.

    Args:
        n_classes: number of classes (labels) of the project.
        multi_label: ``y`` is an indicator matrix; the model uses one sigmoid per label.
        model_path: local Hugging Face folder of the encoder (default: the bundled MiniLM).
        config: hyper-parameters.
        init_state: weights of an earlier fine-tuned version to warm-start from; the run then
            takes ``config.warm_start_epochs`` epochs.
        callbacks: progress, cancel...
        checkpoint_dir: where the run checkpoints and, after a crash, resumes from.
        token_cache: share tokenization with other classifiers of the same encoder.
        stated_watts: power draw for the energy estimate when NVML cannot measure it.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        multi_label: bool = False,
        model_path: Path | None = None,
        config: FineTuneConfig | None = None,
        init_state: StateDict | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: Path | None = None,
        token_cache: TokenCache | None = None,
        stated_watts: float | None = None,
    ) -> None:
        super().__init__(n_classes, multi_label=multi_label)
        self.model_path = model_path or default_encoder_path()
        self.config = config or FineTuneConfig()
        self.init_state = init_state
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.token_cache = token_cache
        self.stated_watts = stated_watts
        self.device = resolve_device(self.config.device)
        self.model: nn.Module | None = None
        self._new_parameters: frozenset[str] = frozenset()
        self.result: TrainingResult | None = None
        self._pad_id = 0

    def _load(self) -> TokenCache:
        model, tokenizer, new = load_classifier_model(
            self.model_path,
            self.n_classes,
            multi_label=self.multi_label,
            device=self.device,
            init_state=self.init_state,
            seed=self.config.seed,
        )
        self.model, self._new_parameters = model, new
        self._pad_id = int(tokenizer.pad_token_id or 0)
        if self.token_cache is None or self.token_cache.max_length != self.config.max_length:
            self.token_cache = TokenCache(tokenizer, self.config.max_length)
        return self.token_cache

    def fit(self, X: npt.NDArray[Any], y: npt.NDArray[np.integer]) -> FineTunedClassifier:
        """Fine-tune on texts ``X`` with targets ``y`` (see :class:`Classifier`)."""
        texts = [str(text) for text in X]
        y = np.asarray(y)
        if len(texts) == 0:
            raise ValueError("cannot fit a classifier on zero examples")
        if len(texts) != len(y):
            raise ValueError(f"X has {len(texts)} rows but y has {len(y)}")
        cache = self._load()
        assert self.model is not None
        token_ids = cache.encode(texts)
        train_rows, held_rows = validation_split(
            y,
            self.config.validation_fraction,
            self.config.min_validation_examples,
            np.random.default_rng(self.config.seed),
        )
        training = Examples([token_ids[i] for i in train_rows], y[train_rows])
        validation = (
            Examples([token_ids[i] for i in held_rows], y[held_rows])
            if held_rows is not None
            else None
        )
        warm = self.init_state is not None
        self.result = train(
            self.model,
            training,
            validation,
            self.config,
            multi_label=self.multi_label,
            epochs=self.config.warm_start_epochs if warm else self.config.epochs,
            new_parameters=self._new_parameters,
            pad_id=self._pad_id,
            callbacks=self.callbacks,
            checkpoint_dir=self.checkpoint_dir,
            stated_watts=self.stated_watts,
        )
        return self

    def _token_ids(self, X: npt.NDArray[Any]) -> list[TokenIds]:
        if self.model is None or self.token_cache is None:
            raise RuntimeError("FineTunedClassifier used before fit or load_state")
        return self.token_cache.encode([str(text) for text in X])

    def predict_proba(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Probabilities ``(len(X), n_classes)`` for texts ``X``, in project class order."""
        token_ids = self._token_ids(X)
        assert self.model is not None
        logits = predict_logits(self.model, token_ids, self.config, self._pad_id)
        return _probabilities(logits, self.multi_label)

    def predict_proba_samples(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """MC-dropout: ``(config.mc_dropout_samples, len(X), n_classes)`` probabilities."""
        token_ids = self._token_ids(X)
        assert self.model is not None
        return mc_dropout_probabilities(
            self.model, token_ids, self.config, multi_label=self.multi_label, pad_id=self._pad_id
        )

    def state_dict(self) -> StateDict:
        """The fine-tuned weights on the CPU, to save or to warm-start the next version."""
        if self.model is None:
            raise RuntimeError("FineTunedClassifier has no weights before fit or load_state")
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_state(self, state: StateDict) -> FineTunedClassifier:
        """Use saved weights (a version trained earlier) without training."""
        self.init_state = state
        self._load()
        return self


class WarmStartedFineTuning:
    """A classifier factory for ``simulate``: each round starts from the previous round's
    weights (``warm_start_epochs``) and reuses its tokenization, so a round costs little."""

    def __init__(self, config: FineTuneConfig | None = None, model_path: Path | None = None):
        self.config = config or FineTuneConfig()
        self.model_path = model_path
        self._previous: FineTunedClassifier | None = None
        self._cache: TokenCache | None = None

    def __call__(self, n_classes: int) -> FineTunedClassifier:
        state = None
        if self._previous is not None and self._previous.model is not None:
            state = self._previous.state_dict()
            self._cache = self._previous.token_cache
            self._previous.model = None  # only one model in memory at a time
        classifier = FineTunedClassifier(
            n_classes,
            model_path=self.model_path,
            config=replace(self.config),
            init_state=state,
            token_cache=self._cache,
        )
        self._previous = classifier
        return classifier
