"""HeadClassifier: probabilities in project class order, whatever has been labeled so far."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modeling.core.classifiers import HEAD_C, HEAD_C_CANDIDATES, HeadClassifier, choose_C


def blobs(n_per_class: int, n_classes: int, dim: int = 16, seed: int = 0):
    """Well separated unit-vector clusters, one per class; returns (X, y, centers)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + 0.3 * rng.normal(size=(len(y), dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return X.astype(np.float32), y, centers.astype(np.float32)


def test_it_predicts_the_labeled_classes():
    X, y, centers = blobs(20, 3)

    probabilities = HeadClassifier(3).fit(X, y).predict_proba(centers)

    assert probabilities.shape == (3, 3)
    assert probabilities.argmax(axis=1).tolist() == [0, 1, 2]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_class_without_examples_keeps_its_column_with_a_small_probability():
    # The project has 4 classes; only classes 1 and 3 have been labeled so far.
    X, y, centers = blobs(20, 4)
    seen = np.isin(y, [1, 3])

    probabilities = HeadClassifier(4).fit(X[seen], y[seen]).predict_proba(centers)

    assert probabilities.shape == (4, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[1].argmax() == 1
    assert probabilities[3].argmax() == 3
    assert (probabilities[:, [0, 2]] > 0).all()
    assert (probabilities[:, [0, 2]] < 0.01).all()


def test_with_a_single_labeled_class_it_predicts_that_class():
    X, y, centers = blobs(5, 3)
    only_class_2 = y == 2

    probabilities = HeadClassifier(3).fit(X[only_class_2], y[only_class_2]).predict_proba(centers)

    assert probabilities.argmax(axis=1).tolist() == [2, 2, 2]
    assert (probabilities > 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_two_class_probabilities_match_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    X, y, _ = blobs(30, 2)
    head = HeadClassifier(2, smoothing=0.0).fit(X, y)
    ours = head.predict_proba(X)
    reference = LogisticRegression(C=head.fitted_C, max_iter=200).fit(X, y).predict_proba(X)

    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_multi_label_gives_each_label_its_own_probability():
    # Label 0 is "near center 0", label 1 is "near center 1"; label 2 was never applied and
    # label 3 was applied to everything, so neither can be learned yet.
    X, y, centers = blobs(20, 2)
    indicators = np.column_stack([y == 0, y == 1, np.zeros_like(y), np.ones_like(y)]).astype(int)

    probabilities = HeadClassifier(4, multi_label=True).fit(X, indicators).predict_proba(centers)

    assert probabilities.shape == (2, 4)
    assert probabilities[0, 0] > 0.8 > 0.2 > probabilities[0, 1]
    assert probabilities[1, 1] > 0.8 > 0.2 > probabilities[1, 0]
    np.testing.assert_allclose(probabilities[:, 2], 1 / 42)  # (0 + 1) / (40 + 2)
    np.testing.assert_allclose(probabilities[:, 3], 41 / 42)


def test_it_refuses_class_indices_outside_the_project():
    X, _, _ = blobs(2, 2)

    with pytest.raises(ValueError, match="range"):
        HeadClassifier(2).fit(X, np.array([0, 1, 2, 0]))


def test_predicting_before_fitting_is_an_error():
    with pytest.raises(RuntimeError):
        HeadClassifier(2).predict_proba(np.zeros((1, 4), dtype=np.float32))


def test_it_trains_on_1000_and_scores_100k_embeddings_quickly():
    rng = np.random.default_rng(0)
    X, y, _ = blobs(250, 4, dim=384)
    pool = rng.normal(size=(100_000, 384)).astype(np.float32)

    started = time.perf_counter()
    classifier = HeadClassifier(4).fit(X, y)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    probabilities = classifier.predict_proba(pool)
    predict_seconds = time.perf_counter() - started

    assert probabilities.shape == (100_000, 4)
    assert fit_seconds < 1.0
    assert predict_seconds < 1.0


def _clusters(n_per_class: int, n_classes: int, *, noise: float, flipped: float, seed: int):
    """Unit vectors around one random center per class, in MiniLM's 384 dimensions; a share
    ``flipped`` of the labels is replaced by a random class (annotators who disagree)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, 384))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + noise * rng.normal(size=(len(y), 384))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(rng.random(len(y)) < flipped, rng.integers(0, n_classes, len(y)), y)
    return X.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_head_regularizes_fine_classes_less_than_noisy_broad_ones(seed):
    # 50 intents with 3 labels each need sharp weights; two broad classes whose labels
    # disagree 40% of the time need a firm hand. One fixed C cannot serve both.
    many_X, many_y = _clusters(3, 50, noise=0.8, flipped=0.0, seed=seed)
    noisy_X, noisy_y = _clusters(60, 2, noise=1.0, flipped=0.4, seed=seed)

    many = HeadClassifier(50).fit(many_X, many_y)
    noisy = HeadClassifier(2).fit(noisy_X, noisy_y)

    assert many.fitted_C == choose_C(many_X, many_y, 50) == max(HEAD_C_CANDIDATES)
    assert noisy.fitted_C == choose_C(noisy_X, noisy_y, 2) == min(HEAD_C_CANDIDATES)


def test_with_few_labels_or_a_given_C_the_head_does_not_choose():
    X, y, _ = blobs(10, 2)  # 20 labels: too few folds' worth to choose from

    assert HeadClassifier(2).fit(X, y).fitted_C == HEAD_C
    assert HeadClassifier(2, C=0.5).fit(X, y).fitted_C == 0.5
    many_X, many_y = _clusters(3, 50, noise=0.8, flipped=0.0, seed=0)
    assert HeadClassifier(50, C=1.0).fit(many_X, many_y).fitted_C == 1.0


def test_the_same_labels_always_give_the_same_choice():
    X, y = _clusters(4, 30, noise=0.8, flipped=0.1, seed=3)

    assert len({choose_C(X, y, 30) for _ in range(3)}) == 1
