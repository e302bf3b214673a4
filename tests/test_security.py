"""Findings of the penetration test (issue 15), each replayed as the attack a user would try.

Alice leads the project, Bob annotates, Rita reviews, Charlie is an outsider. Each finding has
its own section below; add new findings at the end, under a header of their own.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from labeling.csv_safety import spreadsheet_safe
from labeling.models import Annotation, Project, Role, Webhook
from labeling.tasks import deliver_webhook
from modeling.models import ModelVersion
from tests.conftest import add_items, client_for, label, make_project

# --- Finding 1: webhooks reach into the deployment's own network (SSRF) ----------------------
#
# A lead registered internal URLs as webhooks; the worker POSTed there, and `last_status`
# ("Connection refused" or "Remote end closed connection") told open ports from closed ones.

PUBLIC_ADDRESS = "93.184.215.14"

INTERNAL_URLS = [
    "http://127.0.0.1:5432/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.5/hook",
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://[::1]:8000/hook",
    "http://localhost:6379/",
    "http://0.0.0.0:8000/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://224.0.0.1/",
]


@dataclass
class FakeDNS:
    """Answers for the names a story owns; every other name goes to the real resolver. A name
    with several answers gives them in turn and then keeps the last, as a rebinding attacker's
    server does."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def point(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in fake.answers:
            return real(host, port, *args, **kwargs)
        fake.lookups.append(host)
        queue = fake.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


@dataclass
class Request:
    method: str
    path: str
    headers: Message


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers `status` (with
    `location` as the Location header), or closes the connection without a word when `status`
    is None."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    status: int | None = 200
    location: str = ""

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks/sift"


