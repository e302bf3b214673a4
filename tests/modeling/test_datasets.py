"""Labeled datasets for simulation: reading, label indices, the held-out split, the cache."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from labeling.parsers import Columns, ParseError
from modeling.datasets import (
    embed_cached,
    embedding_cache_key,
    index_labels,
    load_labeled,
    stratified_split,
)


def test_it_reads_labeled_lines_as_sst2_ships_them():
    data = load_labeled(
        BytesIO(b"1 a stirring , funny film\n0 apparently reassembled\n\n1\n0 \xff bad\n"),
        "labeled-lines",
        Columns(),
    )

    assert data.texts == ["a stirring , funny film", "apparently reassembled"]
    assert data.labels == ["1", "0"]
    assert data.dropped == 1  # "1" alone has no text
    assert [(r.line, r.reason[:17]) for r in data.rejected] == [(5, "not valid UTF-8 (")]


def test_labeled_lines_refuse_columns():
    with pytest.raises(ParseError, match="no columns"):
        load_labeled(BytesIO(b"1 text\n"), "labeled-lines", Columns(label="2"))


def test_it_joins_text_columns_and_drops_rows_without_a_label():
    data = load_labeled(
        BytesIO(b'"3","Fears for pension","Unions say"\n"","Untitled","no class"\n"1","x"\n'),
        "csv",
        Columns(text=["2", "3"], label="1", has_header=False),
    )

    assert data.texts == ["Fears for pension Unions say"]
    assert data.labels == ["3"]
    assert data.dropped == 1
    assert [r.line for r in data.rejected] == [3]


def test_rows_with_several_labels_are_dropped():
    data = load_labeled(
        BytesIO(b"text\tlabel\nfree prize\tspam\nhello\tham|spam\n"), "tsv", Columns()
    )

    assert data.labels == ["spam"]
    assert data.dropped == 1


def test_labels_are_indexed_in_sorted_order_across_files():
    names, (train_y, test_y) = index_labels(["spam", "ham", "spam"], ["ham", "other"])

    assert names == ["ham", "other", "spam"]
    assert train_y.tolist() == [2, 0, 2]
    assert test_y.tolist() == [0, 1]


def test_the_split_holds_out_the_same_share_of_every_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20 + [3])

    train, test = stratified_split(y, 0.2, np.random.default_rng(0))

    assert np.bincount(y[test], minlength=4).tolist() == [10, 6, 4, 0]
    assert sorted([*train, *test]) == list(range(len(y)))
    again, _ = stratified_split(y, 0.2, np.random.default_rng(0))
    assert again.tolist() == train.tolist()


class CountingEncoder:
    """Stands in for TextEncoder: deterministic vectors, and a count of encoded texts."""

    name = "counting"
    max_length = 256
    dimension = 3

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts, progress=None):
        self.encoded += len(texts)
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_embeddings_are_computed_once_per_encoder_and_texts(tmp_path: Path):
    encoder = CountingEncoder()

    first, first_cached = embed_cached(encoder, ["a", "bb"], tmp_path)
    second, second_cached = embed_cached(encoder, ["a", "bb"], tmp_path)
    embed_cached(encoder, ["a", "bb", "c"], tmp_path)

    assert (first_cached, second_cached) == (False, True)
    np.testing.assert_array_equal(first, second)
    assert encoder.encoded == 5
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_the_cache_key_tells_texts_and_encoders_apart():
    encoder = CountingEncoder()
    key = embedding_cache_key(encoder, ["ab", "c"])

    assert key != embedding_cache_key(encoder, ["a", "bc"])
    encoder.name = "other"
    assert key != embedding_cache_key(encoder, ["ab", "c"])
