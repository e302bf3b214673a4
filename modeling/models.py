"""What the workers keep per project: embeddings, model versions, and the live model state."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from config.celery import broker_down_message, enqueue
from labeling.models import Project
from modeling.core.cadence import next_finetune_at
from modeling.core.predictions import TopPredictions, predicted_classes
from modeling.metrics import VersionMetrics

# A worker running a retrain or fine-tune marks it alive this often, from a thread of its own;
# a run whose last mark is older than HEARTBEAT_STALE has lost its worker and may be taken over.
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_STALE = timedelta(seconds=10)
# A run from before heartbeats (none recorded) is taken to be dead after this long.
STALE_RUN_SECONDS = 30 * 60
# A dead run is sent again at most this often, however many sweeps find it.
RESEND_DEAD_RUN_AFTER = timedelta(minutes=2)
# How long the panel says that a retrain was sent again after its worker stopped.
RECOVERY_SHOWN_FOR = timedelta(hours=1)


class EmbeddingChunk(models.Model):
    """Embeddings of up to a few thousand items, stored as one blob any worker can read."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    encoder = models.CharField(max_length=200)
    item_ids = models.BinaryField()
    vectors = models.BinaryField()
    size = models.PositiveIntegerField()
    dimension = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "encoder"], name="embedding_chunks")]

    def __str__(self) -> str:
        return f"{self.size} x {self.dimension} ({self.encoder}) for project {self.project_id}"

    @classmethod
    def pack(
        cls, project: Project, encoder: str, ids: list[int], vectors: npt.NDArray[np.float32]
    ) -> EmbeddingChunk:
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        return cls(
            project=project,
            encoder=encoder,
            item_ids=np.asarray(ids, dtype="<i8").tobytes(),
            vectors=matrix.tobytes(),
            size=len(ids),
            dimension=matrix.shape[1],
        )

    def unpack(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ids = np.frombuffer(bytes(self.item_ids), dtype="<i8")
        vectors = np.frombuffer(bytes(self.vectors), dtype="<f4").reshape(self.size, -1)
        return ids, vectors


# Embedding matrices the web process keeps for search by meaning (about 150 MB per 100,000
# items); the longest unused goes first.
SEARCHED_SPACES = 2
_matrices: OrderedDict[tuple[int, str], tuple[frozenset[int], EmbeddingMatrix]] = OrderedDict()


@dataclass(frozen=True)
class EmbeddingMatrix:
    """Every stored embedding of a project in one space, rows scaled to unit length."""

    item_ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]

    def row_of(self, item_id: int) -> int | None:
        rows = np.flatnonzero(self.item_ids == item_id)
        return int(rows[0]) if len(rows) else None


