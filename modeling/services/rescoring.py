"""Ranking the queue with a promoted fine-tuned version: re-embed every item in its adapted
space, score the pool, write the queue once.

A large pool is split into shards (as many as ``SIFT_SCORING_SHARD_ITEMS`` items each would
make, cut to about equal work by the texts' lengths), each a task on the fine-tuning queue, so
every worker there takes a part. Each shard stores its scores in the database; the shard that
finishes last ranks the whole pool and writes the queue. Until then
the queue stays as it was: a half-scored pool never reaches annotators. A shard whose worker
dies is redelivered (its task is acknowledged late), a shard the broker lost is sent again by
the workers' sweep (``resend_lost_shards``), and running one twice changes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Length
from django.utils import timezone

from config.celery import enqueue
from labeling.models import Item, Label, Project
from modeling.core.energy import EnergyMeter
from modeling.core.finetuning import FineTunedClassifier
from modeling.core.sharding import balanced_slices
from modeling.core.strategies import BaldStrategy, QueryStrategy
from modeling.models import ModelState, ModelVersion, ScoringShard
from modeling.services.embeddings import Space, adapted_space, adopt_space, ensure_embeddings
from modeling.services.heartbeat import Heartbeat
from modeling.services.queue_ranking import rank_queue, strategy_for
from modeling.services.queue_writer import replace_queue
from modeling.services.training_data import pool_rows, training_set
from modeling.services.transformer import KIND, load_version

log = logging.getLogger(__name__)

SCORE_SHARD = "modeling.tasks.score_shard"


def rescore_pool(project_id: int, version_number: int) -> None:
    """Score the unlabeled pool with a promoted fine-tuned version and rank the queue by it.

    In this worker for a pool of one shard (and for BALD, whose MC-dropout samples rank the
    pool as a whole), else as shard tasks. Skipped when a newer promoted version has ranked
    the queue meanwhile. Until it is done, queue entries from an older version show as stale.
    """
    project, version = _promoted(project_id, version_number)
    if project is None or version is None:
        return
    rows = list(
        Item.objects.filter(project=project).order_by("pk").values_list("pk", Length("text"))
    )
    size = settings.SIFT_SCORING_SHARD_ITEMS
    if len(rows) <= size or project.strategy == "bald":
        _rescore_whole(project, version)
        return
    ids = [pk for pk, _ in rows]
    # As many shards as SIFT_SCORING_SHARD_ITEMS gives, cut to about equal work each.
    parts = balanced_slices([length for _, length in rows], math.ceil(len(rows) / size))
    chunks = [ids[part] for part in parts]
    for index, chunk in enumerate(chunks):
        ScoringShard.objects.get_or_create(
            project=project,
            version_number=version.number,
            index=index,
            defaults={"total": len(chunks), "item_ids": np.asarray(chunk, dtype="<i8").tobytes()},
        )
    unfinished = ScoringShard.objects.filter(
        project=project, version_number=version.number, finished_at=None
    )
    indexes = list(unfinished.values_list("index", flat=True))
    unfinished.update(sent_at=timezone.now(), sends=F("sends") + 1)
    for index in indexes:
        _send_shard(project.pk, version.number, index)
    log.info("Project %s: v%s scores its pool in %s shards", project.pk, version, len(chunks))


def score_shard(project_id: int, version_number: int, index: int) -> None:
    """Embed and score one shard's items; the last shard to finish writes the queue."""
    project, version = _promoted(project_id, version_number)
    shard = ScoringShard.objects.filter(
        project_id=project_id, version_number=version_number, index=index
    ).first()
    if project is None or version is None or shard is None:
        return
    if shard.finished_at is None:
        with Heartbeat(partial(_beat, shard.pk), name=f"shard-{shard.pk}-heartbeat"):
            _score(project, version, shard)
    _rank_when_complete(project, version)


