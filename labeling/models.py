"""Projects, their label sets and members, items, annotations, and the leased queue."""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
import secrets
import unicodedata
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from labeling.validation import (
    label_key,
    validate_color,
    validate_encoder_folder,
    validate_hotkey,
    validate_name_text,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

IMPORTED_USERNAME = "imported"
LABEL_COLORS = [
    "#2563eb",
    "#16a34a",
    "#dc2626",
    "#9333ea",
    "#ea580c",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
    "#7c3aed",
    "#0d9488",
    "#c2410c",
    "#be185d",
    "#1e40af",
    "#a16207",
    "#15803d",
    "#6d28d9",
    "#b91c1c",
    "#0369a1",
]
# Keys a new label gets, in order: digits first, then letters; labels beyond these get none.
LABEL_HOTKEYS = "1234567890abcdefghijklmnopqrstuvwxyz"
_WHITESPACE = re.compile(r"\s+")


def label_color(index: int) -> str:
    """The colour of the label at this position: the palette, then distinct generated hues."""
    if index < len(LABEL_COLORS):
        return LABEL_COLORS[index]
    # Golden-angle steps around the hue circle never repeat a hue; dark enough for white text.
    red, green, blue = colorsys.hls_to_rgb((index * 0.381966) % 1.0, 0.4, 0.7)
    return "#{:02x}{:02x}{:02x}".format(*(round(channel * 255) for channel in (red, green, blue)))


def normalize_text(text: str) -> str:
    """Return the text as stored: NFC-normalized with outer whitespace removed."""
    return unicodedata.normalize("NFC", text).strip()


def content_hash(text: str) -> str:
    """Hash that treats texts differing only in whitespace runs as the same item."""
    canonical = _WHITESPACE.sub(" ", normalize_text(text))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_random_key() -> float:
    """A uniform random sort key for the fallback serving order."""
    return random.random()


def default_lease_seconds() -> int:
    return int(django_settings.SIFT_LEASE_SECONDS)


def imported_annotator() -> User:
    """The pseudo-user that owns labels read from imported files."""
    user, created = get_user_model().objects.get_or_create(
        username=IMPORTED_USERNAME, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


class Role(models.TextChoices):
    LEAD = "lead", "Lead"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True, validators=[validate_name_text])
    instructions = models.TextField(blank=True)
    multi_label = models.BooleanField(default=False)
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1, "At least one annotator per item.")],
        help_text="How many annotators answer each item (more than 1 measures agreement).",
    )
    lease_seconds = models.PositiveIntegerField(
        default=default_lease_seconds,
        validators=[MinValueValidator(10, "Leases last at least 10 seconds.")],
        help_text="How long an item stays reserved for the annotator it was served to.",
    )
    retrain_every = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1, "Retrain after at least one answer.")],
        help_text="Retrain the model after this many new answers.",
    )
    strategy = models.CharField(
        max_length=40,
        default="balanced_density",
        help_text="How the queue picks the next items once a model exists.",
    )
    show_suggestions = models.BooleanField(
        default=True,
        help_text="Show annotators the model's guess; turn off to avoid anchoring.",
    )
    suggest_above = models.PositiveSmallIntegerField(
        "suggest from confidence (%)",
        null=True,
        blank=True,
        validators=[MaxValueValidator(100, "A confidence is at most 100%.")],
        help_text="Show a suggestion only when the model is at least this sure. Empty: from "
        "the confidence at which its suggestions were right 4 times in 5 on the evaluation "
        "items (until that is measured, annotators read that the model is unsure).",
    )
    annotators_see_answers = models.BooleanField(
        "annotators see everyone's answers",
        default=False,
        help_text="Let annotators read every answer through the API; left off, each annotator "
        "sees only their own, so labels stay independent when items get several answers.",
    )
    encoder = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_encoder_folder],
        help_text="A local Hugging Face model folder; empty for the built-in all-MiniLM-L6-v2.",
    )
    random_control_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served items drawn uniformly at random, from 0 to 1: they form the "
        "evaluation set that measures the model without the bias of active learning.",
    )
    train_on_control = models.BooleanField(
        default=False,
        help_text="Also train on the random-control items. The model then learns from every "
        "label, but its evaluation is optimistic, as it is tested on items it has seen; "
        "left off, the evaluation is honest and those labels do not teach the model.",
    )
    finetune_growth = models.FloatField(
        "fine-tune when the labels grew by",
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(10.0)],
        help_text="Fine-tune the transformer by itself once the labels grew by this share "
        "since the last fine-tune (0.2: 20% more); 0 fine-tunes only when asked.",
    )
    finetune_min_labels = models.PositiveIntegerField(
        "and by at least (labels)",
        default=50,
        validators=[MinValueValidator(1, "Fine-tune after at least one new label.")],
        help_text="New labels a fine-tune waits for at least; the first waits for as many.",
    )
    settings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user: User) -> str | None:
        """The user's role in this project, or None for outsiders (read once per project
        object; `labeling.access.project_for` notes the role it checked)."""
        if not user.is_authenticated:
            return None
        known: dict[int, str | None] = self.__dict__.setdefault("_known_roles", {})
        if user.pk not in known:
            membership = self.memberships.filter(user=user).first()
            known[user.pk] = membership.role if membership else None
        return known[user.pk]

    def note_role(self, user: User, role: str) -> None:
        """Remember the user's role, as read with the project."""
        self.__dict__.setdefault("_known_roles", {})[user.pk] = role

    def add_member(self, user: User, role: str) -> Membership:
        """Add the user with this role, or change the role of an existing member.

        The project keeps at least one lead: demoting the only one is refused.
        """
        self.__dict__.pop("_known_roles", None)
        with transaction.atomic():
            if role != Role.LEAD:
                self._keep_a_lead_besides(user, "demoted")
            membership, _ = Membership.objects.update_or_create(
                project=self, user=user, defaults={"role": role}
            )
        return membership

    def remove_member(self, user: User) -> None:
        """Take the user out of the project (never its only lead).

        Their answers stay, attributed to them, in training, exports and the people page; the
        items they held go back to the pool at once.
        """
        self.__dict__.pop("_known_roles", None)
        with transaction.atomic():
            self._keep_a_lead_besides(user, "removed")
            Lease.objects.filter(project=self, annotator=user).delete()
            self.memberships.filter(user=user).delete()

    def _keep_a_lead_besides(self, user: User, change: str) -> None:
        # The lead rows stay locked until the change commits, so two leads demoting each other
        # at once cannot both succeed: the second re-reads and finds itself the only lead.
        leads = list(
            self.memberships.select_for_update()
            .filter(role=Role.LEAD)
            .values_list("user_id", flat=True)
        )
        if leads == [user.pk]:
            raise ValidationError(
                f"{user.username} is the only lead of {self.name} and cannot be {change}: "
                "make another member lead first."
            )

    def set_labels(self, names: list[str]) -> list[Label]:
        """Create the label set in order, each with its own hotkey and palette colour."""
        cleaned = [name.strip() for name in names if name.strip()]
        if not cleaned:
            raise ValidationError("A project needs at least one label.")
        if len({label_key(name) for name in cleaned}) != len(cleaned):
            raise ValidationError("Label names must be unique, whatever their case.")
        labels = [
            Label(
                project=self,
                name=name,
                position=index,
                hotkey=LABEL_HOTKEYS[index] if index < len(LABEL_HOTKEYS) else "",
                color=label_color(index),
            )
            for index, name in enumerate(cleaned)
        ]
        return Label.objects.bulk_create(labels)

    def lease_duration(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


class Label(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100, validators=[validate_name_text])
    hotkey = models.CharField(max_length=1, blank=True, validators=[validate_hotkey])
    color = models.CharField(max_length=7, default=LABEL_COLORS[0], validators=[validate_color])
    description = models.TextField(
        blank=True, help_text="What the label means; items closest to it are served first."
    )
    keywords = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated words; items containing them are served early, "
        "before the model knows the label.",
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_label_name"),
            models.UniqueConstraint(
                fields=["project", "hotkey"], condition=~Q(hotkey=""), name="unique_label_hotkey"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="unique_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class Item(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    text = models.TextField()
    external_id = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    # Non-skipped answers so far; an item leaves the pool once it reaches the project's overlap.
    answer_count = models.PositiveIntegerField(default=0)
    # A fixed random key gives a stable, index-friendly random order when no ranking exists.
    random_key = models.FloatField(default=new_random_key)
    # Served by a uniform random draw rather than by the model: part of the evaluation set.
    is_random_control = models.BooleanField(default=False, db_index=True)
    # A lead took it out of labeling (off-topic, broken): never served, ranked or trained on.
    excluded = models.BooleanField(default=False)
    # The import that brought it in (None for items added before imports were recorded).
    import_job = models.ForeignKey(
        "ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="unique_item_text")
        ]
        indexes = [
            models.Index(fields=["project", "answer_count", "random_key"], name="item_pool"),
            models.Index(fields=["project", "external_id"], name="item_external_id"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class Annotation(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations"
    )
    labels = models.ManyToManyField(Label, blank=True, related_name="annotations")
    skipped = models.BooleanField(default=False)
    seconds_spent = models.FloatField(default=0)
    client_id = models.UUIDField(default=uuid.uuid4, unique=True)
    # What the model suggested when the item was served (label ids and confidence) and whether
    # the page showed it: each retrain measures from these how sure a shown suggestion must be.
    suggested_labels = models.JSONField(default=list, blank=True)
    suggestion_confidence = models.FloatField(null=True, blank=True)
    suggestion_shown = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="one_answer_per_annotator")
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="annotation_recent")]

    def __str__(self) -> str:
        return f"{self.annotator} on item {self.item_id}"

    def label_names(self) -> list[str]:
        return [label.name for label in self.labels.all()]


class Adjudication(models.Model):
    """A reviewer's final word on an item: it overrides the majority of the answers."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="adjudication")
    labels = models.ManyToManyField(Label, related_name="+")
    resolved_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"item {self.item_id} resolved by {self.resolved_by}"


class Lease(models.Model):
    """An item reserved for one annotator until `expires_at`."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leases")
    expires_at = models.DateTimeField()
    # The queue's suggestion when the item was served, handed on to the answer.
    suggested_labels = models.JSONField(default=list, blank=True)
    suggestion_confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="one_lease_per_annotator")
        ]
        indexes = [models.Index(fields=["project", "annotator", "expires_at"], name="lease_mine")]

    def __str__(self) -> str:
        return f"item {self.item_id} for {self.annotator_id} until {self.expires_at:%H:%M:%S}"

    def is_active(self) -> bool:
        return self.expires_at > timezone.now()


