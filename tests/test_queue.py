"""Bob and Dora label the same project: each gets their own item, leases expire, order is ranked."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from labeling.models import Annotation, Item, Lease, Project, QueueEntry, Role
from labeling.queue import lease_next_item
from labeling.services import resolve_labels, submit_answer
from tests.conftest import make_project, make_user, serve


@pytest.fixture
def team(alice: User, bob: User, dora: User) -> Project:
    return make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=5)


def answer(project: Project, user: User, item: Item, label: str = "positive") -> Annotation:
    serve(project, user, item)
    annotation, _ = submit_answer(project, user, item, resolve_labels(project, [label]))
    return annotation


def test_each_annotator_gets_a_different_item(team: Project, bob: User, dora: User) -> None:
    first = lease_next_item(team, bob)
    second = lease_next_item(team, dora)

    assert first is not None
    assert second is not None
    assert first != second


def test_reloading_serves_the_same_item_until_it_is_answered(team: Project, bob: User) -> None:
    first = lease_next_item(team, bob)
    assert first is not None
    assert lease_next_item(team, bob) == first

    answer(team, bob, first)

    assert lease_next_item(team, bob) not in (first, None)


def test_an_expired_lease_goes_back_to_the_pool(team: Project, bob: User, dora: User) -> None:
    team.items.exclude(pk=team.items.first().pk).delete()  # type: ignore[union-attr]
    item = lease_next_item(team, bob)
    assert lease_next_item(team, dora) is None

    Lease.objects.filter(item=item).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert lease_next_item(team, dora) == item


def test_the_ranked_queue_comes_first_then_random_order(team: Project, bob: User) -> None:
    items = list(team.items.order_by("id"))
    QueueEntry.objects.create(project=team, item=items[3], rank=0, score=0.9)
    QueueEntry.objects.create(project=team, item=items[1], rank=1, score=0.8)

    served = []
    while (item := lease_next_item(team, bob)) is not None:
        served.append(item)
        answer(team, bob, item)

    assert served[:2] == [items[3], items[1]]
    assert set(served) == set(items)


def test_a_fully_answered_item_leaves_the_ranked_queue_at_once(
    alice: User, bob: User, dora: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=3, overlap=2)
    items = list(project.items.order_by("id"))
    for rank, item in enumerate(items):
        QueueEntry.objects.create(project=project, item=item, rank=rank, score=1.0)

    serve(project, bob, items[1])
    submit_answer(project, bob, items[1], [], skipped=True)
    answer(project, bob, items[0])
    assert set(QueueEntry.objects.values_list("item", flat=True)) == {i.pk for i in items}

    answer(project, dora, items[0])

    # Two answers of two: served out; the skipped and half-answered items keep their rank.
    assert set(QueueEntry.objects.values_list("item", flat=True)) == {items[1].pk, items[2].pk}
    assert lease_next_item(project, dora) == items[1]


def test_a_renewed_lease_on_an_item_replaces_the_expired_one(team: Project, bob: User) -> None:
    item = lease_next_item(team, bob)
    Lease.objects.filter(item=item).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert lease_next_item(team, bob) == item
    lease = Lease.objects.get(item=item, annotator=bob)
    assert lease.expires_at > timezone.now()


def test_overlap_serves_each_item_to_several_annotators(alice: User, bob: User, dora: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=1, overlap=2)
    item = project.items.get()

    assert lease_next_item(project, bob) == item
    assert lease_next_item(project, dora) == item
    answer(project, bob, item)
    answer(project, dora, item, "negative")

    item.refresh_from_db()
    assert item.answer_count == 2
    assert lease_next_item(project, bob) is None


def test_a_skipped_item_stays_in_the_pool_for_others(team: Project, bob: User, dora: User) -> None:
    team.items.exclude(pk=team.items.first().pk).delete()  # type: ignore[union-attr]
    item = lease_next_item(team, bob)
    assert item is not None
    submit_answer(team, bob, item, [], skipped=True)

    assert lease_next_item(team, bob) is None
    assert lease_next_item(team, dora) == item


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_share_an_item_and_lose_no_answer() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency guarantee is tested on PostgreSQL")
    lead = make_user("lead")
    workers = [make_user(f"annotator{i}") for i in range(8)]
    project = make_project(lead, *[(w, Role.ANNOTATOR) for w in workers], items=120)
    label = resolve_labels(project, ["positive"])
    served: dict[str, list[int]] = {w.username: [] for w in workers}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def label_until_empty(user: User) -> None:
        try:
            barrier.wait()
            while (item := lease_next_item(project, user)) is not None:
                served[user.username].append(item.pk)
                submit_answer(project, user, item, label)
                # A retried request (same client id) must not create a second answer.
                annotation = Annotation.objects.get(item=item, annotator=user)
                submit_answer(project, user, item, label, client_id=annotation.client_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=label_until_empty, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    all_served = [pk for pks in served.values() for pk in pks]
    assert len(all_served) == len(set(all_served)) == 120
    assert Annotation.objects.filter(item__project=project).count() == 120
    assert set(Item.objects.filter(project=project).values_list("answer_count", flat=True)) == {1}
    assert sum(1 for pks in served.values() if pks) > 1


@pytest.mark.django_db(transaction=True)
def test_bob_is_served_while_a_retrain_commits_the_new_queue(alice: User, bob: User) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    project = make_project(alice, (bob, Role.ANNOTATOR), items=10)
    items = list(project.items.order_by("pk"))
    QueueEntry.objects.bulk_create(
        [QueueEntry(project=project, item=item, rank=r) for r, item in enumerate(items)]
    )
    written, done = threading.Event(), threading.Event()

    def write_queue() -> None:
        # replace_queue's transaction, held at the instant its commit checks the foreign keys
        # (made immediate here, so that instant lasts until `done`).
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                QueueEntry.objects.filter(project=project).delete()
                QueueEntry.objects.bulk_create(
                    [QueueEntry(project=project, item=item, rank=r) for r, item in enumerate(items)]
                )
                written.set()
                done.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=write_queue)
    worker.start()
    try:
        assert written.wait(10)
        served = lease_next_item(project, bob)
    finally:
        done.set()
        worker.join()

    assert served is not None  # not "nothing left for you" while the queue is rewritten
