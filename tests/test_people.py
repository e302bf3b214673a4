"""Alice (lead) and Rita (reviewer) watch how Bob and Dora label; Bob and Charlie may not.

The story: in Alice's project every item goes to two annotators. Bob and Dora both answer
items 0-5 and disagree on items 3 and 5; Dora skips items 6 and 7; a file Alice imported
also labeled item 0, which must not count as a person.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from pytest_django import DjangoAssertNumQueries

from labeling.models import (
    Annotation,
    Item,
    Project,
    Role,
    imported_annotator,
)
from labeling.people import (
    agreement,
    annotator_stats,
    disagreements,
    likely_label_errors,
    throughput,
)
from labeling.services import resolve_labels, submit_answer
from modeling.models import ModelVersion
from tests.conftest import client_for, make_project, serve

MONDAY = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
WEDNESDAY = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)


def answer(
    project: Project,
    user: User,
    item: Item,
    label: str | None,
    *,
    seconds: float = 0,
    at: datetime = MONDAY,
) -> None:
    """The user answers (or, with no label, skips) the item at the given time."""
    labels = resolve_labels(project, [label] if label else [])
    serve(project, user, item)
    saved, _ = submit_answer(
        project, user, item, labels, skipped=label is None, seconds_spent=seconds
    )
    Annotation.objects.filter(pk=saved.pk).update(created_at=at)


@pytest.fixture
def overlapped(alice: User, bob: User, dora: User, rita: User) -> Project:
    project = make_project(
        alice,
        (bob, Role.ANNOTATOR),
        (dora, Role.ANNOTATOR),
        (rita, Role.REVIEWER),
        items=10,
        overlap=2,
    )
    items = list(project.items.order_by("pk"))
    bob_says = ["positive", "positive", "negative", "negative", "neutral", "positive"]
    dora_says = ["positive", "positive", "negative", "positive", "neutral", "negative"]
    for index, (mine, hers) in enumerate(zip(bob_says, dora_says, strict=True)):
        day = MONDAY if index < 5 else WEDNESDAY
        answer(project, bob, items[index], mine, seconds=4 + 2 * index, at=day)
        day = MONDAY if index < 3 else WEDNESDAY
        answer(project, dora, items[index], hers, seconds=20, at=day)
    answer(project, bob, items[6], "neutral", seconds=6, at=WEDNESDAY)
    answer(project, dora, items[6], None, seconds=30, at=WEDNESDAY)
    answer(project, dora, items[7], None, seconds=30, at=WEDNESDAY)
    # Sent through the API without a time, so it says nothing about Bob's pace.
    answer(project, bob, items[8], "neutral", seconds=0, at=WEDNESDAY)
    answer(project, imported_annotator(), items[0], "negative")
    return begun(project, MONDAY)


def begun(project: Project, at: datetime) -> Project:
    """The project as if Alice had created it at `at`."""
    Project.objects.filter(pk=project.pk).update(created_at=at)
    project.refresh_from_db()
    return project


def test_it_measures_each_annotators_pace_and_skips(overlapped: Project) -> None:
    stats = {row.username: row for row in annotator_stats(overlapped)}

    assert set(stats) == {"bob", "dora"}
    bob, dora = stats["bob"], stats["dora"]
    # Bob: 7 timed labels in 4+6+8+10+12+14+6 = 60 s; the untimed API answer counts only once.
    assert (bob.answered, bob.skipped, bob.skip_rate) == (8, 0, 0.0)
    assert bob.labels_per_hour == pytest.approx(7 / 60 * 3600)
    assert bob.median_seconds == 8
    # Dora: 6 labels at 20 s each and 2 skips at 30 s: 6 labels in 180 s.
    assert (dora.answered, dora.skipped, dora.skip_rate) == (6, 2, 0.25)
    assert dora.labels_per_hour == pytest.approx(120)
    assert dora.median_seconds == 20


def test_it_computes_kappa_and_alpha_on_the_overlapped_items(overlapped: Project) -> None:
    """Bob and Dora agree on 4 of 6 items, each saying positive 3, negative 2, neutral 1 times.

    kappa: p_o = 4/6, p_e = (9 + 4 + 1) / 36 = 14/36, kappa = (24 - 14) / (36 - 14) = 5/11.
    alpha: n = 12 values, n_pos = 6, n_neg = 4, n_neu = 2; the two disagreeing items give 4
    off-diagonal coincidences, so alpha = 1 - 11 * 4 / (144 - 36 - 16 - 4) = 1 - 44/88 = 0.5.
    """
    result = agreement(overlapped)

    assert result.overlapped_items == 6
    assert result.disagreeing_items == 2
    assert result.alpha == pytest.approx(0.5)
    [pair] = result.pairs
    assert (pair.first, pair.second, pair.shared_items) == ("bob", "dora", 6)
    assert pair.kappa == pytest.approx(5 / 11)


def test_a_pair_with_fewer_than_five_shared_items_gets_no_kappa(
    alice: User, bob: User, dora: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=4)
    for item in project.items.all():
        answer(project, bob, item, "positive")
        answer(project, dora, item, "negative")

    result = agreement(project)

    assert (result.overlapped_items, result.disagreeing_items, result.pairs) == (4, 4, [])
    assert result.alpha is not None


def test_multi_label_answers_agree_only_on_the_same_set(alice: User, bob: User, dora: User) -> None:
    project = make_project(
        alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=2, multi_label=True
    )
    same, different = project.items.order_by("pk")
    for user, names in [(bob, ["neutral", "positive"]), (dora, ["positive", "neutral"])]:
        serve(project, user, same, different)
        submit_answer(project, user, same, resolve_labels(project, names))
    for user, names in [(bob, ["positive"]), (dora, ["positive", "negative"])]:
        submit_answer(project, user, different, resolve_labels(project, names))

    [case] = disagreements(project)

    assert case.item_id == different.pk
    assert [(a.annotator, a.labels) for a in case.answers] == [
        ("bob", ["positive"]),
        ("dora", ["positive", "negative"]),
    ]


def test_it_lists_disagreements_newest_item_first(overlapped: Project) -> None:
    items = list(overlapped.items.order_by("pk"))

    cases = disagreements(overlapped)

    assert [case.item_id for case in cases] == [items[5].pk, items[3].pk]
    assert [(a.annotator, a.labels) for a in cases[0].answers] == [
        ("bob", ["positive"]),
        ("dora", ["negative"]),
    ]
    assert cases[0].text == items[5].text
    assert [case.item_id for case in disagreements(overlapped, limit=1)] == [items[5].pk]


def test_it_lists_labels_a_confident_model_contradicts(overlapped: Project) -> None:
    items = list(overlapped.items.order_by("pk"))
    negative = overlapped.labels.get(name="negative").pk
    neutral = overlapped.labels.get(name="neutral").pk
    # What the latest retrain's out-of-fold models guessed for labeled items.
    suspects = [
        [items[6].pk, negative, 0.97],  # Bob said neutral: listed
        [items[8].pk, negative, 0.85],  # Bob said neutral, but the model is unsure
        [items[4].pk, neutral, 0.99],  # both said neutral since: the model agrees now
        [items[9].pk, negative, 0.99],  # nobody answered it (yet)
    ]
    for number, metrics in enumerate([{"label_errors": []}, {"label_errors": suspects}], 1):
        ModelVersion.objects.create(
            project=overlapped,
            number=number,
            encoder="e",
            strategy="margin",
            labels_used=8,
            snapshot_at=MONDAY,
            metrics=metrics,
        )

    [error] = likely_label_errors(overlapped)

    assert (error.item_id, error.given, error.predicted) == (items[6].pk, ["neutral"], ["negative"])
    assert error.confidence == pytest.approx(0.97)


def test_it_counts_answers_per_annotator_per_day(overlapped: Project) -> None:
    result = throughput(overlapped, until=WEDNESDAY)

    assert result.unit == "day"
    assert result.period_names() == ["Mar 3", "Mar 4", "Mar 5"]
    # Skips are not answers: Dora's two skips on Wednesday are left out.
    assert result.counts == {"bob": [5, 0, 3], "dora": [3, 0, 3]}


def test_a_short_project_is_counted_per_hour(alice: User, bob: User) -> None:
    project = begun(make_project(alice, (bob, Role.ANNOTATOR), items=3), MONDAY)
    first, second, third = project.items.order_by("pk")
    answer(project, bob, first, "positive", at=datetime(2025, 3, 3, 9, 5, tzinfo=UTC))
    answer(project, bob, second, "positive", at=datetime(2025, 3, 3, 9, 55, tzinfo=UTC))
    answer(project, bob, third, "negative", at=datetime(2025, 3, 3, 11, 30, tzinfo=UTC))

    result = throughput(project, until=datetime(2025, 3, 3, 11, 40, tzinfo=UTC))

    assert result.unit == "hour"
    assert result.period_names() == ["Mar 3 09:00", "Mar 3 10:00", "Mar 3 11:00"]
    assert result.counts == {"bob": [2, 0, 1]}


def test_lead_sees_people_agreement_and_the_chart(
    overlapped: Project, alice: User, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    client = client_for(alice)
    # Session, user and project, then one or two reads per section, however many people.
    with django_assert_max_num_queries(17):
        response = client.get(f"/projects/{overlapped.pk}/people/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "<td>bob</td><td>8</td><td>0</td><td>0%</td><td>420.0</td><td>8.0</td>" in page
    assert "<td>bob and dora</td><td>6</td><td>0.45</td>" in page
    assert '<dd id="alpha">0.50</dd>' in page
    # Begun in March 2025, the project is counted per week: bob and dora in the week of Mar 3.
    assert page.count('<rect class="chart-bar"') == 2
    assert f'href="/projects/{overlapped.pk}/people/throughput.csv"' in page


def test_lead_finds_the_page_from_the_project(overlapped: Project, alice: User) -> None:
    response = client_for(alice).get(f"/projects/{overlapped.pk}/")

    assert f'href="/projects/{overlapped.pk}/people/">People and agreement</a>' in (
        response.content.decode()
    )


def test_without_overlap_the_page_says_how_to_get_agreement(project: Project, alice: User) -> None:
    response = client_for(alice).get(f"/projects/{project.pk}/people/")

    assert response.status_code == 200
    assert "Not enough overlap yet — set the project's overlap above 1" in (
        response.content.decode()
    )


def test_reviewer_downloads_the_throughput_csv(overlapped: Project, rita: User) -> None:
    response = client_for(rita).get(f"/projects/{overlapped.pk}/people/throughput.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    # Per week over the project's life, from the week of Mar 3, 2025 up to now, zeros included.
    header, *rows = response.content.decode().splitlines()
    assert header == "period_start,annotator,answers"
    assert rows[:4] == [
        "2025-03-03T00:00:00+00:00,bob,8",
        "2025-03-03T00:00:00+00:00,dora,6",
        "2025-03-10T00:00:00+00:00,bob,0",
        "2025-03-10T00:00:00+00:00,dora,0",
    ]
    assert all(row.endswith(",0") for row in rows[2:])


@pytest.mark.parametrize("path", ["people/", "people/throughput.csv"])
def test_annotators_and_outsiders_get_404(
    overlapped: Project, bob: User, charlie: User, rita: User, path: str
) -> None:
    assert client_for(rita).get(f"/projects/{overlapped.pk}/{path}").status_code == 200
    assert client_for(bob).get(f"/projects/{overlapped.pk}/{path}").status_code == 404
    assert client_for(charlie).get(f"/projects/{overlapped.pk}/{path}").status_code == 404
