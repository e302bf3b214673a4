"""Counting attempts per client in Django's cache, so password and token guessing stalls.

Counters live in the cache (Redis in production, files under SIFT_VAR_DIR otherwise), so every
web process sees the same counts. An attempt is counted before it is acted on (Redis INCR), so
concurrent requests cannot all slip in under the limit. When the cache cannot be reached the
limits are not enforced: logging in must not depend on Redis being up.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Seconds since the epoch; tests replace it to step past a window.
_clock: Callable[[], float] = time.time
_CACHE_DOWN = (RedisError, OSError)


@dataclass(frozen=True)
class Blocked:
    """A refused attempt: how long to wait, and which limit refused it, in words."""

    seconds: int
    reason: str

    @property
    def wait(self) -> str:
        return wait_in_words(self.seconds)


@dataclass(frozen=True)
class RateLimit:
    """At most `attempts` counted events per key in each fixed window of `window` seconds."""

    scope: str
    attempts: int
    window: int
    # What the limit counts, as the person refused reads it.
    reason: str = "Too many attempts."

    def attempt(self, key: str) -> int | None:
        """Count an event before acting on it; the seconds to wait when it is over the limit.

        The count goes up first and the answer comes from its new value, so of many concurrent
        requests each sees a count of its own and no more than `attempts` get through.
        """
        now = _clock()
        count = self._increment(self._cache_key(key, now))
        if count is None or count <= self.attempts:
            return None
        return max(1, math.ceil(self.window - now % self.window))

    def refund(self, key: str) -> None:
        """Take back one event counted in the current window: it turned out not to count."""
        try:
            cache.decr(self._cache_key(key, _clock()))
        except ValueError:  # the counter expired meanwhile; nothing to take back
            pass
        except _CACHE_DOWN as exc:
            log.warning("Rate limit %s not refunded, the cache is unreachable: %s", self.scope, exc)

    def _increment(self, cache_key: str) -> int | None:
        try:
            # add() then incr() is atomic on Redis (INCR); the file cache may miss a concurrent hit.
            cache.add(cache_key, 0, timeout=self.window + 1)
            return cache.incr(cache_key)
        except ValueError:  # the counter expired between add() and incr()
            cache.set(cache_key, 1, timeout=self.window + 1)
            return 1
        except _CACHE_DOWN as exc:
            log.warning("Rate limit %s not counted, the cache is unreachable: %s", self.scope, exc)
            return None

    def _cache_key(self, key: str, now: float) -> str:
        # Hashed: usernames and addresses stay out of the cache, and any character is safe.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"ratelimit:{self.scope}:{int(now // self.window)}:{digest}"


def login_limit() -> RateLimit:
    """Failed log-ins for one username from one address."""
    return RateLimit(
        "login",
        settings.SIFT_LOGIN_ATTEMPTS,
        settings.SIFT_RATE_LIMIT_WINDOW,
        "Too many failed log-ins for this account from your address.",
    )


def login_address_limit() -> RateLimit:
    """Failed log-ins from one address, whatever the username: spraying many accounts."""
    return RateLimit(
        "login-address",
        settings.SIFT_LOGIN_ADDRESS_ATTEMPTS,
        settings.SIFT_RATE_LIMIT_WINDOW,
        "Too many failed log-ins from your address, whichever the account.",
    )


def password_change_limit() -> RateLimit:
    """Wrong current passwords given to change one account's password: a borrowed session
    must not become a way to guess the password."""
    return RateLimit(
        "password-change",
        settings.SIFT_LOGIN_ATTEMPTS,
        settings.SIFT_RATE_LIMIT_WINDOW,
        "Too many wrong current passwords for this account.",
    )


@dataclass(frozen=True)
class LoginAttempt:
    """One password tried: counted for its address, and for its username from that address."""

    address: str
    username: str

    @classmethod
    def of(cls, request: HttpRequest) -> LoginAttempt:
        username = str(request.POST.get("username", "")).strip().lower()
        return cls(client_ip(request), username)

    def start(self) -> Blocked | None:
        """Count the attempt before its password is checked; what refused it, when over."""
        # Both counters go up, even when the first is already over its limit.
        return first_refusal([(limit, limit.attempt(key)) for limit, key in self._counters()])

    def succeeded(self) -> None:
        """The right password is not a failure: take its count back."""
        for limit, key in self._counters():
            limit.refund(key)

    def _counters(self) -> list[tuple[RateLimit, str]]:
        return [
            (login_limit(), f"{self.address} {self.username}"),
            (login_address_limit(), self.address),
        ]


def first_refusal(counted: list[tuple[RateLimit, int | None]]) -> Blocked | None:
    """Of the limits an attempt was counted against, the one that makes it wait longest."""
    over = [(wait, limit) for limit, wait in counted if wait is not None]
    if not over:
        return None
    wait, limit = max(over, key=lambda pair: pair[0])
    return Blocked(wait, limit.reason)


def token_creation_limit() -> RateLimit:
    """API tokens one user creates."""
    return RateLimit("token-create", settings.SIFT_TOKEN_ATTEMPTS, settings.SIFT_RATE_LIMIT_WINDOW)


def bad_token_limit() -> RateLimit:
    """API requests with an unknown or revoked token from one address."""
    return RateLimit("token-auth", settings.SIFT_TOKEN_ATTEMPTS, settings.SIFT_RATE_LIMIT_WINDOW)


def client_ip(request: HttpRequest) -> str:
    """The caller's address; behind a proxy, the one the proxy appended to X-Forwarded-For."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(request.META.get("REMOTE_ADDR", ""))


def wait_in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def too_many_requests(response: HttpResponse, seconds: int) -> HttpResponse:
    """Mark a page as a 429 that says when to come back."""
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response
