"""Finding 5 of the penetration test (issue 15): members and accounts.

Alice leads the project, Bob and Dora annotate. Alice adds people on the Members page: new
accounts get Django's password and username checks, members can be removed (their answers
stay), and the project always keeps a lead. Changing one's password is limited like logging in.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse

from labeling import ratelimit
from labeling.models import Annotation, Lease, Project, Role
from labeling.queue import lease_next_item
from tests.conftest import PASSWORD, client_for, label, make_project


@pytest.fixture
def project(alice: User, bob: User, dora: User) -> Project:
    return make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), items=6)


def members_page(project: Project) -> str:
    return reverse("project_members", args=[project.pk])


def add(project: Project, username: str, password: str = "", role: str = "annotator") -> str:
    """Alice submits the add-member form; the page she gets back, as text."""
    lead = project.memberships.filter(role=Role.LEAD).first()
    assert lead is not None
    response = client_for(lead.user).post(
        members_page(project),
        {"username": username, "password": password, "role": role},
        follow=True,
    )
    return response.content.decode()


def remove(project: Project, by: User, user: User) -> str:
    url = reverse("remove_member", args=[project.pk, user.pk])
    return client_for(by).post(url, follow=True).content.decode()


# --- New accounts get Django's checks --------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("1", "This password is too short"),
        ("password123", "This password is too common"),
        ("83749261058", "This password is entirely numeric"),
        ("newcomer99", "too similar to the username"),
    ],
)
def test_alice_cannot_create_an_account_with_a_weak_password(
    project: Project, password: str, complaint: str
) -> None:
    page = add(project, "newcomer", password)

    assert complaint in page
    assert not User.objects.filter(username="newcomer").exists()


@pytest.mark.parametrize("username", ["<img src=x onerror=alert(1)>", '=HYPERLINK("http://x")'])
def test_alice_cannot_create_an_account_whose_name_is_markup_or_a_formula(
    project: Project, username: str
) -> None:
    page = add(project, username, "a long enough password 42")

    assert "Enter a valid username" in page
    assert not User.objects.filter(username=username).exists()


def test_a_name_that_differs_from_an_account_only_in_case_is_not_a_new_account(
    project: Project,
) -> None:
    page = add(project, "BOB", "a long enough password 42")

    assert "An account &#x27;bob&#x27; exists already" in page
    assert User.objects.filter(username__iexact="bob").count() == 1


def test_a_good_name_and_password_make_an_annotator_who_can_log_in(project: Project) -> None:
    form = client_for(project.memberships.get(role=Role.LEAD).user).get(members_page(project))
    assert b'<option value="annotator" selected>' in form.content  # the default role

    add(project, "newcomer", "a long enough password 42")

    newcomer = User.objects.get(username="newcomer")
    assert project.role_of(newcomer) == Role.ANNOTATOR
    assert newcomer.check_password("a long enough password 42")


# --- Removing members -------------------------------------------------------------------------


def test_alice_removes_bob_his_item_goes_to_dora_and_his_answers_stay(
    project: Project, alice: User, bob: User, dora: User
) -> None:
    first = project.items.order_by("pk")[0]
    label(project, bob, first, "positive")
    held = lease_next_item(project, bob)
    assert held is not None

    page = remove(project, alice, bob)

    assert "bob was removed from Reviews; their answers are kept." in page
    assert project.role_of(bob) is None
    assert client_for(bob).get(reverse("annotate", args=[project.pk])).status_code == 404
    assert not Lease.objects.filter(annotator=bob).exists()
    answer = Annotation.objects.get(item=first)
    assert (answer.annotator, answer.label_names()) == (bob, ["positive"])
    assert lease_next_item(project, dora) == held  # what Bob held went back to the pool at once
    export = client_for(alice).get(
        f"/api/v1/projects/{project.pk}/export/", {"format": "jsonl", "annotator": "bob"}
    )
    assert export.status_code == 200
    assert b'"label": "positive"' in b"".join(export.streaming_content)  # type: ignore[attr-defined]


def test_an_annotator_cannot_remove_anyone(project: Project, bob: User, dora: User) -> None:
    url = reverse("remove_member", args=[project.pk, dora.pk])
    assert client_for(bob).post(url).status_code == 404
    assert project.role_of(dora) == Role.ANNOTATOR


def test_the_only_lead_can_neither_leave_nor_be_demoted(project: Project, alice: User) -> None:
    assert "alice is the only lead of Reviews and cannot be removed" in remove(
        project, alice, alice
    )
    page = add(project, "alice", role="annotator")

    assert "alice is the only lead of Reviews and cannot be demoted" in page
    assert project.role_of(alice) == Role.LEAD


def test_alice_hands_the_lead_to_dora_and_lands_on_the_project_page(
    project: Project, alice: User, dora: User
) -> None:
    add(project, "dora", role="lead")
    client = client_for(alice)

    response = client.post(
        members_page(project), {"username": "alice", "role": "reviewer"}, follow=True
    )

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("project_detail", args=[project.pk])
    assert (project.role_of(alice), project.role_of(dora)) == (Role.REVIEWER, Role.LEAD)


@pytest.mark.django_db(transaction=True)
def test_two_leads_demoting_each_other_at_once_leave_one_lead(
    alice: User, bob: User, dora: User
) -> None:
    project = make_project(alice, (dora, Role.LEAD), items=0)
    barrier = threading.Barrier(2)
    refused: list[str] = []

    def demote(user: User) -> None:
        try:
            barrier.wait()
            project.add_member(user, Role.ANNOTATOR)
        except ValidationError as exc:
            refused.append(str(exc))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=demote, args=(user,)) for user in (alice, dora)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert project.memberships.filter(role=Role.LEAD).count() == 1
    assert len(refused) == 1
    assert "is the only lead" in refused[0]


# --- Changing a password is limited like logging in -------------------------------------------


@pytest.fixture
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_clock", lambda: 1_000_440.0)


def test_a_borrowed_session_cannot_guess_bobs_password_on_the_change_page(
    bob: User, one_window: None
) -> None:
    client = client_for(bob)
    url = reverse("password_change")
    attempts = ratelimit.password_change_limit().attempts
    for n in range(attempts):
        wrong = client.post(
            url, {"old_password": f"guess {n}", "new_password1": "x", "new_password2": "x"}
        )
        assert wrong.status_code == 200

    right = client.post(
        url,
        {
            "old_password": PASSWORD,
            "new_password1": "another long password 7",
            "new_password2": "another long password 7",
        },
    )

    assert right.status_code == 429
    assert "Too many wrong current passwords for this account." in right.content.decode()
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)


def test_bob_changes_his_password_after_a_typo_in_the_new_one(bob: User, one_window: None) -> None:
    client = client_for(bob)
    url = reverse("password_change")
    new = "another long password 7"
    for _ in range(ratelimit.password_change_limit().attempts + 2):
        # The right current password, a new one Django refuses: not a guess, not counted.
        weak = client.post(
            url, {"old_password": PASSWORD, "new_password1": "1", "new_password2": "1"}
        )
        assert weak.status_code == 200
        assert "This password is too short" in weak.content.decode()

    done = client.post(url, {"old_password": PASSWORD, "new_password1": new, "new_password2": new})

    assert done.status_code == 302
    bob.refresh_from_db()
    assert bob.check_password(new)


def test_the_log_in_page_says_which_limit_stopped_mallory(
    bob: User, dora: User, one_window: None
) -> None:
    mallory = Client(REMOTE_ADDR="203.0.113.66")
    for n in range(ratelimit.login_limit().attempts):
        mallory.post(reverse("login"), {"username": "bob", "password": f"guess {n}"})
    one_account = mallory.post(reverse("login"), {"username": "bob", "password": "again"})
    assert one_account.status_code == 429
    assert "for this account from your address" in one_account.content.decode()

    spray = ratelimit.login_address_limit().attempts - ratelimit.login_limit().attempts - 1
    for n in range(spray):
        mallory.post(reverse("login"), {"username": f"user{n}", "password": "guess"})
    any_account = mallory.post(reverse("login"), {"username": "dora", "password": "guess"})
    assert any_account.status_code == 429
    assert "from your address, whichever the account" in any_account.content.decode()
