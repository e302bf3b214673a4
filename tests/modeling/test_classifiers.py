"""HeadClassifier: probabilities in project class order, whatever has been labeled so far."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modeling.core.classifiers import HeadClassifier


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
    ours = HeadClassifier(2, smoothing=0.0).fit(X, y).predict_proba(X)
    reference = LogisticRegression(C=3.0, max_iter=200).fit(X, y).predict_proba(X)

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
