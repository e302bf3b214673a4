"""LP-FT: fine-tuning starts where the logistic head is, and keeps weights no worse than it.

A tiny 2-layer BERT with MiniLM's tokenizer stands in for the encoder (tests/fixtures.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.core.classifiers import HeadClassifier
from modeling.core.finetuning import (
    Examples,
    FineTuneConfig,
    FineTunedClassifier,
    MeanPooledClassifier,
    TokenCache,
    evaluate_loss,
    load_classifier_model,
    pooled_embeddings,
    predict_logits,
    train,
)
from modeling.core.finetuning.model import logits_to_probabilities
from tests.fixtures import finance_texts, sports_texts
from tests.fixtures import tiny_bert as tiny_bert_model

FAST = FineTuneConfig(
    max_length=48,
    epochs=3,
    batch_size=4,
    effective_batch_size=8,
    learning_rate=5e-4,
    checkpoint_every_steps=2,
    device="cpu",
    min_steps=0,
)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert_model(tmp_path_factory.mktemp("tiny-bert-lp-ft"), dropout=0.0)


def _topics(n: int) -> tuple[np.ndarray, np.ndarray]:
    texts = np.array(sports_texts(n) + finance_texts(n), dtype=object)
    return texts, np.array([0] * n + [1] * n)


def _model_and_examples(
    folder: Path, texts: np.ndarray, y: np.ndarray, n_classes: int = 2, multi_label: bool = False
) -> tuple[MeanPooledClassifier, Examples, frozenset[str]]:
    model, tokenizer, new = load_classifier_model(
        folder, n_classes, multi_label=multi_label, device=CPU
    )
    assert isinstance(model, MeanPooledClassifier)
    token_ids = TokenCache(tokenizer, FAST.max_length).encode(list(texts))
    return model, Examples(token_ids, y), new


def _probabilities(model: MeanPooledClassifier, examples: Examples, multi: bool) -> np.ndarray:
    return logits_to_probabilities(predict_logits(model, examples.token_ids, FAST), multi)


@pytest.mark.parametrize(
    ("n_classes", "present"),
    [
        pytest.param(2, [0, 1], id="two classes"),
        pytest.param(4, [0, 2], id="two of four classes have labels"),
        pytest.param(3, [1], id="one class so far"),
    ],
)
def test_step_zero_predicts_what_the_head_predicts(
    tiny_bert: Path, n_classes: int, present: list[int]
) -> None:
    texts, topic = _topics(12)
    y = np.array([present[t % len(present)] for t in topic])
    model, examples, _ = _model_and_examples(tiny_bert, texts, y, n_classes)
    embeddings = pooled_embeddings(model, examples.token_ids, FAST, pad_id=0)
    head = HeadClassifier(n_classes, smoothing=0.0).fit(embeddings, y)

    model.start_from_head(head)

    np.testing.assert_allclose(
        _probabilities(model, examples, False), head.predict_proba(embeddings), atol=1e-5
    )


def test_step_zero_predicts_what_a_multi_label_head_predicts(tiny_bert: Path) -> None:
    texts, topic = _topics(12)
    # Label 0 is learnable, label 1 is on everywhere, label 2 nowhere: those two are priors.
    y = np.stack([topic, np.ones_like(topic), np.zeros_like(topic)], axis=1)
    model, examples, _ = _model_and_examples(tiny_bert, texts, y, 3, multi_label=True)
    embeddings = pooled_embeddings(model, examples.token_ids, FAST, pad_id=0)
    head = HeadClassifier(3, multi_label=True).fit(embeddings, y)

    model.start_from_head(head)

    np.testing.assert_allclose(
        _probabilities(model, examples, True), head.predict_proba(embeddings), atol=1e-5
    )


def test_a_fine_tune_that_cannot_move_predicts_exactly_what_the_head_predicts(
    tiny_bert: Path,
) -> None:
    texts, y = _topics(10)
    frozen = replace(FAST, learning_rate=1e-30, validation_fraction=0.0)
    classifier = FineTunedClassifier(2, model_path=tiny_bert, config=frozen).fit(texts, y)
    assert classifier.model is not None
    assert classifier.token_cache is not None
    model = classifier.model
    assert isinstance(model, MeanPooledClassifier)
    token_ids = classifier.token_cache.encode(list(texts))
    head = HeadClassifier(2).fit(pooled_embeddings(model, token_ids, frozen, 0), y)

    fine_tuned = classifier.predict_proba(texts)

    np.testing.assert_allclose(
        fine_tuned, head.predict_proba(pooled_embeddings(model, token_ids, frozen, 0)), atol=2e-3
    )
    assert (fine_tuned.argmax(axis=1) == y).mean() == pytest.approx(
        (
            head.predict_proba(pooled_embeddings(model, token_ids, frozen, 0)).argmax(axis=1) == y
        ).mean()
    )


def test_training_that_only_hurts_on_validation_ends_with_the_heads_weights(
    tiny_bert: Path,
) -> None:
    texts, y = _topics(12)
    model, training, new = _model_and_examples(tiny_bert, texts, y)
    head = HeadClassifier(2).fit(pooled_embeddings(model, training.token_ids, FAST, 0), y)
    model.start_from_head(head)
    # The held-out answers are the opposite ones: every step of learning makes them worse.
    held_out = Examples(training.token_ids, 1 - y)
    at_start = evaluate_loss(model, held_out, FAST, multi_label=False)

    result = train(model, training, held_out, replace(FAST, epochs=4), new_parameters=new)

    assert result.steps > 0
    assert result.best_step == 0
    assert result.history[0] == {"step": 0, "validation_loss": pytest.approx(at_start)}
    assert evaluate_loss(model, held_out, FAST, multi_label=False) == pytest.approx(at_start)


def test_a_run_takes_at_least_min_steps_whatever_its_epochs(tiny_bert: Path) -> None:
    texts, y = _topics(8)  # 16 examples: two optimizer steps an epoch
    model, training, new = _model_and_examples(tiny_bert, texts, y)

    result = train(model, training, None, replace(FAST, epochs=1, min_steps=9), new_parameters=new)

    assert result.steps == 10  # five epochs of two steps: the first whole epoch past nine
    assert result.epochs_run == 5


def test_early_stopping_waits_for_min_steps(tiny_bert: Path) -> None:
    texts, y = _topics(8)
    model, training, new = _model_and_examples(tiny_bert, texts, y)
    held_out = Examples(training.token_ids, 1 - y)  # never improves after the start
    config = replace(FAST, epochs=10, min_steps=8, early_stopping_patience=1)

    result = train(model, training, held_out, config, new_parameters=new)

    assert result.stopped_early  # of 20 steps, after the first evaluation past 8
    assert result.steps == 8


def test_a_version_fine_tuned_before_lp_ft_still_loads_as_it_was_trained(tiny_bert: Path) -> None:
    old, _, _ = load_classifier_model(tiny_bert, 2, multi_label=False, device=CPU, pooling="cls")
    saved = {key: value.clone() for key, value in old.state_dict().items()}

    loaded, _, new = load_classifier_model(
        tiny_bert, 2, multi_label=False, device=CPU, init_state=saved
    )

    assert not isinstance(loaded, MeanPooledClassifier)
    assert new == frozenset()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, saved[key]), key
