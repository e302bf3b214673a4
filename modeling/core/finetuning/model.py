"""The ``...ForSequenceClassification`` model: loading it, its loss, and scoring with it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from modeling.core.finetuning.config import FineTuneConfig, autocast, resolve_precision
from modeling.core.finetuning.data import Collate, Examples, TokenIds, batch_loader, to_device

StateDict = dict[str, torch.Tensor]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def loss_function(multi_label: bool) -> LossFunction:
    """The batch's loss summed over its examples (the caller divides): cross-entropy, or for
    multi-label the mean binary cross-entropy of each example's labels."""

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if multi_label:
            per_label = nn.functional.binary_cross_entropy_with_logits(
                logits, targets, reduction="none"
            )
            return per_label.mean(dim=1).sum()
        return nn.functional.cross_entropy(logits, targets, reduction="sum")

    return loss


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
    return float(loss_function(multi_label)(logits, targets)) / max(len(examples), 1)


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
    collate = Collate(token_ids, None, pad_id, multi_label=False)
    outputs: list[torch.Tensor] = []
    if batches:
        for batch in batch_loader(collate, batches, config, device):
            batch = to_device(batch, device)
            with autocast(device, precision):
                logits = model(**batch).logits
            outputs.append(logits.float().cpu())
    model.eval()
    if not outputs:
        return torch.zeros((0, _num_labels(model)))
    result = torch.empty((len(token_ids), outputs[0].shape[1]))
    result[torch.as_tensor(order)] = torch.cat(outputs)
    return result


def _num_labels(model: nn.Module) -> int:
    """Width of the logits, for scoring zero texts."""
    return int(getattr(getattr(model, "config", None), "num_labels", 0))


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
        logits_to_probabilities(
            predict_logits(model, token_ids, config, pad_id, dropout=True), multi_label
        )
        for _ in range(config.mc_dropout_samples)
    ]
    return np.stack(samples)


def logits_to_probabilities(logits: torch.Tensor, multi_label: bool) -> npt.NDArray[np.float64]:
    """Softmax over the classes, or for multi-label a sigmoid per label, as float64."""
    probabilities = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
    return probabilities.double().numpy()