def resend_lost_shards() -> list[tuple[int, int, int]]:
    """Send again the shards whose worker died or whose message the broker lost (see
    ``ScoringShard.objects.take_lost``); the sweep every worker runs calls this."""
    lost = ScoringShard.objects.take_lost()
    for project_id, version_number, index in lost:
        log.warning("Sending shard %s of project %s v%s again", index, project_id, version_number)
        _send_shard(project_id, version_number, index)
    return lost


def _send_shard(project_id: int, version_number: int, index: int) -> None:
    """Send one shard's task; the caller stamped the shard as sent."""
    enqueue(SCORE_SHARD, project_id, version_number, index, on_broker_down=_broker_down)


def _beat(shard_pk: int) -> None:
    ScoringShard.objects.filter(pk=shard_pk, finished_at=None).update(heartbeat_at=timezone.now())


def _score(project: Project, version: ModelVersion, shard: ScoringShard) -> None:
    """Embed and score the shard's items and store their probabilities in it."""
    _beat(shard.pk)
    started = time.perf_counter()
    labels = list(project.labels.all())
    classifier = load_version(project, version, len(labels))
    space = _space(project, version)
    ids, vectors = ensure_embeddings(project, space=space, only=shard.ids())
    pool = pool_rows(project, ids)
    pool_ids = ids[pool]
    if not len(pool_ids):
        probabilities = np.zeros((0, len(labels)))
    elif space is not None:
        probabilities = classifier.predict_proba_from_embeddings(vectors[pool])
    else:
        texts = dict(Item.objects.filter(pk__in=pool_ids.tolist()).values_list("id", "text"))
        pool_ids = np.array([i for i in pool_ids.tolist() if i in texts], dtype=np.int64)
        pool_texts = np.array([texts[int(i)] for i in pool_ids], dtype=object)
        probabilities = classifier.predict_proba(pool_texts)
    ScoringShard.objects.filter(pk=shard.pk, finished_at=None).update(
        scored_ids=pool_ids.astype("<i8").tobytes(),
        probabilities=np.ascontiguousarray(probabilities, dtype="<f8").tobytes(),
        finished_at=timezone.now(),
    )
    seconds = time.perf_counter() - started
    # Shards finish side by side on several workers: add in the database, not in this copy.
    ModelVersion.objects.filter(pk=version.pk).update(score_seconds=F("score_seconds") + seconds)
    log.info(
        "Project %s: shard %s/%s of v%s scored in %.1f s",
        project.pk,
        shard.index + 1,
        shard.total,
        version.number,
        seconds,
    )


def _rank_when_complete(project: Project, version: ModelVersion) -> None:
    """When every shard has its scores, take them (once: the shards are deleted in the same
    transaction) and write the queue."""
    with transaction.atomic():
        ModelState.objects.locked(project)
        shards = list(
            ScoringShard.objects.select_for_update().filter(
                project=project, version_number=version.number
            )
        )
        if not shards or any(shard.finished_at is None for shard in shards):
            return
        scores = [shard.scores() for shard in shards]
        ScoringShard.objects.filter(pk__in=[shard.pk for shard in shards]).delete()
    space = _space(project, version)
    if space is not None:
        adopt_space(project, version, space)
    scored_ids = np.concatenate([ids for ids, _ in scores])
    labels = list(project.labels.all())
    probabilities = (
        np.concatenate([p for _, p in scores if len(p)]) if len(scored_ids) else np.zeros((0, 0))
    )
    ids, vectors = ensure_embeddings(project, space=space)
    pool = pool_rows(project, ids)
    # Items answered or added while the shards ran: the next head retrain ranks them.
    position = {int(item_id): row for row, item_id in enumerate(scored_ids.tolist())}
    pool = np.array([row for row in pool if int(ids[row]) in position], dtype=np.intp)
    pool_probabilities = probabilities[[position[int(ids[row])] for row in pool]]
    _rank_and_write(project, version, labels, ids, vectors, pool, pool_probabilities, None, 0.0)


