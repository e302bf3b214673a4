"""The fine-tuning loop on a tiny BERT built from MiniLM's tokenizer: fast, offline, on CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.core.checkpoints import CHECKPOINT_NAME, load_latest, save_atomic
from modeling.core.finetuning import (
    Callback,
    Examples,
    FineTuneConfig,
    FineTunedClassifier,
    SmokeStepFailed,
    TokenCache,
    TrainingState,
    WarmStartedFineTuning,
    evaluate_loss,
    length_batches,
    load_classifier_model,
    padding_fraction,
    predict_logits,
    train,
)
from tests.fixtures import finance_texts, sports_texts
from tests.fixtures import tiny_bert as tiny_bert_model

FAST = FineTuneConfig(
    max_length=48,
    epochs=3,
    batch_size=4,
    effective_batch_size=8,
    learning_rate=5e-4,
    head_learning_rate=5e-3,
    checkpoint_every_steps=2,
    device="cpu",
    min_steps=0,  # these stories count epochs; tests/modeling/test_lp_ft.py has the floor
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """On a 2-core machine busy with other work, two torch threads wait on each other
    (measured: a tiny run took 26 s with 2 threads, 2 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_bert_without_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert_model(tmp_path_factory.mktemp("tiny-bert-no-dropout"), dropout=0.0)


def _topics(n: int) -> tuple[np.ndarray, np.ndarray]:
    texts = np.array(sports_texts(n) + finance_texts(n), dtype=object)
    return texts, np.array([0] * n + [1] * n)


def _examples(folder: Path, texts: np.ndarray, y: np.ndarray) -> tuple[Examples, object]:
    model, tokenizer, new = load_classifier_model(
        folder, 2, multi_label=False, device=torch.device("cpu")
    )
    token_ids = TokenCache(tokenizer, FAST.max_length).encode(list(texts))
    return Examples(token_ids, y), (model, new)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_fine_tuned_classifier_learns_two_topics(tiny_bert: Path) -> None:
    texts, y = _topics(24)
    config = replace(FAST, epochs=5, min_validation_examples=4)
    classifier = FineTunedClassifier(2, model_path=tiny_bert, config=config).fit(texts, y)

    probabilities = classifier.predict_proba(texts)
    assert probabilities.shape == (48, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities.argmax(axis=1) == y).mean() >= 0.9
    result = classifier.result
    assert result is not None
    assert result.device == "cpu"
    assert result.precision == "fp32"  # mixed precision is off on the CPU by default
    assert result.samples_per_second > 0
    assert result.peak_memory_bytes > 0
    assert result.energy_wh is not None
    assert result.energy_wh > 0
    assert result.energy_source == "stated"
    samples = classifier.predict_proba_samples(texts[:5])
    assert samples.shape == (config.mc_dropout_samples, 5, 2)
    assert not np.allclose(samples[0], samples[1])  # dropout was on


def test_a_broken_configuration_fails_in_the_smoke_step_before_training(
    tiny_bert: Path, tmp_path: Path
) -> None:
    # The tiny model knows 64 positions; texts of 100 tokens overflow them.
    long_texts = np.array([" ".join(["word"] * 100) + f" {i}" for i in range(40)], dtype=object)
    config = replace(FAST, max_length=128, epochs=50)
    classifier = FineTunedClassifier(
        2, model_path=tiny_bert, config=config, checkpoint_dir=tmp_path
    )

    started = time.perf_counter()
    with pytest.raises(SmokeStepFailed):
        classifier.fit(long_texts, np.array([0, 1] * 20))
    assert time.perf_counter() - started < 30
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # no optimizer step was ever taken


def test_early_stopping_keeps_the_best_weights(tiny_bert: Path) -> None:
    texts, y = _topics(16)
    training, (model, new) = _examples(tiny_bert, texts, y)
    # The held-out answers are the opposite ones: the more it learns, the worse it does there.
    held_out = Examples(training.token_ids, 1 - y)
    config = replace(FAST, epochs=8, early_stopping_patience=2)

    result = train(model, training, held_out, config, new_parameters=new)  # type: ignore[arg-type]

    losses = [entry["validation_loss"] for entry in result.history]
    assert result.stopped_early
    assert result.epochs_run < 8
    assert min(losses) < losses[-1]
    assert result.best_validation_loss == pytest.approx(min(losses))
    kept = evaluate_loss(model, held_out, config, multi_label=False)  # type: ignore[arg-type]
    assert kept == pytest.approx(min(losses), rel=1e-5)


def test_gradient_accumulation_gives_the_configured_effective_batch(
    tiny_bert_without_dropout: Path,
) -> None:
    texts, y = _topics(16)
    one_batch = replace(FAST, batch_size=8, effective_batch_size=8, bucket_by_length=False)
    accumulated = replace(one_batch, batch_size=4)
    before = None
    logits = []
    for config in (one_batch, accumulated):
        training, (model, new) = _examples(tiny_bert_without_dropout, texts, y)
        before = predict_logits(model, training.token_ids, config)  # type: ignore[arg-type]
        result = train(model, training, None, config, new_parameters=new)  # type: ignore[arg-type]
        assert result.effective_batch_size == 8
        assert result.steps == 3 * 32 // 8
        logits.append(predict_logits(model, training.token_ids, config))  # type: ignore[arg-type]

    assert accumulated.accumulation_steps == 2
    # Two micro-batches of 4 make the same steps as one batch of 8: the same model comes out.
    assert torch.allclose(logits[0], logits[1], atol=1e-4)
    assert before is not None
    assert not torch.allclose(before, logits[1], atol=1e-2)


class _Crash(Exception):
    pass


class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainingState) -> None:
        if state.step == self.step:
            raise _Crash(f"killed at step {state.step}")


