"""Embedding a project's items once per encoder, stored in chunks every worker can read."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from django.conf import settings

from labeling.models import Item, Project
from modeling.core.checkpoints import load
from modeling.core.encoders import (
    DEFAULT_ENCODER_NAME,
    INT8_MARK,
    PRECISIONS,
    Precision,
    TextEncoder,
    default_device,
    default_encoder_path,
    inference_precision,
)
from modeling.models import ADAPTED_SPACE_MARK, EmbeddingChunk, ModelVersion

CHUNK_SIZE = 512
# Projects whose embeddings a worker process keeps in memory; the longest unused goes first.
CACHED_PROJECTS = 8

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Space:
    """An embedding space: the project's encoder as it came, or as a fine-tuned version left
    it (its weights), at a precision. Embeddings are stored per space, so nothing mixes two:
    an int8 space's name carries INT8_MARK (``all-MiniLM-L6-v2+int8+finetune-v7``)."""

    name: str
    path: str
    weights: str = ""
    precision: Precision = "fp32"


def encoder_precision() -> Precision:
    """This worker's precision for embedding: SIFT_ENCODER_PRECISION on its device."""
    return inference_precision(settings.SIFT_ENCODER_PRECISION, default_device())


def base_space(project: Project, precision: Precision | None = None) -> Space:
    precision = precision or encoder_precision()
    name = project.encoder.strip() or DEFAULT_ENCODER_NAME
    mark = INT8_MARK if precision == "int8" else ""
    return Space(f"{name}{mark}", project.encoder.strip(), precision=precision)


def adapted_space(
    project: Project, version: ModelVersion, precision: Precision | None = None
) -> Space:
    """The space of a fine-tuned version's own encoder."""
    base = base_space(project, precision)
    return Space(
        f"{base.name}{ADAPTED_SPACE_MARK}{version.number}",
        base.path,
        version.weights_path,
        base.precision,
    )


def current_space(project: Project) -> Space:
    """Where the head and the strategies work: the newest promoted fine-tuned version whose
    encoder has embedded every item, else the encoder as it came."""
    adapted = (
        project.model_versions.filter(kind="finetune", promoted=True, metrics__has_key=SPACE_KEY)
        .exclude(weights_path="")
        .first()
    )
    return adapted_space(project, adapted) if adapted is not None else base_space(project)


# A fine-tuned version's metrics hold this key once its encoder has embedded every item.
SPACE_KEY = "embedding_space"


def encoder_name(project: Project) -> str:
    return current_space(project).name


@lru_cache(maxsize=2)
def _load_encoder(space: Space) -> TextEncoder:
    state = load(Path(space.weights)) if space.weights else None
    if space.weights and state is None:
        raise FileNotFoundError(f"the weights of {space.name} are gone: {space.weights}")
    return TextEncoder(
        Path(space.path) if space.path else None,
        name=space.name,
        state=state,
        precision=space.precision,
        int8_file=_int8_file(space) if space.precision == "int8" else None,
    )


def _int8_file(space: Space) -> Path:
    """Where a worker keeps the space's int8 model, named after its weights (folder and
    fine-tuned file, with their times), so every worker process after the first loads it."""
    folder = Path(space.path) if space.path else default_encoder_path()
    sources = [folder / "config.json", folder / "model.safetensors"]
    sources += [Path(space.weights)] if space.weights else []
    digest = hashlib.sha256(space.name.encode())
    for source in sources:
        stamp = source.stat().st_mtime_ns if source.exists() else 0
        digest.update(f"|{source.resolve()}|{stamp}".encode())
    return Path(settings.VAR_DIR) / "cache" / "int8" / f"{digest.hexdigest()[:32]}.onnx"


def encoder_for(project: Project, space: Space | None = None) -> TextEncoder:
    return _load_encoder(space or current_space(project))


def adopt_space(project: Project, version: ModelVersion, space: Space) -> None:
    """Every item has an embedding in ``space``: the head moves there (unless a newer version
    did), and older versions' spaces (a copy of every vector each) are dropped."""
    metrics = {**version.stored_metrics(), SPACE_KEY: space.name}
    type(version).objects.filter(pk=version.pk).update(metrics=metrics)
    version.metrics = metrics
    older = project.model_versions.filter(kind="finetune", number__lt=version.number)
    EmbeddingChunk.objects.filter(
        project=project,
        encoder__in=[adapted_space(project, v, p).name for v in older for p in PRECISIONS],
    ).delete()


_Cached = tuple[frozenset[int], npt.NDArray[np.int64], npt.NDArray[np.float32]]
_cache: OrderedDict[tuple[int, str], _Cached] = OrderedDict()


def load_embeddings(
    project: Project, encoder: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """All stored embeddings of the project for one encoder, as (item ids, vectors).

    Chunks already read by this process are kept in memory (for the CACHED_PROJECTS most
    recently used projects); only new ones are fetched.
    """
    key = (project.pk, encoder)
    chunk_ids = frozenset(
        EmbeddingChunk.objects.filter(project=project, encoder=encoder).values_list("pk", flat=True)
    )
    cached = _cache.get(key)
    if cached is not None and cached[0] == chunk_ids:
        _cache.move_to_end(key)
        return cached[1], cached[2]
    known = cached[0] if cached is not None and cached[0] <= chunk_ids else frozenset()
    parts_ids = [cached[1]] if known and cached else []
    parts_vectors = [cached[2]] if known and cached else []
    for chunk in EmbeddingChunk.objects.filter(pk__in=chunk_ids - known).order_by("pk"):
        chunk_item_ids, vectors = chunk.unpack()
        parts_ids.append(chunk_item_ids)
        parts_vectors.append(vectors)
    if parts_ids:
        ids = np.concatenate(parts_ids)
        vectors = np.concatenate(parts_vectors).astype(np.float32, copy=False)
    else:
        ids, vectors = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    _cache[key] = (chunk_ids, ids, vectors)
    _cache.move_to_end(key)
    while len(_cache) > CACHED_PROJECTS:
        _cache.popitem(last=False)
    return ids, vectors


def ensure_embeddings(
    project: Project,
    progress: Progress | None = None,
    space: Space | None = None,
    only: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Embed the project's items that have no embedding yet in ``space`` (the current one by
    default); return those of current items (of ``only`` these, when given)."""
    space = space or current_space(project)
    name = space.name
    ids, vectors = load_embeddings(project, name)
    items = Item.objects.filter(project=project)
    if only is not None:
        items = items.filter(pk__in=only.tolist())
    current = list(items.values_list("id", flat=True))
    have = set(ids.tolist())
    missing = [item_id for item_id in current if item_id not in have]
    if missing:
        encoder = encoder_for(project, space)
        for start in range(0, len(missing), CHUNK_SIZE):
            if progress is not None:
                progress(start, len(missing))
            batch = missing[start : start + CHUNK_SIZE]
            texts = dict(Item.objects.filter(pk__in=batch).values_list("id", "text"))
            batch = [item_id for item_id in batch if item_id in texts]
            if batch:
                embedded = encoder.encode([texts[item_id] for item_id in batch])
                EmbeddingChunk.pack(project, name, batch, embedded).save()
        if progress is not None:
            progress(len(missing), len(missing))
        ids, vectors = load_embeddings(project, name)
    keep = np.isin(ids, np.array(current, dtype=np.int64))
    if not keep.all():
        ids, vectors = ids[keep], vectors[keep]
    return ids, vectors
