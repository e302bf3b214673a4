"""The fine-tuned transformer behind Sift's :class:`Classifier` interface, and the warm-started
factory that ``simulate`` uses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from modeling.core.cadence import FINETUNE_GROWTH, FINETUNE_MIN_LABELS, finetune_due
from modeling.core.classifiers import Classifier, HeadClassifier
from modeling.core.encoders import default_encoder_path
from modeling.core.finetuning.callbacks import Callback
from modeling.core.finetuning.config import FineTuneConfig, resolve_device
from modeling.core.finetuning.data import Examples, TokenCache, TokenIds, validation_split
from modeling.core.finetuning.loop import SmokeStepFailed, TrainingResult, train
from modeling.core.finetuning.model import (
    MeanPooledClassifier,
    StateDict,
    load_classifier_model,
    logits_to_probabilities,
    mc_dropout_probabilities,
    pooled_embeddings,
    predict_logits,
)


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
            pooling=self.config.pooling,
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
        if self.config.start_from_head and isinstance(self.model, MeanPooledClassifier):
            self._start_from_head(training)
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

    def _start_from_head(self, training: Examples) -> None:
        """LP-FT: the logistic head fitted on this model's embeddings of the training labels
        becomes the linear layer, which then trains at the encoder's learning rate."""
        assert isinstance(self.model, MeanPooledClassifier)
        try:
            embeddings = pooled_embeddings(
                self.model, training.token_ids, self.config, self._pad_id
            )
        except Exception as exc:  # the same broken set-up the smoke step catches, found sooner
            raise SmokeStepFailed(
                f"the first forward pass failed: {type(exc).__name__}: {exc}"
            ) from exc
        head = HeadClassifier(self.n_classes, multi_label=self.multi_label, C=self.config.head_C)
        self.model.start_from_head(head.fit(embeddings, training.targets))
        self._new_parameters = frozenset(
            name for name in self._new_parameters if not name.startswith("classifier.")
        )

    def _token_ids(self, X: npt.NDArray[Any]) -> list[TokenIds]:
        if self.model is None or self.token_cache is None:
            raise RuntimeError("FineTunedClassifier used before fit or load_state")
        return self.token_cache.encode([str(text) for text in X])

    def predict_proba(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Probabilities ``(len(X), n_classes)`` for texts ``X``, in project class order."""
        token_ids = self._token_ids(X)
        assert self.model is not None
        logits = predict_logits(self.model, token_ids, self.config, self._pad_id)
        return logits_to_probabilities(logits, self.multi_label)

    def embed(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings of texts ``X`` in the space the model adapted to its labels:
        what its own linear layer reads (mean pooling only)."""
        token_ids = self._token_ids(X)
        if not isinstance(self.model, MeanPooledClassifier):
            raise TypeError("only a mean-pooled fine-tuned model embeds texts")
        return pooled_embeddings(self.model, token_ids, self.config, self._pad_id)

    def predict_proba_from_embeddings(
        self, embeddings: npt.NDArray[np.floating]
    ) -> npt.NDArray[np.float64]:
        """What :meth:`predict_proba` gives, from :meth:`embed`'s output: no second pass."""
        if not isinstance(self.model, MeanPooledClassifier):
            raise TypeError("only a mean-pooled fine-tuned model embeds texts")
        layer = self.model.classifier
        with torch.no_grad():
            logits = layer(torch.as_tensor(embeddings, device=layer.weight.device).float())
        return logits_to_probabilities(logits.cpu(), self.multi_label)

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


class AdaptingFineTunes:
    """``simulate``'s replay of the live loop's fine-tunes (see :func:`run_simulation`'s
    ``adaptation``): once :func:`~modeling.core.cadence.finetune_due` says so, fine-tune on the
    labeled texts (LP-FT, warm-started from the previous fine-tune) and hand back the pool's
    and the test set's embeddings in the adapted space, where the head then trains, as a
    promoted fine-tune re-embeds a live project's pool.

    ``history`` keeps, per fine-tune, the labels it learned from, its seconds and the test
    accuracy of the fine-tuned model itself.
    """

    def __init__(
        self,
        train_texts: npt.NDArray[Any],
        test_texts: npt.NDArray[Any],
        test_y: npt.NDArray[np.integer],
        config: FineTuneConfig | None = None,
        model_path: Path | None = None,
        *,
        growth: float = FINETUNE_GROWTH,
        at_least: int = FINETUNE_MIN_LABELS,
    ) -> None:
        self.train_texts = train_texts
        self.test_texts = test_texts
        self.test_y = np.asarray(test_y)
        self.factory = WarmStartedFineTuning(config, model_path)
        self.growth = growth
        self.at_least = at_least
        self.last_labels = 0
        self.history: list[dict[str, float]] = []

    def __call__(
        self, labeled: npt.NDArray[np.intp], y: npt.NDArray[np.integer], n_classes: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        if not finetune_due(len(labeled), self.last_labels, self.growth, self.at_least):
            return None
        started = time.perf_counter()
        classifier = self.factory(n_classes).fit(self.train_texts[labeled], y)
        self.last_labels = len(labeled)
        train_emb, test_emb = classifier.embed(self.train_texts), classifier.embed(self.test_texts)
        predictions = classifier.predict_proba_from_embeddings(test_emb).argmax(axis=1)
        self.history.append(
            {
                "labels": float(len(labeled)),
                "seconds": time.perf_counter() - started,
                "accuracy": float((predictions == self.test_y).mean()),
            }
        )
        return train_emb, test_emb


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