def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(
    tiny_bert: Path, tmp_path: Path
) -> None:
    texts, y = _topics(16)
    held_texts, held_y = _topics(4)
    config = replace(FAST, epochs=3)

    def run(folder: Path, callbacks: list[Callback]) -> tuple[object, dict[str, torch.Tensor]]:
        training, (model, new) = _examples(tiny_bert, texts, y)
        held_out, _ = _examples(tiny_bert, held_texts, held_y)
        torch.manual_seed(1)  # both runs draw the same dropout masks from here
        result = train(
            model,  # type: ignore[arg-type]
            training,
            held_out,
            config,
            new_parameters=new,  # type: ignore[arg-type]
            checkpoint_dir=folder,
            callbacks=callbacks,
        )
        return result, _weights(model)  # type: ignore[arg-type]

    uninterrupted, expected = run(tmp_path / "a", [])
    with pytest.raises(_Crash):
        run(tmp_path / "b", [_CrashAt(7)])
    checkpoint = load_latest(tmp_path / "b")
    assert checkpoint is not None
    assert checkpoint["state"]["step"] == 6  # the last multiple of checkpoint_every_steps

    resumed, weights = run(tmp_path / "b", [])

    assert resumed.resumed_from_step == 6  # type: ignore[attr-defined]
    assert resumed.steps == uninterrupted.steps  # type: ignore[attr-defined]
    assert resumed.history == uninterrupted.history  # type: ignore[attr-defined]
    for name, weight in expected.items():
        assert torch.equal(weight, weights[name]), name


def test_length_bucketing_reduces_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 128, size=2000)

    bucketed = length_batches(lengths, 32, np.random.default_rng(1), bucket=True)
    plain = length_batches(lengths, 32, np.random.default_rng(1), bucket=False)

    for batches in (bucketed, plain):
        assert sorted(np.concatenate(batches).tolist()) == list(range(2000))
    assert padding_fraction(bucketed, lengths) < 0.1
    assert padding_fraction(plain, lengths) > 0.4


def test_a_checkpoint_write_that_dies_half_way_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_atomic({"state": {"step": 4}}, tmp_path / CHECKPOINT_NAME)

    def dies_half_way(payload: object, handle: object) -> None:
        handle.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="killed"):
        save_atomic({"state": {"step": 6}}, tmp_path / CHECKPOINT_NAME)
    monkeypatch.undo()

    checkpoint = load_latest(tmp_path)
    assert checkpoint is not None
    assert checkpoint["state"]["step"] == 4
    assert [path.name for path in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_a_config_with_an_impossible_value_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        FineTuneConfig(batch_size=0)
    with pytest.raises(ValueError, match="mixed_precision"):
        FineTuneConfig(mixed_precision="fp8")  # type: ignore[arg-type]


def test_each_simulated_round_starts_from_the_previous_rounds_weights(tiny_bert: Path) -> None:
    texts, y = _topics(8)
    factory = WarmStartedFineTuning(replace(FAST, epochs=3, warm_start_epochs=1), tiny_bert)

    first = factory(2).fit(texts[::2], y[::2])
    trained = first.state_dict()
    second = factory(2)

    assert second.init_state is not None
    for name, weight in trained.items():
        assert torch.equal(second.init_state[name], weight), name
    assert second.token_cache is first.token_cache  # texts are tokenized once
    second.fit(texts, y)
    assert second.result is not None
    assert first.result is not None
    assert first.result.epochs_run == 3
    assert second.result.epochs_run == 1