class QueueEntry(models.Model):
    """One row of the ranked queue that active learning writes; lower rank is served first."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_entries")
    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="queue_entry")
    rank = models.PositiveIntegerField()
    score = models.FloatField(default=0)
    model_version = models.PositiveIntegerField(default=0)
    suggested_labels = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "rank"], name="queue_order")]

    def __str__(self) -> str:
        return f"#{self.rank} item {self.item_id} (v{self.model_version})"


TOKEN_PREFIX = "sift_"


class ApiToken(models.Model):
    """A personal API key; only its SHA-256 is stored, so a leaked database leaks no key."""

    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, validators=[validate_name_text])
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    @classmethod
    def issue(cls, user: User, name: str = "") -> tuple[ApiToken, str]:
        """Create a token and return it with its key, which is shown this once only."""
        key = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=key[: len(TOKEN_PREFIX) + 6], key_hash=cls.hash_key(key)
        )
        return token, key

    @classmethod
    def find_active(cls, key: str) -> ApiToken | None:
        token = (
            cls.objects.select_related("user")
            .filter(key_hash=cls.hash_key(key), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        return token

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class ExportJob(models.Model):
    """A large export written by a worker to a file the user downloads when it is ready."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_jobs")
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    format = models.CharField(max_length=10)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="exports/", blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.format} export of {self.project} ({self.status})"

    def filter_summary(self) -> str:
        """The filters the job was asked with, in the API's words; "all items" for none."""
        parts = [
            name if value is True else f"{name}={value}"
            for name, value in self.filters.items()
            if value not in (None, "", False)
        ]
        return ", ".join(parts) or "all items"