def _rescore_whole(project: Project, version: ModelVersion) -> None:
    labels = list(project.labels.all())
    classifier = load_version(project, version, len(labels))
    started = time.perf_counter()
    meter = EnergyMeter(str(classifier.device), settings.SIFT_DEVICE_WATTS or None)
    meter.start()
    space = _space(project, version)
    ids, vectors = ensure_embeddings(project, space=space)
    if space is not None:
        adopt_space(project, version, space)
    pool = pool_rows(project, ids)
    if len(pool) == 0:
        return  # everything is labeled: nothing to rank
    texts = dict(Item.objects.filter(pk__in=ids[pool].tolist()).values_list("id", "text"))
    pool_texts = np.array([texts[int(i)] for i in ids[pool]], dtype=object)
    probabilities = _probabilities(classifier, space, vectors[pool], pool_texts)
    strategy: QueryStrategy = (
        BaldStrategy(classifier.predict_proba_samples(pool_texts))
        if project.strategy == "bald"
        else strategy_for(project)
    )
    seconds = time.perf_counter() - started
    _rank_and_write(
        project, version, labels, ids, vectors, pool, probabilities, strategy, seconds, meter
    )


def _rank_and_write(
    project: Project,
    version: ModelVersion,
    labels: list[Label],
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    pool: npt.NDArray[np.intp],
    probabilities: npt.NDArray[np.floating],
    strategy: QueryStrategy | None,
    seconds: float,
    meter: EnergyMeter | None = None,
) -> None:
    started = time.perf_counter()
    ranked = rank_queue(
        project,
        labels,
        ids,
        vectors,
        pool,
        probabilities,
        training_set(project, labels),
        np.random.default_rng(version.number),
        strategy or strategy_for(project),
    )
    ranking = time.perf_counter() - started
    log.info(
        "Project %s: v%s ranked a pool of %s in %.1f s",
        project.pk,
        version.number,
        len(pool),
        ranking,
    )
    seconds += ranking
    energy = meter.stop(seconds) if meter is not None else None
    price = float(settings.SIFT_PRICE_PER_DEVICE_HOUR)
    with transaction.atomic():
        state = ModelState.objects.locked(project)
        version.refresh_from_db()
        version.score_seconds += seconds
        version.pool_size = len(pool)
        if version.energy_wh is not None and energy is not None:
            version.energy_wh += energy
        version.cost = price * (version.train_seconds + version.score_seconds) / 3600
        version.save(update_fields=["score_seconds", "pool_size", "energy_wh", "cost"])
        newer = project.model_versions.filter(number__gt=version.number, promoted=True)
        if newer.exists():
            log.info("Not ranking project %s by v%s: a newer version did", project.pk, version)
            return
        replace_queue(
            project, state, ids, ranked.order, ranked.probabilities, version.number, labels
        )


def _promoted(project_id: int, version_number: int) -> tuple[Project | None, ModelVersion | None]:
    project = Project.objects.filter(pk=project_id).first()
    version = (
        project.model_versions.filter(number=version_number, kind=KIND, promoted=True).first()
        if project
        else None
    )
    return project, version


def _probabilities(
    classifier: FineTunedClassifier,
    space: Space | None,
    vectors: npt.NDArray[np.float32],
    texts: npt.NDArray[np.object_],
) -> npt.NDArray[np.float64]:
    """The version's probabilities: its linear layer on the vectors its own encoder just
    stored in its adapted space (one pass over the texts, at SIFT_ENCODER_PRECISION), or, for
    a [CLS] version, a pass of the whole model over the texts."""
    if space is not None:
        return classifier.predict_proba_from_embeddings(vectors)
    return classifier.predict_proba(texts)


def _space(project: Project, version: ModelVersion) -> Space | None:
    """The version's adapted space; None for a version fine-tuned before LP-FT (no
    mean-pooled encoder to embed with), which ranks in the project's current space."""
    pooling = version.stored_metrics().get("training", {}).get("pooling")
    return adapted_space(project, version) if pooling == "mean" else None


def _broker_down(exc: Exception) -> None:
    log.warning("A scoring shard could not be sent: %s", exc)
