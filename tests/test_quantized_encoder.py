"""int8 on the CPU: the quantized encoder agrees with fp32, and its vectors are a space apart.

Alice's Topics project is embedded on a worker whose SIFT_ENCODER_PRECISION is int8; Bob
labels. The encoder is the real MiniLM, exported and quantized once for the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.contrib.auth.models import User

from labeling.models import Project, QueueEntry
from labeling.queue import lease_next_item, suggestion_for
from modeling.core.encoders import INT8_MARK, TextEncoder, inference_precision
from modeling.models import EmbeddingChunk
from modeling.services import finetune as finetune_service
from modeling.services.embeddings import SPACE_KEY, base_space, current_space, load_embeddings
from modeling.services.refresh import refresh_model
from tests import test_finetune
from tests.conftest import label, topic_of
from tests.test_finetune import labeled_topics
from tests.test_settings import run_check

TEXTS = [
    "a cat sat on the mat",
    "Shares of Acme rose 4 percent after quarterly earnings beat forecasts.",
    "The Lions beat the Tigers 3-1 in the match, and the coach praised the goalkeeper.",
    "",
    "word " * 400,
]


# The tiny BERT and the fast fine-tune settings of the fine-tuning stories.
tiny_encoder = test_finetune.tiny_encoder
fine_tuning = test_finetune.fine_tuning


@pytest.fixture(scope="module")
def fp32() -> TextEncoder:
    return TextEncoder(device="cpu")


@pytest.fixture(scope="module")
def int8() -> TextEncoder:
    return TextEncoder(precision="int8")


@pytest.fixture
def int8_worker(settings: Any) -> Any:
    settings.SIFT_ENCODER_PRECISION = "int8"
    return settings


def test_int8_embeddings_point_where_fp32_ones_do(fp32: TextEncoder, int8: TextEncoder):
    exact, quantized = fp32.encode(TEXTS, batch_size=2), int8.encode(TEXTS, batch_size=2)

    cosine = (exact * quantized).sum(axis=1)
    # Measured 0.977-0.994 on these texts (the empty and the truncated one lowest).
    assert cosine.min() > 0.96
    assert cosine.mean() > 0.98
    assert not np.allclose(exact, quantized, atol=1e-4)  # it did run in int8
    np.testing.assert_allclose(np.linalg.norm(quantized, axis=1), 1.0, atol=1e-5)


def test_int8_still_tells_topics_apart(int8: TextEncoder):
    sports, finance, kitten = int8.encode(
        ["The Rovers won the match 2-0", "Globex shares fell after earnings", "a kitten on a rug"]
    )
    cat = int8.encode(["a cat sat on the mat"])[0]

    assert cat @ kitten > cat @ sports + 0.3
    assert cat @ kitten > cat @ finance + 0.3


def test_the_int8_encoder_names_its_own_space_and_stays_on_the_cpu(int8: TextEncoder):
    assert int8.name == f"all-MiniLM-L6-v2{INT8_MARK}"
    assert int8.device == torch.device("cpu")
    with pytest.raises(ValueError, match="CPU only"):
        TextEncoder(precision="int8", device="cuda")


def test_auto_is_int8_on_a_cpu_worker_and_fp32_on_a_gpu():
    assert inference_precision("auto", torch.device("cpu")) == "int8"
    assert inference_precision("auto", torch.device("cuda")) == "fp32"
    assert inference_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="auto, fp32 or int8"):
        inference_precision("int4", torch.device("cpu"))


def test_a_bad_precision_setting_stops_sift_at_start_up(tmp_path: Path):
    result = run_check(DEBUG="true", SIFT_VAR_DIR=str(tmp_path), SIFT_ENCODER_PRECISION="int4")

    assert result.returncode != 0
    assert "SIFT_ENCODER_PRECISION must be auto, fp32 or int8, got 'int4'" in result.stderr


def test_int8_and_fp32_workers_embed_into_different_spaces(topics: Project, settings: Any):
    settings.SIFT_ENCODER_PRECISION = "fp32"
    assert base_space(topics).name == "all-MiniLM-L6-v2"
    settings.SIFT_ENCODER_PRECISION = "int8"
    assert current_space(topics).name == "all-MiniLM-L6-v2+int8"
    assert current_space(topics).precision == "int8"


def test_a_project_embedded_in_int8_trains_ranks_and_never_mixes_vectors(
    topics: Project, bob: User, int8_worker: Any
):
    for item in list(topics.items.order_by("id"))[::4]:
        label(topics, bob, item, topic_of(item))

    version = refresh_model(topics.pk, run_id="run-int8")

    assert version is not None
    assert version.encoder == "all-MiniLM-L6-v2+int8"
    assert set(EmbeddingChunk.objects.filter(project=topics).values_list("encoder", flat=True)) == {
        "all-MiniLM-L6-v2+int8"
    }
    next_item = lease_next_item(topics, bob)
    assert next_item is not None
    assert QueueEntry.objects.get(item=next_item).rank == 0
    suggestion = suggestion_for(next_item)
    assert suggestion is not None
    assert [suggested.name for suggested in suggestion[0]] == [topic_of(next_item)]

    # The deployment goes back to fp32: the next retrain embeds every item again, apart.
    int8_worker.SIFT_ENCODER_PRECISION = "fp32"
    label(topics, bob, next_item, topic_of(next_item))
    fp32_version = refresh_model(topics.pk, run_id="run-fp32")

    assert fp32_version is not None
    assert fp32_version.encoder == "all-MiniLM-L6-v2"
    embedded: dict[str, int] = {}
    for chunk in EmbeddingChunk.objects.filter(project=topics):
        embedded[chunk.encoder] = embedded.get(chunk.encoder, 0) + len(chunk.unpack()[0])
    assert embedded == {"all-MiniLM-L6-v2": 24, "all-MiniLM-L6-v2+int8": 24}


def test_an_int8_worker_ranks_with_a_fine_tuned_version_in_its_own_int8_space(
    alice: User, bob: User, tiny_encoder: Path, fine_tuning: Any, int8_worker: Any
):
    project = labeled_topics(alice, bob, tiny_encoder)
    refresh_model(project.pk, run_id="retrain-1")

    version = finetune_service.finetune(project.pk, "task-1")

    assert version is not None
    assert version.promoted
    version.refresh_from_db()
    adapted = f"{tiny_encoder}+int8+finetune-v{version.number}"
    assert version.metrics[SPACE_KEY] == adapted  # every item embedded there, in int8
    ids, _ = load_embeddings(project, adapted)
    assert sorted(ids.tolist()) == sorted(project.items.values_list("pk", flat=True))
    ranked = QueueEntry.objects.filter(project=project, model_version=version.number)
    assert ranked.count() == project.items.filter(answer_count=0).count()
    head = refresh_model(project.pk, run_id="retrain-2")
    assert head is not None
    assert head.encoder == adapted
