"""Hyper-parameters of a fine-tuning run, and the device and precision it runs at."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from modeling.core.classifiers import HEAD_C

Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class FineTuneConfig:
    """Every hyper-parameter of a fine-tuning run, with defaults that fit a CPU or one GPU."""

    max_length: int = 128
    """Texts are truncated to this many tokens."""
    pooling: Literal["mean", "cls"] = "mean"
    """mean: the item encoder's own pooling (token mean, L2 norm) under one linear layer, the
    logistic head's form; cls: ``AutoModelForSequenceClassification`` (a [CLS] pooler)."""
    start_from_head: bool = True
    """LP-FT (Kumar et al. 2022): before fine-tuning, fit the logistic head on the model's own
    embeddings of the training labels and start the linear layer from it, so step 0 predicts
    what the head predicts (mean pooling only)."""
    head_C: float | None = HEAD_C
    """Inverse regularization of that head; None: chosen by cross-validation, as the live head
    chooses its own (:func:`~modeling.core.classifiers.choose_C`). It stays 3 while the live
    head chooses: a start that already fits the labels sharply (the 30 Banking77's head
    chooses) leaves little gradient for the encoder, and in the replay of the live loop it
    put Banking77 1.2 to 1.9 points below the head alone at 50 and 100 labels, where 3 keeps
    it above (README, *The fine-tuned loop against the head alone*)."""
    min_steps: int = 40
    """Optimizer steps a run takes at least, whatever ``epochs`` says: with few labels an epoch
    is one step, and too few steps are what makes few-sample fine-tuning fail (Mosbach et al.
    2021). Early stopping waits for them too. 80 and 160 lifted Banking77's 100-250-label
    accuracy by 1-3 points, not its 275-label point (README: the schedule check)."""
    evaluate_at_start: bool = True
    """Evaluate the starting weights (the head, with LP-FT) too, so the weights kept at the end
    have a validation loss no higher than where training began."""
    epochs: int = 3
    """Passes over the training examples of a run from the pretrained encoder."""
    warm_start_epochs: int = 2
    """Passes when starting from an earlier fine-tuned version (it already knows most labels)."""
    batch_size: int = 16
    """Examples per forward pass (micro-batch); lower it when the device runs out of memory."""
    effective_batch_size: int = 32
    """Examples per optimizer step: gradients of ceil(this / batch_size) micro-batches add up."""
    learning_rate: float = 5e-5
    """Peak learning rate of the pretrained encoder's weights (and, with LP-FT, of the linear
    layer). Checked against 2e-5 and 1e-4 in the live loop's replay (README, *The
    learning-rate and schedule check*): best on SST-2, 1e-4 below it on Banking77 too."""
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
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be at least 0, got {self.min_steps}")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling {self.pooling!r}")
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


def autocast(device: torch.device, precision: Precision) -> torch.autocast:
    """``torch.autocast`` to ``precision`` on ``device``; it does nothing for fp32."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "fp32")
