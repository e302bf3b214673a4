"""Examples and their batches: cached tokenization, length buckets, padding, the DataLoader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader

from modeling.core.finetuning.config import FineTuneConfig

TokenIds = npt.NDArray[np.int32]


class TokenCache:
    """Token ids per text, computed once: later rounds and resumed runs only tokenize new texts.

    Ids are kept as compact int32 arrays (a 100,000-item pool at 128 tokens is about 50 MB).
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._ids: dict[str, TokenIds] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def encode(self, texts: Sequence[str]) -> list[TokenIds]:
        missing = list(dict.fromkeys(text for text in texts if text not in self._ids))
        if missing:
            encoded = self.tokenizer(missing, truncation=True, max_length=self.max_length)
            for text, ids in zip(missing, encoded["input_ids"], strict=True):
                self._ids[text] = np.asarray(ids, dtype=np.int32)
        return [self._ids[text] for text in texts]


def length_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    batch_size: int,
    rng: np.random.Generator,
    *,
    bucket: bool = True,
    pool_batches: int = 50,
) -> list[npt.NDArray[np.intp]]:
    """Split example indices into shuffled batches; with ``bucket``, of similar lengths.

    Bucketing shuffles, takes ``pool_batches * batch_size`` examples at a time, sorts them by
    length and cuts them into batches, then shuffles the batch order: batches stay random
    from epoch to epoch, but a short text rarely waits for a long one in the same batch.
    """
    order = rng.permutation(len(lengths))
    if bucket:
        lengths = np.asarray(lengths)
        pool = batch_size * pool_batches
        order = (
            np.concatenate(
                [
                    chunk[np.argsort(-lengths[chunk], kind="stable")]
                    for chunk in np.split(order, range(pool, len(order), pool))
                ]
            )
            if len(order)
            else order
        )
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [np.asarray(batch, dtype=np.intp) for batch in batches]


def padding_fraction(
    batches: Sequence[npt.NDArray[np.intp]], lengths: npt.NDArray[np.integer]
) -> float:
    """Share of the padded token positions that are padding (wasted compute)."""
    padded = sum(len(batch) * int(lengths[batch].max()) for batch in batches if len(batch))
    real = sum(int(lengths[batch].sum()) for batch in batches)
    return 1.0 - real / padded if padded else 0.0


class Collate:
    """Pads a batch of token-id arrays; picklable, so DataLoader workers can run it."""

    def __init__(
        self,
        token_ids: Sequence[TokenIds],
        targets: npt.NDArray[np.integer] | None,
        pad_id: int,
        multi_label: bool,
    ) -> None:
        self.token_ids = token_ids
        self.targets = targets
        self.pad_id = pad_id
        self.multi_label = multi_label

    def __call__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = [self.token_ids[i] for i in indices]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.from_numpy(row.astype(np.int64))
            attention_mask[r, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.targets is not None:
            picked = self.targets[np.asarray(indices)]
            batch["labels"] = (
                torch.as_tensor(picked, dtype=torch.float32)
                if self.multi_label
                else torch.as_tensor(picked, dtype=torch.long)
            )
        return batch


def batch_loader(
    collate: Collate,
    batches: Sequence[npt.NDArray[np.intp]],
    config: FineTuneConfig,
    device: torch.device,
) -> DataLoader[dict[str, torch.Tensor]]:
    """Batches in the given order; on a GPU, collated ahead by workers into pinned memory."""
    workers = config.num_workers
    if workers is None:
        workers = 2 if device.type == "cuda" else 0
    workers = min(workers, len(batches))
    return DataLoader(
        range(len(collate.token_ids)),  # type: ignore[arg-type]
        batch_sampler=[list(map(int, b)) for b in batches],
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=config.prefetch_factor if workers else None,
        pin_memory=device.type == "cuda",
        # Its own generator: an iterator drawing its seed from the global RNG would shift the
        # dropout masks of a resumed run away from those of the uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed),
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``; the copy is asynchronous from pinned memory."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


@dataclass(frozen=True)
class Examples:
    """Tokenized examples and their targets (class indices, or an indicator matrix)."""

    token_ids: list[TokenIds]
    targets: npt.NDArray[np.integer]

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.fromiter((len(ids) for ids in self.token_ids), dtype=np.int64)


def validation_split(
    targets: npt.NDArray[np.integer], fraction: float, minimum: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp] | None]:
    """Training and held-out rows; no held-out rows when they would be fewer than ``minimum``.

    Single-label splits are stratified, and a class with one example stays in training.
    """
    n = len(targets)
    if int(n * fraction) < minimum:
        return np.arange(n, dtype=np.intp), None
    held: list[int] = []
    if targets.ndim == 1:
        for value in np.unique(targets):
            rows = rng.permutation(np.flatnonzero(targets == value))
            held.extend(rows[: int(len(rows) * fraction)].tolist())
    else:
        held = rng.permutation(n)[: int(n * fraction)].tolist()
    if len(held) < minimum:
        return np.arange(n, dtype=np.intp), None
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    return np.flatnonzero(~is_held).astype(np.intp), np.flatnonzero(is_held).astype(np.intp)
