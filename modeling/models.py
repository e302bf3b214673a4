"""What the workers keep per project: embeddings, model versions, and the live model state."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import models
from django.utils import timezone

from labeling.models import Project

# A run that has not finished after this long is taken to be dead and may be replaced.
STALE_RUN_SECONDS = 30 * 60


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

    def __str__(self) -> str:
        return f"{self.project}: {self.phase}"

    def is_running(self) -> bool:
        if self.running_since is None:
            return False
        return (timezone.now() - self.running_since).total_seconds() < STALE_RUN_SECONDS

    def progress_percent(self) -> float:
        if not self.progress_total:
            return 0.0
        return 100.0 * self.progress_done / self.progress_total