def embedding_matrix(project_id: int, encoder: str) -> EmbeddingMatrix:
    """The project's embeddings in one space, read again only when its chunks changed."""
    key = (project_id, encoder)
    chunk_ids = frozenset(
        EmbeddingChunk.objects.filter(project_id=project_id, encoder=encoder).values_list(
            "pk", flat=True
        )
    )
    cached = _matrices.get(key)
    if cached is not None and cached[0] == chunk_ids:
        _matrices.move_to_end(key)
        return cached[1]
    parts = [chunk.unpack() for chunk in EmbeddingChunk.objects.filter(pk__in=chunk_ids)]
    if parts:
        ids = np.concatenate([part[0] for part in parts])
        vectors = np.concatenate([part[1] for part in parts]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    else:
        ids, vectors = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    matrix = EmbeddingMatrix(ids, vectors)
    _matrices[key] = (chunk_ids, matrix)
    while len(_matrices) > SEARCHED_SPACES:
        _matrices.popitem(last=False)
    return matrix


# A phrase a lead searched by meaning, embedded by a worker, is kept this long (seconds).
PHRASE_VECTOR_SECONDS = 3600


def phrase_vector_key(project_id: int, encoder: str, phrase: str) -> str:
    digest = hashlib.sha256(f"{project_id}\0{encoder}\0{phrase}".encode()).hexdigest()
    return f"sift:phrase:{digest}"


def cached_phrase_vector(
    project_id: int, encoder: str, phrase: str
) -> npt.NDArray[np.float32] | None:
    """A worker's embedding of the phrase in the space, once it has made one."""
    raw = cache.get(phrase_vector_key(project_id, encoder, phrase))
    return np.frombuffer(raw, dtype="<f4") if isinstance(raw, bytes) and raw else None


def store_phrase_vector(
    project_id: int, encoder: str, phrase: str, vector: npt.NDArray[np.floating]
) -> None:
    key = phrase_vector_key(project_id, encoder, phrase)
    cache.set(key, np.asarray(vector, dtype="<f4").tobytes(), PHRASE_VECTOR_SECONDS)


# Shards of one version that show no sign of life (none beating, none finished, none sent) for
# this long while some were never started: their messages are taken to be lost and sent again.
SHARD_PATIENCE = timedelta(minutes=5)
# A shard is sent at most this many times: one that fails every time is left to the logs.
SHARD_SENDS = 4


class ScoringShardManager(models.Manager["ScoringShard"]):
    def take_lost(self, now: datetime | None = None) -> list[tuple[int, int, int]]:
        """Shards to send again, as (project id, version number, index): a started shard
        whose worker stopped beating, and the unstarted shards of a version none of whose
        shards showed life for SHARD_PATIENCE (the broker lost their messages). A worker
        working through the shards one by one keeps the version alive, so a shard merely
        waiting its turn is not sent twice. Each is stamped, so workers sweeping together send
        it once, and a dead one is sent again at most every RESEND_DEAD_RUN_AFTER, SHARD_SENDS
        times in all."""
        now = now or timezone.now()
        taken = []
        with transaction.atomic():
            unfinished = list(
                self.select_for_update(skip_locked=True).filter(
                    finished_at=None, sends__lt=SHARD_SENDS
                )
            )
            alive = self._last_signs_of_life({shard.project_id for shard in unfinished})
            for shard in unfinished:
                recently_sent = shard.sent_at and now - shard.sent_at < RESEND_DEAD_RUN_AFTER
                if shard.heartbeat_at is not None:
                    lost = now - shard.heartbeat_at >= HEARTBEAT_STALE and not recently_sent
                else:
                    last = alive.get((shard.project_id, shard.version_number))
                    lost = last is None or now - last >= SHARD_PATIENCE
                if lost:
                    shard.sent_at = now
                    shard.sends += 1
                    shard.save(update_fields=["sent_at", "sends"])
                    taken.append((shard.project_id, shard.version_number, shard.index))
        return taken

    def _last_signs_of_life(self, project_ids: set[int]) -> dict[tuple[int, int], datetime | None]:
        """Per (project, version): the newest beat, finish or send of any of its shards."""
        rows = (
            self.filter(project_id__in=project_ids)
            .values("project_id", "version_number")
            .annotate(
                beat=models.Max("heartbeat_at"),
                finished=models.Max("finished_at"),
                sent=models.Max("sent_at"),
            )
        )
        return {
            (row["project_id"], row["version_number"]): max(
                (row[key] for key in ("beat", "finished", "sent") if row[key] is not None),
                default=None,
            )
            for row in rows
        }


class ScoringShard(models.Model):
    """One slice of a project's items that a worker embeds and scores for a promoted fine-tuned
    version; the queue is written once, by whichever shard finishes last (a fan-in through the
    database: no result backend, and a half-scored pool never reaches annotators)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version_number = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    total = models.PositiveIntegerField()
    item_ids = models.BinaryField()
    # Pool items of the slice (unlabeled ones) and their probabilities, once scored.
    scored_ids = models.BinaryField(default=b"")
    probabilities = models.BinaryField(default=b"")
    finished_at = models.DateTimeField(null=True, blank=True)
    # When its task was last sent, and the last sign of life of a worker scoring it.
    sent_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = ScoringShardManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version_number", "index"], name="unique_scoring_shard"
            )
        ]

    def __str__(self) -> str:
        return f"shard {self.index + 1}/{self.total} of {self.project} v{self.version_number}"

    def ids(self) -> npt.NDArray[np.int64]:
        return np.frombuffer(bytes(self.item_ids), dtype="<i8")

    def scores(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(pool item ids, their probabilities ``(n, n_classes)``) of a finished shard."""
        ids = np.frombuffer(bytes(self.scored_ids), dtype="<i8")
        flat = np.frombuffer(bytes(self.probabilities), dtype="<f8")
        return ids, flat.reshape(len(ids), -1) if len(ids) else flat.reshape(0, 0)


# A project keeps the predictions of this many of its newest versions (the item page's history).
KEPT_PREDICTION_SETS = 12


@dataclass(frozen=True)
class ItemPrediction:
    """What one version predicted for one item."""

    version: int
    label_ids: list[int]
    confidence: float
    uncertainty: float
    # From a model that never saw the item's label (cross-validation): an honest guess.
    held_out: bool


class PredictionSet(models.Model):
    """One version's prediction for every embedded item, labeled ones included, stored as
    arrays sorted by item id (the top classes only: see modeling/core/predictions.py)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.OneToOneField(
        "ModelVersion", on_delete=models.CASCADE, related_name="prediction_set"
    )
    multi_label = models.BooleanField(default=False)
    # Label pks in the classes' order.
    label_ids = models.JSONField(default=list)
    item_ids = models.BinaryField()
    classes = models.BinaryField()
    probabilities = models.BinaryField()
    held_out = models.BinaryField()
    size = models.PositiveIntegerField()
    top_k = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="prediction_sets")]

    def __str__(self) -> str:
        return f"{self.size} predictions of {self.version}"

    @classmethod
    def pack(
        cls,
        version: ModelVersion,
        label_ids: list[int],
        multi_label: bool,
        ids: npt.NDArray[np.int64],
        top: TopPredictions,
        held_out: npt.NDArray[np.bool_],
    ) -> PredictionSet:
        order = np.argsort(ids, kind="stable")
        return cls(
            project_id=version.project_id,
            version=version,
            multi_label=multi_label,
            label_ids=label_ids,
            item_ids=np.ascontiguousarray(ids[order], dtype="<i8").tobytes(),
            classes=np.ascontiguousarray(top.classes[order], dtype="<i2").tobytes(),
            probabilities=np.ascontiguousarray(top.probabilities[order], dtype="<f4").tobytes(),
            held_out=np.ascontiguousarray(held_out[order], dtype=np.uint8).tobytes(),
            size=len(ids),
            top_k=top.classes.shape[1],
        )

    def arrays(self) -> PredictionArrays:
        """The stored arrays, read once per process (a set never changes once written)."""
        return prediction_arrays(self.pk)


@dataclass(frozen=True)
class PredictionArrays:
    """A PredictionSet unpacked: rows sorted by item id."""

    version: int
    # The embedding space the version's head read (embeddings of the same name match it).
    encoder: str
    multi_label: bool
    label_ids: list[int]
    item_ids: npt.NDArray[np.int64]
    top: TopPredictions
    held_out: npt.NDArray[np.bool_]

    def rows_of(self, item_ids: Sequence[int]) -> dict[int, int]:
        """Row of each of these items that has a prediction."""
        wanted = np.asarray(item_ids, dtype=np.int64)
        found, rows = self.find(wanted)
        return dict(zip(wanted[found].tolist(), rows[found].tolist(), strict=True))

    def find(
        self, item_ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
        """Which of these items have a prediction, and their rows (meaningless where not)."""
        if len(self.item_ids) == 0:
            return np.zeros(len(item_ids), dtype=bool), np.zeros(len(item_ids), dtype=np.intp)
        rows = np.minimum(np.searchsorted(self.item_ids, item_ids), len(self.item_ids) - 1)
        return self.item_ids[rows] == item_ids, rows.astype(np.intp)

    def prediction(self, row: int, uncertainty: float | None = None) -> ItemPrediction:
        classes = predicted_classes(self.top, row, self.multi_label)
        if uncertainty is None:
            uncertainty = float(self.top.uncertainty(self.multi_label)[row])
        return ItemPrediction(
            version=self.version,
            label_ids=[self.label_ids[c] for c in classes if c < len(self.label_ids)],
            confidence=float(self.top.confidence[row]),
            uncertainty=uncertainty,
            held_out=bool(self.held_out[row]),
        )

    def predictions_of(self, item_ids: Sequence[int]) -> dict[int, ItemPrediction]:
        """The prediction of each of these items that has one."""
        return {item_id: self.prediction(row) for item_id, row in self.rows_of(item_ids).items()}


@lru_cache(maxsize=2 * KEPT_PREDICTION_SETS)
def prediction_arrays(pk: int) -> PredictionArrays:
    """One stored PredictionSet's arrays; each process reads a set from the database once."""
    stored = PredictionSet.objects.select_related("version").get(pk=pk)
    n, k = stored.size, stored.top_k
    return PredictionArrays(
        version=stored.version.number,
        encoder=stored.version.encoder,
        multi_label=stored.multi_label,
        label_ids=list(stored.label_ids),
        item_ids=np.frombuffer(bytes(stored.item_ids), dtype="<i8"),
        top=TopPredictions(
            np.frombuffer(bytes(stored.classes), dtype="<i2").reshape(n, k),
            np.frombuffer(bytes(stored.probabilities), dtype="<f4").reshape(n, k),
        ),
        held_out=np.frombuffer(bytes(stored.held_out), dtype=np.uint8).astype(bool),
    )


def _kept_sets(project: Project) -> list[int]:
    """Pks of the project's prediction sets, newest version first."""
    return list(
        PredictionSet.objects.filter(project=project)
        .order_by("-version__number")
        .values_list("pk", flat=True)
    )


def latest_predictions(project: Project) -> PredictionArrays | None:
    """The newest version's prediction of every item, or None before the first model."""
    kept = _kept_sets(project)
    return prediction_arrays(kept[0]) if kept else None


def prediction_history(project: Project, item_id: int) -> list[ItemPrediction]:
    """What each kept version predicted for one item, newest version first."""
    history = []
    for pk in _kept_sets(project):
        arrays = prediction_arrays(pk)
        rows = arrays.rows_of([item_id])
        if item_id in rows:
            history.append(arrays.prediction(rows[item_id]))
    return history


# The name of a fine-tuned version's embedding space is the encoder's name, this, its number.
ADAPTED_SPACE_MARK = "+finetune-v"


class ModelVersion(models.Model):
    """One trained model of a project and what it cost."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, default="head")
    encoder = models.CharField(max_length=200)
    strategy = models.CharField(max_length=40)
    labels_used = models.PositiveIntegerField()
    class_counts = models.JSONField(default=dict)
    # When the labels it learned from were read; a run from older labels never replaces it.
    snapshot_at = models.DateTimeField()
    pool_size = models.PositiveIntegerField(default=0)
    train_seconds = models.FloatField(default=0)
    score_seconds = models.FloatField(default=0)
    device = models.CharField(max_length=40, default="cpu")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A head version ranks the queue as soon as it exists; a fine-tuned one only once promoted
    # (its evaluation was not worse than the serving version's, or a lead forced it).
    promoted = models.BooleanField(default=True)
    # Measured by the fine-tuning loop; null for the head, whose cost is estimated from time.
    samples_per_second = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    energy_wh = models.FloatField(null=True, blank=True)
    energy_source = models.CharField(max_length=20, blank=True)
    cost = models.FloatField(null=True, blank=True)
    # The fine-tuned weights, under SIFT_CHECKPOINT_DIR (storage every worker can reach).
    weights_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number} ({self.kind}, {self.labels_used} labels)"

    def stored_metrics(self) -> VersionMetrics:
        """The metrics the worker stored, typed (see modeling/metrics.py)."""
        metrics: VersionMetrics = self.metrics
        return metrics

    def adapted_by(self) -> int | None:
        """The fine-tuned version whose encoder embedded what this version learned from (its
        space is `<encoder>+finetune-v<N>`), or None for the encoder as it came."""
        _, mark, number = self.encoder.rpartition(ADAPTED_SPACE_MARK)
        return int(number) if mark and number.isascii() and number.isdigit() else None


FINETUNE_MODEL = "modeling.tasks.finetune_model"


class FineTuneRunManager(models.Manager["FineTuneRun"]):
    def active(self, project: Project) -> FineTuneRun | None:
        """The project's queued or running fine-tune, if any."""
        return self.filter(project=project, status__in=FineTuneRun.ACTIVE).first()

    def request(self, project: Project, user: User | None = None) -> FineTuneRun | None:
        """Queue a fine-tune of the project's transformer; None when one is already under way
        (one run at a time: what it misses, the next one due takes)."""
        with transaction.atomic():
            ModelState.objects.locked(project)
            if self.active(project) is not None:
                return None
            run = self.create(project=project, task_id=str(uuid.uuid4()), requested_by=user)
            transaction.on_commit(partial(self._send, run))
        return run

    def request_if_due(self, project: Project, labels: int) -> FineTuneRun | None:
        """Queue a fine-tune when the labels grew enough since the last one (the project's
        `finetune_growth` and `finetune_min_labels`); called by the workers after each model."""
        due_at = self.next_automatic_at(project)
        if due_at is None or labels < due_at:
            return None
        return self.request(project)

    def next_automatic_at(self, project: Project) -> int | None:
        """The label count at which the project fine-tunes by itself next; None when it
        does not (its setting, or the deployment's)."""
        if not settings.SIFT_AUTO_FINETUNE:
            return None
        last = self.filter(project=project).exclude(snapshot_at=None).first()
        return next_finetune_at(
            len(last.item_ids) if last is not None else 0,
            project.finetune_growth,
            project.finetune_min_labels,
        )

    def _send(self, run: FineTuneRun) -> None:
        enqueue(
            FINETUNE_MODEL,
            run.project_id,
            task_id=run.task_id,
            on_broker_down=lambda exc: self.filter(pk=run.pk).update(
                status=FineTuneRun.Status.FAILED,
                last_error=broker_down_message(exc),
                finished_at=timezone.now(),
            ),
        )


class FineTuneRun(models.Model):
    """One fine-tuning job: its claim by a worker, its progress, and where it checkpoints."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="finetune_runs")
    # The Celery task id: a redelivered task finds its run (and its checkpoints) by it.
    task_id = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    resumed_from_step = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    # The labels it learns from, fixed at the first attempt so that a resumed run sees the same.
    snapshot_at = models.DateTimeField(null=True, blank=True)
    item_ids = models.JSONField(default=list, blank=True)
    targets = models.JSONField(default=list, blank=True)
    warm_start_version = models.PositiveIntegerField(null=True, blank=True)
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = FineTuneRunManager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"fine-tune {self.task_id} of {self.project}: {self.status}"

    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def progress_percent(self) -> float:
        return 100.0 * self.step / self.total_steps if self.total_steps else 0.0


class Phase(models.TextChoices):
    IDLE = "idle", "Idle"
    EMBEDDING = "embedding", "Embedding items"
    TRAINING = "training", "Training"
    SCORING = "scoring", "Scoring the pool"


REFRESH_MODEL = "modeling.tasks.refresh_model"
# A retrain request younger than this is taken to be still waiting for a worker.
QUEUED_PATIENCE = timedelta(minutes=5)
# After the broker refused a request, answers in the next half minute do not try again, so a
# dead broker costs one slow request, not every request.
BROKER_RETRY_AFTER = timedelta(seconds=30)


class ModelStateManager(models.Manager["ModelState"]):
    """The per-project lock and run bookkeeping that the web side and the workers share."""

    def of(self, project: Project) -> ModelState:
        """The project's model state, created on first use."""
        state, _ = self.get_or_create(project=project)
        return state

    def locked(self, project: Project) -> ModelState:
        """The model state row, locked until the surrounding transaction ends."""
        self.of(project)
        return self.select_for_update().get(project=project)

    def claim(self, project: Project, run_id: str) -> bool:
        """Take the project's retrain for run `run_id`; False when there is nothing to do.

        Another run alive: a follow-up request is left for it. The same run (a redelivered or
        resent task): it waits while the run's worker may still be beating, then takes over;
        a run that finished meanwhile is not run again.
        """
        while True:
            with transaction.atomic():
                state = self.locked(project)
                if run_id and run_id == state.finished_run_id:
                    return False
                if not state.is_running():
                    now = timezone.now()
                    state.running_since = state.heartbeat_at = now
                    state.run_id = run_id
                    state.queued_at = None
                    state.follow_up = False
                    state.last_error = ""
                    state.save()
                    return True
                if state.run_id != run_id:
                    state.follow_up = True
                    state.save(update_fields=["follow_up", "updated_at"])
                    return False
            time.sleep(HEARTBEAT_SECONDS)

    def beat(self, project_id: int, run_id: str) -> None:
        """Mark the project's run `run_id` alive (from the run's heartbeat thread)."""
        self.filter(project_id=project_id, run_id=run_id).update(heartbeat_at=timezone.now())

    def release(self, project: Project, run_id: str) -> bool:
        """End run `run_id`; True when requests arrived meanwhile, which are then marked as
        sent for the follow-up run the caller sends."""
        with transaction.atomic():
            state = self.locked(project)
            if state.run_id != run_id:
                return False  # taken over by another worker after this one went quiet
            follow_up = state.follow_up
            state.running_since = state.heartbeat_at = None
            state.run_id = ""
            state.finished_run_id = run_id
            state.follow_up = False
            state.phase = Phase.IDLE
            state.queued_at = timezone.now() if follow_up else state.queued_at
            state.save()
            return follow_up

    def send_retrain(self, project_id: int, task_id: str | None = None) -> bool:
        """Send one retrain request (it was stamped already); a broker that refuses it is
        shown to leads, and a request in half a minute tries again."""
        return enqueue(
            REFRESH_MODEL,
            project_id,
            task_id=task_id,
            on_broker_down=lambda exc: self.filter(project_id=project_id).update(
                queued_at=timezone.now() - QUEUED_PATIENCE + BROKER_RETRY_AFTER,
                last_error=broker_down_message(exc),
            ),
        )

    def take_lost_work(self, requested_before: datetime) -> list[tuple[int, str]]:
        """Retrains to send again, as (project id, task id): requests from before
        `requested_before` that no run took up (a new id), and runs whose worker stopped
        beating (their own id, so that a late redelivery and the resend are one run).

        Each is stamped, so workers sweeping together send it once.
        """
        now = timezone.now()
        lost = Q(queued_at__lt=requested_before) | Q(
            running_since__isnull=False, heartbeat_at__lt=now - HEARTBEAT_STALE
        )
        taken = []
        with transaction.atomic():
            for state in self.select_for_update(skip_locked=True).filter(lost):
                if state.is_running():
                    continue  # the run ends by taking up its follow-up requests
                if state.running_since is not None and state.run_id:
                    if state.recovered_at and now - state.recovered_at < RESEND_DEAD_RUN_AFTER:
                        continue
                    state.recovered_at = now
                    taken.append((state.project_id, state.run_id))
                else:
                    state.queued_at = now
                    taken.append((state.project_id, str(uuid.uuid4())))
                state.save(update_fields=["queued_at", "recovered_at", "updated_at"])
        return taken


class ModelState(models.Model):
    """What the workers are doing for a project right now, for the status panel and the lock."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="model_state")
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.IDLE)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    run_id = models.CharField(max_length=100, blank=True)
    follow_up = models.BooleanField(default=False)
    queue_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The running retrain's last sign of life; a stale one lets another worker take over.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The last run that ended, so that a duplicate delivery of it does not run again.
    finished_run_id = models.CharField(max_length=100, blank=True)
    # When a sweep last sent again a retrain whose worker had stopped.
    recovered_at = models.DateTimeField(null=True, blank=True)

    objects = ModelStateManager()

    def __str__(self) -> str:
        return f"{self.project}: {self.phase}"

    def is_running(self) -> bool:
        """A run holds the project and its worker is alive (beating)."""
        if self.running_since is None:
            return False
        now = timezone.now()
        if self.heartbeat_at is None:
            return (now - self.running_since).total_seconds() < STALE_RUN_SECONDS
        return now - self.heartbeat_at < HEARTBEAT_STALE

    def recent_recovery(self) -> datetime | None:
        """When a retrain whose worker stopped was sent again, if lately: the panel says so."""
        if self.recovered_at is None or timezone.now() - self.recovered_at > RECOVERY_SHOWN_FOR:
            return None
        return self.recovered_at

    def covers_new_request(self, now: datetime) -> bool:
        """A follow-up of the running run, or a request sent recently, will cover a new one."""
        if self.is_running():
            return self.follow_up
        return self.queued_at is not None and now - self.queued_at < QUEUED_PATIENCE

    def progress_percent(self) -> float:
        if not self.progress_total:
            return 0.0
        return 100.0 * self.progress_done / self.progress_total