@pytest.fixture
def start_receiver() -> Iterator[Any]:
    """Starts receivers on demand; each is shut down when the story ends."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start() -> Receiver:
        state = Receiver()

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                state.requests.append(Request(self.command, self.path, self.headers))
                if state.status is None:
                    self.close_connection = True
                    return
                self.send_response(state.status)
                if state.location:
                    self.send_header("Location", state.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        state.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return state

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def add_webhook(alice: User, project: Project, url: str) -> HttpResponse:
    body = {"url": url, "events": ["model.promoted"]}
    response: HttpResponse = client_for(alice).post(
        reverse("webhook-list", args=[project.pk]), body, content_type="application/json"
    )
    return response


def make_webhook(project: Project, url: str) -> Webhook:
    """A webhook stored as it is, as one saved before the check existed would be."""
    return Webhook.objects.create(
        project=project, url=url, secret="s3cret", events=[Webhook.Event.MODEL_PROMOTED]
    )


def deliver_and_reload(webhook: Webhook) -> Webhook:
    """Run the delivery task as a worker would, retries included; it must end without error."""
    result = deliver_webhook.apply(args=[webhook.pk, "model.promoted", {"version": 2}, "d-1"])
    assert result.successful(), result.traceback
    webhook.refresh_from_db()
    return webhook


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_alice_cannot_point_a_webhook_at_an_internal_address(
    project: Project, alice: User, url: str
) -> None:
    response = add_webhook(alice, project, url)

    assert response.status_code == 400
    [message] = response.json()["url"]
    assert "public" in message
    assert not Webhook.objects.exists()


def test_a_name_is_refused_when_any_of_its_addresses_is_internal(
    project: Project, alice: User, dns: FakeDNS
) -> None:
    dns.point("hooks.attacker.example", [PUBLIC_ADDRESS, "10.0.0.7"])

    response = add_webhook(alice, project, "https://hooks.attacker.example/hook")

    assert response.status_code == 400
    assert response.json()["url"] == [
        "hooks.attacker.example resolves to 10.0.0.7, which is a private address; "
        "webhooks go to public addresses only."
    ]


def test_alice_cannot_move_a_webhook_to_an_internal_address(project: Project, alice: User) -> None:
    webhook = make_webhook(project, "https://hooks.partner.example/sift")
    detail = reverse("webhook-detail", args=[project.pk, webhook.pk])
    client = client_for(alice)

    put = client.put(
        detail,
        {"url": "http://169.254.169.254/", "events": ["model.promoted"]},
        content_type="application/json",
    )
    patch = client.patch(detail, {"url": "http://[::1]:6379/"}, content_type="application/json")

    assert (put.status_code, patch.status_code) == (400, 400)
    webhook.refresh_from_db()
    assert webhook.url == "https://hooks.partner.example/sift"


def test_a_public_receiver_is_accepted(project: Project, alice: User, dns: FakeDNS) -> None:
    dns.point("hooks.partner.example", [PUBLIC_ADDRESS])

    response = add_webhook(alice, project, "https://hooks.partner.example/sift")

    assert response.status_code == 201
    assert Webhook.objects.get().url == "https://hooks.partner.example/sift"


def test_a_name_that_does_not_resolve_yet_is_saved_and_checked_at_each_delivery(
    project: Project, alice: User
) -> None:
    # .invalid never resolves (RFC 6761): a receiver whose DNS record is not live yet.
    assert add_webhook(alice, project, "https://hooks.sift.invalid/hook").status_code == 201

    result = deliver_webhook.apply(args=[Webhook.objects.get().pk, "model.promoted", {}, "d-1"])

    assert result.failed()
    assert Webhook.objects.get().last_status == "Failed: could not deliver"


def test_a_deployment_may_allow_its_private_network_but_never_this_machine(
    project: Project, alice: User, settings: Settings
) -> None:
    settings.SIFT_WEBHOOK_ALLOW_PRIVATE = True

    allowed = [
        add_webhook(alice, project, url).status_code
        for url in ["http://10.0.0.5/hook", "http://192.168.1.1/hook", "http://[fd12::5]/hook"]
    ]
    refused = [
        add_webhook(alice, project, url).status_code
        for url in [
            "http://127.0.0.1:5432/",
            "http://localhost/",
            "http://0.0.0.0/",
            "http://169.254.169.254/",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/",
        ]
    ]

    assert allowed == [201, 201, 201]
    assert refused == [400] * 6


def test_a_url_stored_before_the_fix_is_refused_at_delivery(
    project: Project, start_receiver: Any
) -> None:
    internal = start_receiver()
    webhook = make_webhook(project, internal.url())

    webhook = deliver_and_reload(webhook)

    assert internal.requests == []
    assert webhook.last_status.startswith("Refused: 127.0.0.1 is a loopback address")


def test_a_name_rebound_to_an_internal_address_after_saving_is_refused_at_delivery(
    project: Project, alice: User, dns: FakeDNS, start_receiver: Any
) -> None:
    internal = start_receiver()
    dns.point("hooks.attacker.example", [PUBLIC_ADDRESS])
    assert add_webhook(alice, project, internal.url("hooks.attacker.example")).status_code == 201
    dns.point("hooks.attacker.example", ["127.0.0.1"])

    webhook = deliver_and_reload(Webhook.objects.get())

    assert internal.requests == []
    assert webhook.last_status == (
        "Refused: hooks.attacker.example resolves to 127.0.0.1, which is a loopback address; "
        "webhooks go to public addresses only."
    )


def test_a_delivery_goes_to_the_address_that_was_checked(
    project: Project, dns: FakeDNS, start_receiver: Any, settings: Settings
) -> None:
    settings.SIFT_WEBHOOK_ALLOW_LOOPBACK = True
    receiver = start_receiver()
    # Checked once, then the name points elsewhere: a second lookup would send it there.
    dns.point("hooks.example.test", ["127.0.0.1"], ["192.0.2.1"])
    webhook = make_webhook(project, receiver.url("hooks.example.test"))

    webhook = deliver_and_reload(webhook)

    assert dns.lookups == ["hooks.example.test"]
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/sift")
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert webhook.last_status == "HTTP 200"


def test_a_redirect_is_recorded_and_not_followed(
    project: Project, start_receiver: Any, settings: Settings
) -> None:
    settings.SIFT_WEBHOOK_ALLOW_LOOPBACK = True
    receiver, internal = start_receiver(), start_receiver()
    receiver.status, receiver.location = 302, internal.url()
    webhook = make_webhook(project, receiver.url())

    webhook = deliver_and_reload(webhook)

    assert len(receiver.requests) == 1  # a redirect is an answer: not retried
    assert internal.requests == []
    assert webhook.last_status == "HTTP 302 (redirect not followed)"


def test_a_failed_delivery_does_not_say_why(
    project: Project, start_receiver: Any, settings: Settings
) -> None:
    settings.SIFT_WEBHOOK_ALLOW_LOOPBACK = True
    silent = start_receiver()
    silent.status = None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    open_port = make_webhook(project, silent.url())
    closed = make_webhook(project, f"http://127.0.0.1:{closed_port}/hook")

    statuses = set()
    for webhook in (open_port, closed):
        result = deliver_webhook.apply(args=[webhook.pk, "model.promoted", {}, "d-1"])
        assert result.failed()  # network errors are retried, then given up
        webhook.refresh_from_db()
        statuses.add(webhook.last_status)

    assert silent.requests
    assert statuses == {"Failed: could not deliver"}


# --- Finding 6: CSV cells that spreadsheets run as formulas ----------------------------------
#
# Item texts, usernames and label names went into every CSV as they were; a spreadsheet opening
# the file ran `=cmd|' /C calc'!A0` or `=HYPERLINK(...)` on the reader's machine.

FORMULA_TEXT = "=cmd|' /C calc'!A0"
FORMULA_USERNAME = '=HYPERLINK("http://x")'
FORMULA_LABEL = "+escalate"


@pytest.fixture
def hostile(alice: User) -> Project:
    """Alice's project where an annotator named like a formula gave a formula label to a
    formula text."""
    mallory = User.objects.create_user(FORMULA_USERNAME)
    project = make_project(alice, (mallory, Role.ANNOTATOR), name="Hostile")
    project.labels.all().delete()
    project.set_labels([FORMULA_LABEL, "keep"])
    [item] = add_items(project, [FORMULA_TEXT])
    label(project, mallory, item, FORMULA_LABEL)
    Annotation.objects.update(created_at=datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    ModelVersion.objects.create(
        project=project,
        number=1,
        encoder="hashing",
        strategy="margin",
        labels_used=1,
        pool_size=1,
        snapshot_at=timezone.now(),
        metrics={
            "evaluation": {
                "accuracy": 1.0,
                "n": 1,
                "per_class": {FORMULA_LABEL: {"precision": 1.0, "recall": 1.0, "support": 1}},
                "confusion": {"labels": [FORMULA_LABEL], "matrix": [[1]]},
            }
        },
    )
    return project


def csv_cells(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode())))


def export(alice: User, project: Project, fmt: str) -> bytes:
    response = client_for(alice).get(
        f"/api/v1/projects/{project.pk}/export/", {"format": fmt, "answers": "1"}
    )
    assert response.status_code == 200
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_the_item_export_csv_defuses_formulas(hostile: Project, alice: User) -> None:
    header, row = csv_cells(export(alice, hostile, "csv"))

    cells = dict(zip(header, row, strict=True))
    assert cells["text"] == f"'{FORMULA_TEXT}"
    assert cells["label"] == f"'{FORMULA_LABEL}"
    assert cells["labels"] == f"'{FORMULA_LABEL}"
    assert cells["answers_count"] == "1"


def test_the_jsonl_export_keeps_the_raw_text(hostile: Project, alice: User) -> None:
    [row] = [json.loads(line) for line in export(alice, hostile, "jsonl").splitlines()]

    assert (row["text"], row["label"]) == (FORMULA_TEXT, FORMULA_LABEL)
    assert row["answers"][0]["annotator"] == FORMULA_USERNAME


def test_the_throughput_csv_defuses_formula_usernames(hostile: Project, rita: User) -> None:
    hostile.add_member(rita, Role.REVIEWER)

    response = client_for(rita).get(f"/projects/{hostile.pk}/people/throughput.csv")

    header, *rows = csv_cells(response.content)
    assert header == ["period_start", "annotator", "answers"]
    # Every period since the project began is listed, the empty ones with 0.
    assert [row[1:] for row in rows if row[2] != "0"] == [[f"'{FORMULA_USERNAME}", "1"]]
    assert all(not row[1].startswith("=") for row in rows)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("labels", [["label", "answers"], [f"'{FORMULA_LABEL}", "1"], ["keep", "0"]]),
        (
            "per-class",
            [
                ["version", "label", "precision", "recall", "support"],
                ["1", f"'{FORMULA_LABEL}", "1.0", "1.0", "1"],
            ],
        ),
        ("confusion", [["true/predicted", f"'{FORMULA_LABEL}"], [f"'{FORMULA_LABEL}", "1"]]),
    ],
)
def test_the_model_report_csvs_defuse_formula_label_names(
    hostile: Project, alice: User, table: str, expected: list[list[str]]
) -> None:
    response = client_for(alice).get(reverse("model_report_csv", args=[hostile.pk, table]))

    assert csv_cells(response.content) == expected


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        (-1, -1),
        (-0.5, -0.5),
    ],
)
def test_only_text_that_starts_like_a_formula_is_prefixed(cell: object, written: object) -> None:
    assert spreadsheet_safe(cell) == written
