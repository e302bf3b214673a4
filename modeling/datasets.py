"""Fully labeled datasets for offline simulation: read, index labels, split, embed once.

Files are read with :mod:`labeling.parsers` (CSV, TSV, JSONL), plus one format only
simulations need, ``labeled-lines`` (``LABEL TEXT`` per line, as SST-2 ships). Nothing here
imports Django; the embedding cache is a folder the caller chooses.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from labeling.parsers import Columns, ParseError, Rejected, Row, read_rows
from modeling.core.encoders import ProgressCallback, TextEncoder

LABELED_LINES = "labeled-lines"
FORMATS = ("csv", "tsv", "jsonl", LABELED_LINES)
"""Formats a labeled dataset can be read in; plain ``txt`` has no labels."""

IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class LabeledTexts:
    """The usable rows of a labeled file: one label string per text."""

    texts: list[str]
    labels: list[str]
    dropped: int
    """Rows skipped for an empty text or label, or for holding several labels."""
    rejected: list[Rejected]
    """Records the reader could not use (too few columns, invalid UTF-8 or JSON...)."""


def load_labeled(stream: BinaryIO, fmt: str, columns: Columns) -> LabeledTexts:
    """Read a labeled file; rows without a text or exactly one label are dropped and counted.

    Raises :class:`~labeling.parsers.ParseError` when the file as a whole cannot be read (an
    unknown format, a missing column, a broken quote).
    """
    if fmt == LABELED_LINES:
        if columns.text or columns.label:
            raise ParseError("The labeled-lines format has no columns: each line is LABEL TEXT.")
        records: Iterator[Row | Rejected] = _read_labeled_lines(stream)
    elif fmt in FORMATS:
        records = read_rows(stream, fmt, columns)
    else:
        raise ParseError(f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
    texts: list[str] = []
    labels: list[str] = []
    dropped = 0
    rejected: list[Rejected] = []
    for record in records:
        if isinstance(record, Rejected):
            rejected.append(record)
        elif record.text.strip() and len(record.labels) == 1:
            texts.append(record.text.strip())
            labels.append(record.labels[0])
        else:
            dropped += 1
    return LabeledTexts(texts, labels, dropped, rejected)


def _read_labeled_lines(stream: BinaryIO) -> Iterator[Row | Rejected]:
    """``LABEL TEXT`` per line: the label is everything before the first whitespace."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield Rejected(number, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
            continue
        if line:
            label, _, text = line.partition(" ")
            yield Row(number, text.strip(), labels=[label])


def index_labels(
    *label_lists: Sequence[str],
) -> tuple[list[str], list[npt.NDArray[np.intp]]]:
    """Map label strings to class indices in sorted order of the names.

    Returns the class names (every label seen in any list) and, for each list, its labels
    as an index array, so a train and a test file share one class order.
    """
    names = sorted({label for labels in label_lists for label in labels})
    index = {name: i for i, name in enumerate(names)}
    arrays = [
        np.fromiter((index[x] for x in labels), np.intp, len(labels)) for labels in label_lists
    ]
    return names, arrays


def stratified_split(
    y: npt.NDArray[np.integer], test_fraction: float, rng: np.random.Generator
) -> tuple[IndexArray, IndexArray]:
    """Split row indices into train and test, holding out ``test_fraction`` of every class.

    Each class gives ``round(test_fraction * count)`` rows to the test side, but always keeps
    at least one for training (a class of one stays entirely in train). Both index arrays are
    sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    y = np.asarray(y)
    test_parts = []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        n_test = min(round(test_fraction * len(members)), len(members) - 1)
        test_parts.append(members[:n_test])
    test = (
        np.sort(np.concatenate(test_parts)).astype(np.intp) if test_parts else np.empty(0, np.intp)
    )
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test).astype(np.intp), test


def embedding_cache_key(encoder: TextEncoder, texts: Sequence[str]) -> str:
    """sha256 over the encoder's name, its token limit and every text, in order."""
    digest = hashlib.sha256()
    for part in (encoder.name, str(encoder.max_length), *texts):
        data = part.encode("utf-8")
        # Length-prefixed, so ["ab", "c"] and ["a", "bc"] hash differently.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def embed_cached(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache_dir: Path,
    progress: ProgressCallback | None = None,
) -> tuple[npt.NDArray[np.float32], bool]:
    """Embed ``texts``, reusing ``cache_dir/<key>.npy`` from an earlier run when it exists.

    Returns the ``(len(texts), dimension)`` embeddings and whether they came from the cache.
    A fresh result is written to a temporary file and renamed into place, so an interrupted
    run never leaves a truncated cache entry behind.
    """
    path = cache_dir / f"{embedding_cache_key(encoder, texts)}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (len(texts), encoder.dimension):
            return cached.astype(np.float32, copy=False), True
    embeddings = encoder.encode(texts, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npy.tmp", delete=False) as handle:
        np.save(handle, embeddings)
    os.replace(handle.name, path)
    return embeddings, False
