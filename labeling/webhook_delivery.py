"""Webhook delivery, in a worker: sign a JSON body, POST it to the URL, record the outcome.

Webhook URLs come from leads, and the worker sits inside the deployment's network, so a URL
may only lead to a public address (`checked_target`): the API refuses other URLs when they are
saved, and every delivery checks again, because what a name resolves to can change in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from labeling.models import Webhook

TIMEOUT_SECONDS = 5
# Whatever went wrong on the network, the lead sees this: naming the cause ("connection
# refused" or "closed without a response") would tell them which internal ports are open.
UNDELIVERED = "Failed: could not deliver"
# Cloud metadata services hand out credentials to anything on the machine that asks.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DeliveryFailed(Exception):
    """The receiver could not be reached or answered with a server error; worth retrying."""


class UnsafeURL(ValueError):
    """The URL leads somewhere a webhook must not go: not http(s), or not a public address."""


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL's parts, and the checked addresses its host resolved to."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body with the webhook's secret, in hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def refuse_unsafe_url(url: str) -> None:
    """Raise UnsafeURL when the URL may not receive webhooks.

    A name that does not resolve right now passes: it leads nowhere yet, and each delivery
    resolves and checks it again.
    """
    with contextlib.suppress(OSError):
        checked_target(url)


def checked_target(url: str) -> Target:
    """Parse the URL and resolve its host, checking every address it resolves to.

    Raises UnsafeURL for a URL that is not http(s) or whose host is, or resolves to, an address
    outside the public internet (SIFT_WEBHOOK_ALLOW_PRIVATE lets private networks in), and
    OSError when the name does not resolve.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Webhook URLs must start with http:// or https://.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL("The URL has no host.")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURL("The URL's port is not a valid port number.") from None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if host in METADATA_HOSTS:
        raise UnsafeURL(f"{host} is a cloud metadata service; webhooks go to public hosts only.")
    addresses = _resolve(host, port)
    for address in addresses:
        kind = _forbidden_kind(ipaddress.ip_address(address))
        if kind is not None:
            shown = host if host == address else f"{host} resolves to {address}, which"
            raise UnsafeURL(f"{shown} is {kind}; webhooks go to public addresses only.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses)


def deliver(
    webhook_id: int, event: str, payload: dict[str, Any], delivery_id: str | None = None
) -> int | None:
    """POST the payload, signed, to the webhook; returns the receiver's HTTP status.

    Returns None when the webhook was deleted or deactivated meanwhile, or its URL now leads
    somewhere webhooks may not go (recorded, not retried). Raises DeliveryFailed on network
    errors and 5xx answers, after recording them, so the task can retry with the same delivery
    id (receivers use it to drop duplicates). Redirects are recorded, never followed: the
    checks above hold for the URL the lead gave, not for wherever a receiver points next.
    """
    webhook = Webhook.objects.filter(pk=webhook_id, active=True).first()
    if webhook is None:
        return None
    body = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Sift-Webhooks/1",
        "X-Sift-Event": event,
        "X-Sift-Signature": f"sha256={sign(webhook.secret, body)}",
        "X-Sift-Delivery": delivery_id or str(uuid.uuid4()),
    }
    try:
        code = _post(checked_target(webhook.url), body, headers)
    except UnsafeURL as exc:
        _record(webhook, f"Refused: {exc}")
        return None
    except (OSError, http.client.HTTPException) as exc:
        _record(webhook, UNDELIVERED)
        # The cause goes to the worker's log with the retry, for the operator.
        raise DeliveryFailed(f"{webhook.url}: {exc!r}") from exc
    _record(
        webhook, f"HTTP {code} (redirect not followed)" if 300 <= code < 400 else f"HTTP {code}"
    )
    if code >= 500:
        raise DeliveryFailed(f"{webhook.url} answered HTTP {code}")
    return code


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise UnsafeURL("The URL's host is not a valid host name.") from None
    return tuple(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))


def _forbidden_kind(address: IPAddress) -> str | None:
    """What kind of address this is, when webhooks may not go there; None when they may."""
    if isinstance(address, ipaddress.IPv6Address):
        # The kernel connects an IPv4-mapped address to the IPv4 address itself, and a 6to4
        # address carries one too: judge the address that is really reached.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return _forbidden_kind(embedded)
        if address.is_site_local:
            return "a site-local address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if settings.SIFT_WEBHOOK_ALLOW_LOOPBACK else "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_global or settings.SIFT_WEBHOOK_ALLOW_PRIVATE:
        return None
    return "a private address"


def _post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _CheckedHTTPSConnection(target, TIMEOUT_SECONDS)
    else:
        connection = _CheckedHTTPConnection(target, TIMEOUT_SECONDS)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _open_socket(target: Target, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the target's checked addresses that answers."""
    error: OSError = OSError(f"no address for {target.host}")
    for address in target.addresses:
        try:
            return socket.create_connection((address, target.port), timeout)
        except OSError as exc:
            error = exc
    raise error


# http.client would resolve the host name again when it connects, and the answer might differ
# from the one just checked; these connect to the checked addresses and keep the name for the
# Host header and, over TLS, for SNI and the certificate check.


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = _open_socket(self.target, self.timeout)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.target = target

    def connect(self) -> None:
        sock = _open_socket(self.target, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.target.host)
        except BaseException:
            sock.close()
            raise


def _record(webhook: Webhook, outcome: str) -> None:
    Webhook.objects.filter(pk=webhook.pk).update(
        last_status=outcome[:200], last_delivery_at=timezone.now()
    )
