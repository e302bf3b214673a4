"""The ``...ForSequenceClassification`` model: loading it, its loss, and scoring with it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from modeling.core.encoders import mean_pool
from modeling.core.finetuning.config import FineTuneConfig, autocast, resolve_precision
from modeling.core.finetuning.data import Collate, Examples, TokenIds, batch_loader, to_device

if TYPE_CHECKING:
    from modeling.core.classifiers import HeadClassifier

StateDict = dict[str, torch.Tensor]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Pooling = Literal["mean", "cls"]


@dataclass
class ClassifierOutput:
    """What ``model(**batch)`` returns here, as transformers' outputs do: ``.logits``."""

    logits: torch.Tensor


class MeanPooledClassifier(nn.Module):
    """The sentence encoder, pooled exactly as item embeddings are (mean over tokens, then L2
    norm), and one linear layer: the logistic head's own form, so its weights drop in.

    ``AutoModelForSequenceClassification`` instead classifies a [CLS] vector through a pooler
    the sentence encoder never trained, so its first steps start from chance, not from the
    head that already serves the queue.
    """

    encoder: Any  # a transformers PreTrainedModel

    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_labels = n_classes
        self.classifier = nn.Linear(int(self.encoder.config.hidden_size), n_classes)

    def get_input_embeddings(self) -> nn.Module:
        embeddings: nn.Module = self.encoder.get_input_embeddings()
        return embeddings

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The unit-length sentence embedding of each text, in fp32."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(hidden.last_hidden_state, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> ClassifierOutput:
        pooled = self.pooled(input_ids, attention_mask)
        return ClassifierOutput(self.classifier(pooled.to(self.classifier.weight.dtype)))

    @torch.no_grad()
    def start_from_head(self, head: HeadClassifier) -> None:
        """Set the linear layer to ``head``'s weights (fitted on this encoder's embeddings)."""
        weights, biases = head.linear_layer()
        layer = self.classifier
        layer.weight.copy_(torch.as_tensor(weights, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(biases, dtype=layer.bias.dtype))


def state_pooling(state: StateDict) -> Pooling:
    """Which architecture saved ``state``: versions fine-tuned before LP-FT used [CLS]."""
    return "mean" if any(key.startswith("encoder.") for key in state) else "cls"


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
    pooling: Pooling = "mean",
) -> tuple[nn.Module, Any, frozenset[str]]:
    """The classifier and its tokenizer from a local Hugging Face folder.

    ``pooling="mean"`` is :class:`MeanPooledClassifier` (the default); ``"cls"`` is
    ``AutoModelForSequenceClassification``. Returns the model on ``device``, the tokenizer and
    the names of the parameters the folder did not hold (the new classifier layer, and for
    "cls" a pooler the sentence encoder never had). ``init_state`` (a warm start, or a saved
    version) overwrites every weight whose shape still fits, and decides the architecture;
    a layer trained for a different number of labels is left new.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if init_state is not None:
        pooling = state_pooling(init_state)
    torch.manual_seed(seed)
    model: nn.Module
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        if pooling == "mean":
            encoder = _load_encoder(AutoModel, model_path)
            model = MeanPooledClassifier(encoder, n_classes)
            new = frozenset(f"classifier.{name}" for name, _ in model.classifier.named_parameters())
        else:
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


def _load_encoder(auto_model: Any, model_path: Path) -> nn.Module:
    """The bare encoder, without the [CLS] pooler that mean pooling never uses."""
    try:
        encoder: nn.Module = auto_model.from_pretrained(
            model_path, local_files_only=True, add_pooling_layer=False
        )
    except TypeError:  # an architecture without a pooler to leave out
        encoder = auto_model.from_pretrained(model_path, local_files_only=True)
    return encoder


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
    return _batched(
        model, token_ids, config, pad_id, lambda batch: model(**batch).logits, dropout=dropout
    )


@torch.no_grad()
def pooled_embeddings(
    model: MeanPooledClassifier, token_ids: Sequence[TokenIds], config: FineTuneConfig, pad_id: int
) -> npt.NDArray[np.float32]:
    """The model's own sentence embeddings (what its linear layer sees), dropout off."""
    pooled = _batched(model, token_ids, config, pad_id, lambda batch: model.pooled(**batch))
    return pooled.numpy().astype(np.float32, copy=False)


def _batched(
    model: nn.Module,
    token_ids: Sequence[TokenIds],
    config: FineTuneConfig,
    pad_id: int,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    dropout: bool = False,
) -> torch.Tensor:
    """``forward`` over ``token_ids`` in batches, longest first, as fp32 rows on the CPU."""
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
                rows = forward(batch)
            outputs.append(rows.float().cpu())
    model.eval()
    if not outputs:
        return torch.zeros((0, _num_labels(model)))
    result = torch.empty((len(token_ids), outputs[0].shape[1]))
    result[torch.as_tensor(order)] = torch.cat(outputs)
    return result


def _num_labels(model: nn.Module) -> int:
    """Width of the logits, for scoring zero texts."""
    if isinstance(model, MeanPooledClassifier):
        return model.num_labels
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