class Webhook(models.Model):
    """A URL that receives signed POSTs when something happens in a project."""

    class Event(models.TextChoices):
        MODEL_PROMOTED = "model.promoted", "A new model version was promoted"
        EXPORT_READY = "export.ready", "An export file is ready"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100)
    events = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    last_status = models.CharField(max_length=200, blank=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.url} for {self.project}"


class ImportJob(models.Model):
    """One file imported into a project: the batch its items came in and, for a big file, the
    background job that reads it while the lead watches its progress."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_name = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=10, blank=True)
    # The columns and label rules the import reads the file with.
    options = models.JSONField(default=dict, blank=True)
    # The kept upload a background job reads (under SIFT_VAR_DIR); emptied once it is done.
    source = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    labeled = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # The first rejections (line and reason) and the most common reasons, for the report.
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import of {self.file_name or 'a file'} into {self.project} ({self.status})"


class ReviewRequest(models.Model):
    """A lead sent an item to review: it waits on the reviewers' list until someone rules on
    it (the ruling then ends the request)."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="review_request")
    requested_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"review of item {self.item_id}"


class ItemDeletion(models.Model):
    """A lead deleted items: who, when, how many, and a file of them with every answer (the
    export's JSONL, which imports back) so that nothing is lost without a trace."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deletions")
    deleted_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    items = models.PositiveIntegerField()
    answers = models.PositiveIntegerField()
    note = models.TextField(blank=True)
    # Under SIFT_MEDIA_ROOT.
    file = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.items} items deleted from {self.project}"
