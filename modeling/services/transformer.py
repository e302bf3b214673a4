"""A project's fine-tuned transformer as the workers configure and load it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from labeling.models import Project
from modeling.core.checkpoints import load
from modeling.core.encoders import default_encoder_path
from modeling.core.finetuning import FineTuneConfig, FineTunedClassifier, TokenCache
from modeling.models import ModelVersion

KIND = "finetune"

# Tokenization per (encoder folder, max length), kept for the worker process's lifetime.
token_caches: dict[tuple[str, int], TokenCache] = {}


def finetune_config() -> FineTuneConfig:
    """The deployment's hyper-parameters (settings), FineTuneConfig's defaults for the rest."""
    return FineTuneConfig(
        epochs=settings.SIFT_FINETUNE_EPOCHS,
        max_length=settings.SIFT_FINETUNE_MAX_LENGTH,
        batch_size=settings.SIFT_FINETUNE_BATCH_SIZE,
        checkpoint_every_steps=settings.SIFT_FINETUNE_CHECKPOINT_STEPS,
        min_steps=settings.SIFT_FINETUNE_MIN_STEPS,
        device=settings.SIFT_TRAINING_DEVICE,
    )


def encoder_path(project: Project) -> Path:
    return Path(project.encoder.strip()) if project.encoder.strip() else default_encoder_path()


def load_version(project: Project, version: ModelVersion, n_classes: int) -> FineTunedClassifier:
    """A fine-tuned version's classifier, from its saved weights."""
    config = finetune_config()
    return FineTunedClassifier(
        n_classes,
        multi_label=project.multi_label,
        model_path=encoder_path(project),
        config=config,
        token_cache=token_caches.get((str(encoder_path(project)), config.max_length)),
    ).load_state(load(Path(version.weights_path)) or {})
