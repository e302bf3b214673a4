"""Personas: Alice leads, Bob and Dora annotate, Rita reviews, Charlie is an outsider."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from labeling.models import ApiToken, Item, Lease, Project, Role, content_hash
from labeling.services import resolve_labels, submit_answer
from modeling.core.predictions import TopPredictions
from modeling.models import ModelVersion, PredictionSet
from tests.fixtures import finance_texts, sports_texts

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    # Stories make many users; the production hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings: Any) -> None:
    # Rate-limit counters live in the shared cache (Redis here); each story starts with none.
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": uuid.uuid4().hex} for name, config in settings.CACHES.items()
    }


@pytest.fixture(autouse=True)
def no_random_controls(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stories about the serving order expect it exactly; tests/test_evaluation.py draws for real.
    monkeypatch.setattr("labeling.queue._draw", lambda: 1.0)


@pytest.fixture(autouse=True)
def no_automatic_finetunes(settings: Any) -> None:
    # A project fine-tunes by itself at 50 labels; the stories about that turn it back on
    # (tests/test_auto_finetune.py), the others would otherwise train MiniLM on the side.
    settings.SIFT_AUTO_FINETUNE = False


@pytest.fixture(autouse=True)
def fp32_embeddings(settings: Any) -> None:
    # A CPU worker embeds in int8 by default; stories name fp32 spaces and compare exact
    # vectors, and tests/test_quantized_encoder.py tells the int8 stories.
    settings.SIFT_ENCODER_PRECISION = "fp32"


@pytest.fixture(autouse=True)
def no_kept_random_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    # Retrains keep random sampling's measured curve per project; each story starts with none.
    monkeypatch.setattr("modeling.services.version_metrics._measured_curves", {})


class RecordingBroker:
    """Stands in for the broker at `config.celery.app.send_task`: records what was sent, or
    refuses it as an unreachable broker does."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.error = error

    def send_task(self, name: str, args: Any = (), **options: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((name, tuple(args)))


@pytest.fixture
def recorded_broker(monkeypatch: pytest.MonkeyPatch) -> RecordingBroker:
    """The broker, recording what the code under test sends instead of sending it."""
    broker = RecordingBroker()
    monkeypatch.setattr("config.celery.app.send_task", broker.send_task)
    return broker


@pytest.fixture
def small_fine_tunes(settings: Any, tmp_path: Any) -> Iterator[Any]:
    """Fine-tunes in this process that take a second on a tiny BERT: CPU, short texts, small
    batches, 4 optimizer steps, one torch thread (see tests/modeling/test_finetuning.py)."""
    settings.SIFT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.SIFT_TRAINING_DEVICE = "cpu"
    settings.SIFT_FINETUNE_MAX_LENGTH = 32
    settings.SIFT_FINETUNE_BATCH_SIZE = 4
    settings.SIFT_FINETUNE_MIN_STEPS = 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield settings
    torch.set_num_threads(threads)


def make_user(username: str, **extra: Any) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, **extra)


@pytest.fixture
def alice(db: None) -> User:
    user = make_user("alice")
    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    return user


@pytest.fixture
def bob(db: None) -> User:
    return make_user("bob")


@pytest.fixture
def dora(db: None) -> User:
    return make_user("dora")


@pytest.fixture
def rita(db: None) -> User:
    return make_user("rita")


@pytest.fixture
def charlie(db: None) -> User:
    return make_user("charlie")


def make_project(lead: User, *members: tuple[User, str], items: int = 0, **fields: Any) -> Project:
    project = Project.objects.create(name=fields.pop("name", "Reviews"), **fields)
    project.set_labels(["positive", "negative", "neutral"])
    project.add_member(lead, Role.LEAD)
    for user, role in members:
        project.add_member(user, role)
    add_items(project, [f"review number {i}" for i in range(items)])
    return project


def add_items(project: Project, texts: list[str]) -> list[Item]:
    return Item.objects.bulk_create(
        [Item(project=project, text=text, content_hash=content_hash(text)) for text in texts]
    )


@pytest.fixture
def project(alice: User, bob: User, rita: User) -> Project:
    return make_project(alice, (bob, Role.ANNOTATOR), (rita, Role.REVIEWER), items=20)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def token_client(user: User, **extra: Any) -> Client:
    """A script calling the API with a new token of the user's."""
    _, key = ApiToken.issue(user, "script")
    return Client(HTTP_AUTHORIZATION=f"Token {key}", **extra)


def make_topics_project(
    lead: User, *members: tuple[User, str], per_topic: int = 12, **fields: Any
) -> Project:
    """A "Topics" project: `per_topic` sports then as many finance texts, labeled sports or
    finance."""
    project = make_project(lead, *members, name="Topics", **fields)
    project.labels.all().delete()
    project.set_labels(["sports", "finance"])
    add_items(project, sports_texts(per_topic) + finance_texts(per_topic))
    return project


@pytest.fixture
def topics(alice: User, bob: User) -> Project:
    """Alice's "Topics" project: 12 sports and 12 finance texts, Bob annotates."""
    return make_topics_project(alice, (bob, Role.ANNOTATOR))


def serve(project: Project, user: User, *items: Item) -> None:
    """Lease these items to the user, as if the queue had served each: a story's shortcut to
    answering a chosen item (Sift takes a first answer only to an item served to its author)."""
    expires = timezone.now() + project.lease_duration()
    for item in items:
        Lease.objects.update_or_create(
            item=item, annotator=user, defaults={"project": project, "expires_at": expires}
        )


def label(project: Project, user: User, item: Item, name: str) -> None:
    serve(project, user, item)
    submit_answer(project, user, item, resolve_labels(project, [name]))


def topic_of(item: Item) -> str:
    return "sports" if "match" in item.text else "finance"


def store_predictions_of(
    project: Project, number: int, predicted: dict[Item, tuple[str, float]]
) -> ModelVersion:
    """A version `number` that predicted these items (label, confidence) and nothing else."""
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        encoder="test",
        strategy="margin",
        labels_used=0,
        snapshot_at=timezone.now(),
    )
    labels = list(project.labels.all())
    index = {label.name: row for row, label in enumerate(labels)}
    items = list(predicted)
    classes = np.array([[index[predicted[item][0]]] for item in items], dtype=np.int16)
    probabilities = np.array([[predicted[item][1]] for item in items], dtype=np.float32)
    PredictionSet.pack(
        version,
        [label.pk for label in labels],
        project.multi_label,
        np.array([item.pk for item in items], dtype=np.int64),
        TopPredictions(classes.reshape(-1, 1), probabilities.reshape(-1, 1)),
        np.zeros(len(items), dtype=bool),
    ).save()
    return version
