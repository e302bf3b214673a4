"""Stopping advice from literal stop-set predictions of successive versions."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.core.stopping import (
    CONSIDER_STOPPING,
    KEEP_LABELING,
    StopSetPredictions,
    mean_uncertainty,
    stop_set_hash,
    stop_set_predictions,
    stopping_advice,
)

SETTLED = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
# One item flips: p_o = 0.9, p_e = 0.5 * 0.4 + 0.5 * 0.6 = 0.5, kappa = 0.4 / 0.5 = 0.8.
ONE_FLIPPED = [1, 0, 0, 0, 0, 1, 1, 1, 1, 1]


def version(
    number: int, predictions: list[int], ids_hash: str = "set-a", uncertainty: float = 0.1
) -> StopSetPredictions:
    return StopSetPredictions(number, predictions, ids_hash, uncertainty)


def test_four_versions_that_agree_advise_considering_a_stop() -> None:
    versions = [version(n, SETTLED, uncertainty=0.4 - 0.1 * n) for n in range(1, 5)]

    advice = stopping_advice(versions)

    assert advice.decision == CONSIDER_STOPPING
    assert advice.kappas == [1.0, 1.0, 1.0]
    assert advice.stable == 3
    assert advice.reason == (
        "3 of 3 stable versions in a row (predictions on the stop set agree with the version "
        "before, kappa ≥ 0.99): v2 to v4; mean uncertainty on unlabeled items 0.00 (v1: 0.30), "
        "0 is certain"
    )


def test_a_late_change_keeps_labeling_and_names_the_versions() -> None:
    versions = [version(1, SETTLED), version(2, SETTLED), version(3, SETTLED)]
    versions.append(version(4, ONE_FLIPPED))

    advice = stopping_advice(versions)

    assert advice.decision == KEEP_LABELING
    assert advice.kappas == pytest.approx([1.0, 1.0, 0.8])
    assert advice.stable == 0
    assert advice.reason.startswith("0 of 3 stable versions in a row")
    assert "; v4 changed predictions from v3 (kappa 0.80)" in advice.reason


def test_only_the_last_four_versions_count() -> None:
    versions = [version(1, ONE_FLIPPED)] + [version(n, SETTLED) for n in range(2, 6)]

    advice = stopping_advice(versions)

    assert advice.decision == CONSIDER_STOPPING
    assert ": v3 to v5" in advice.reason


def test_three_versions_are_not_enough() -> None:
    advice = stopping_advice([version(n, SETTLED) for n in range(1, 4)])

    assert advice.decision == KEEP_LABELING
    assert advice.stable == 2
    assert advice.reason.startswith(
        "2 of 3 stable versions in a row (predictions on the stop set agree with the version "
        "before, kappa ≥ 0.99); mean uncertainty"
    )
    assert advice.kappas == [1.0, 1.0]


def test_stable_versions_after_a_change_are_counted_from_the_change() -> None:
    versions = [version(1, SETTLED), *(version(n, ONE_FLIPPED) for n in range(2, 5))]

    advice = stopping_advice(versions)

    assert advice.decision == KEEP_LABELING
    assert advice.reason.startswith("2 of 3 stable versions in a row")
    assert "; v2 changed predictions from v1 (kappa 0.80)" in advice.reason


def test_a_new_stop_set_starts_the_count_again() -> None:
    versions = [version(n, SETTLED) for n in range(1, 4)]
    versions += [version(4, SETTLED, "set-b"), version(5, SETTLED, "set-b")]

    advice = stopping_advice(versions)

    assert advice.decision == KEEP_LABELING
    assert advice.reason.startswith("1 of 3 stable versions in a row")
    assert "the stop set changed at v4, so the count started again" in advice.reason


def test_a_version_without_a_stop_set_starts_the_count_again() -> None:
    versions = [version(1, SETTLED), None, *(version(n, SETTLED) for n in range(3, 6))]

    assert stopping_advice(versions).reason.startswith("2 of 3 stable versions in a row")
    assert stopping_advice([]).reason == (
        "0 of 3 stable versions in a row (predictions on the stop set agree with the version "
        "before, kappa ≥ 0.99); no version has predicted the stop set yet"
    )


def test_a_new_stop_set_says_the_count_started_again() -> None:
    advice = stopping_advice([version(1, SETTLED), version(2, SETTLED, "set-b")])

    assert "0 of 3 stable versions" in advice.reason
    assert "the stop set changed at v2, so the count started again" in advice.reason


def test_a_version_reads_its_stop_set_from_its_metrics() -> None:
    metrics = {"stop_set": {"ids_hash": "abc", "predictions": [1, 0]}, "pool_uncertainty": 0.25}

    assert StopSetPredictions.from_metrics(7, metrics) == StopSetPredictions(7, [1, 0], "abc", 0.25)
    assert StopSetPredictions.from_metrics(7, {"cv_accuracy": 0.9}) is None


def test_predictions_and_uncertainty_from_probabilities() -> None:
    single = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    multi = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.3]])

    assert stop_set_predictions(single) == [0, 2]
    assert stop_set_predictions(multi, multi_label=True) == [0b101, 0]
    assert mean_uncertainty(single) == pytest.approx((0.3 + 0.4) / 2)
    assert mean_uncertainty(multi, multi_label=True) == pytest.approx((0.4 + 0.4) / 2)
    assert mean_uncertainty(np.zeros((0, 3))) is None


def test_the_stop_set_hash_follows_the_ids_and_their_order() -> None:
    ids = np.array([3, 1, 2])

    assert stop_set_hash(ids) == stop_set_hash(np.array([3, 1, 2]))
    assert stop_set_hash(ids) != stop_set_hash(np.array([1, 2, 3]))
