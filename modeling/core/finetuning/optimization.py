"""What the optimizer steps, and how fast: parameter groups, the learning-rate schedule and
gradual unfreezing."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from modeling.core.finetuning.config import FineTuneConfig


def parameter_groups(
    model: nn.Module, config: FineTuneConfig, new_parameters: frozenset[str]
) -> list[dict[str, Any]]:
    """AdamW groups: new weights at ``head_learning_rate``, and no decay on biases and norms."""
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


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, config: FineTuneConfig, total_steps: int
) -> LambdaLR:
    """Linear warmup over ``config.warmup_ratio`` of the steps, then ``config.schedule``.

    The learning rate of step ``k`` (0-based) is the peak times ``(k + 1) / (warmup + 1)``
    during the warmup, then it decays linearly or along a cosine to 0 at ``total_steps``
    ("constant" stays at the peak). ``transformers.get_scheduler`` gives step 0 a rate of 0,
    an optimizer step that learns nothing, which a warm start of a few steps would feel; so
    its schedule is built one step longer, with one more warmup step, and advanced one step
    here: step ``k`` trains at the library's step ``k + 1``, which is the rate above.

    ``LambdaLR.state_dict`` does not save the factors (``functools.partial`` objects), only
    the step: a resumed run builds them again from the same config and ``total_steps``, and
    the checkpoint's ``last_epoch`` puts the scheduler back at its step.
    """
    # huggingface_hub reads this once, when first imported (load_classifier_model sets it too).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import get_scheduler

    warmup = round(config.warmup_ratio * total_steps)
    scheduler: LambdaLR = get_scheduler(
        "constant_with_warmup" if config.schedule == "constant" else config.schedule,
        optimizer,
        num_warmup_steps=warmup + 1,
        num_training_steps=max(total_steps, 1) + 1,
    )
    with warnings.catch_warnings():
        # torch warns of a scheduler step before any optimizer step; this one is the shift.
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
        scheduler.step()
    return scheduler


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, bottom first: the longest ModuleList in the model."""
    lists: list[nn.ModuleList] = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    return max((list(blocks) for blocks in lists), key=len, default=[])


def _token_embeddings(model: nn.Module) -> nn.Parameter | None:
    get_input_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_input_embeddings() if get_input_embeddings is not None else None
    return getattr(embeddings, "weight", None)


def set_trainable(
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
