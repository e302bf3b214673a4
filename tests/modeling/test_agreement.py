"""Cohen's kappa and Krippendorff's alpha on literal ratings with values worked out by hand."""

from __future__ import annotations

import pytest

from modeling.core.agreement import cohen_kappa, krippendorff_alpha


def test_kappa_of_identical_ratings_is_one() -> None:
    ratings = ["spam", "ham", "ham", "spam", "eggs"]
    assert cohen_kappa(ratings, list(ratings)) == pytest.approx(1.0)


def test_kappa_of_the_textbook_grant_example() -> None:
    """50 proposals; both say yes to 20, A yes/B no 5, A no/B yes 10, both no 15.

    p_o = (20 + 15) / 50 = 0.7. A says yes to 25/50, B to 30/50, so
    p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 and kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    """
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_kappa_below_chance_is_negative() -> None:
    """Two raters who always disagree on a balanced pair: p_o = 0, p_e = 0.5, kappa = -1."""
    assert cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(-1.0)


def test_kappa_with_a_single_shared_category_is_one_not_nan() -> None:
    # p_e = 1 makes the formula 0/0; both raters agreed on every item.
    assert cohen_kappa(["pos"] * 6, ["pos"] * 6) == 1.0


def test_kappa_accepts_tuples_as_multi_label_categories() -> None:
    """Items 1-3 agree, item 4 differs: p_o = 3/4.

    A: (x,) (x, y) (y,) (x,)   B: (x,) (x, y) (y,) (y,)
    A's shares: (x,) 1/2, (x, y) 1/4, (y,) 1/4; B's: (x,) 1/4, (x, y) 1/4, (y,) 1/2.
    p_e = 1/8 + 1/16 + 1/8 = 5/16, kappa = (12/16 - 5/16) / (11/16) = 7/11.
    """
    a = [("x",), ("x", "y"), ("y",), ("x",)]
    b = [("x",), ("x", "y"), ("y",), ("y",)]
    assert cohen_kappa(a, b) == pytest.approx(7 / 11)


def test_kappa_refuses_uneven_or_empty_ratings() -> None:
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        cohen_kappa([], [])


def test_alpha_of_a_small_case_worked_by_hand() -> None:
    """Items [a, a], [a, b], [b, b]: each pair of a 2-rating item counts 1/(2-1) = 1.

    Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6.
    alpha = 1 - (n - 1) * (o_ab + o_ba) / (n^2 - n_a^2 - n_b^2) = 1 - 5 * 2 / 18 = 4/9.
    """
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)


def test_alpha_of_krippendorffs_own_example_with_missing_ratings() -> None:
    """Four observers, twelve units, some ratings missing (Krippendorff 2011, "Computing
    Krippendorff's Alpha-Reliability", the nominal case: alpha = 0.743).
    """
    units = [
        [1, 1, 1],
        [2, 2, 3, 2],
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
        [1, 2, 3, 4],
        [4, 4, 4, 4],
        [1, 1, 2, 1],
        [2, 2, 2, 2],
        [5, 5, 5],
        [1, 1],
        [3],  # one rating: cannot be paired, ignored
    ]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_alpha_of_the_three_coder_example_on_wikipedia() -> None:
    """Three coders, fifteen units; the nominal alpha is 0.691 in the published walk-through."""
    units = [[1], [], [2, 2], [1, 1], [3, 3], [3, 3, 4], [4, 4, 4], [1, 3], [2, 2]]
    units += [[1, 1], [1, 1], [3, 3], [3, 3], [], [3, 4]]
    assert krippendorff_alpha(units) == pytest.approx(0.691, abs=5e-4)


def test_alpha_of_two_raters_matches_perfect_and_single_category_cases() -> None:
    assert krippendorff_alpha([["a", "a"], ["b", "b", "b"], ["c", "c"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["pos", "pos"], ["pos", "pos", "pos"]]) == 1.0


def test_alpha_refuses_data_with_nothing_to_pair() -> None:
    with pytest.raises(ValueError, match="two or more ratings"):
        krippendorff_alpha([["a"], [], ["b"]])
