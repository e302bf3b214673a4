"""Small checks shared by the pages, the API and the import: bad input gets a clear message."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

NUL = "\x00"
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off", ""})


def contains_nul(value: object) -> bool:
    """True if a string anywhere in the value holds a NUL character, which PostgreSQL refuses."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


def parse_iso_time(raw: str) -> datetime:
    """An ISO 8601 time (naive ones are taken as the site's time zone), or a ValidationError."""
    try:
        parsed = parse_datetime(raw.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationError(f"{raw!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z.")
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


def parse_flag(value: str | None, name: str) -> bool:
    """A yes/no query parameter: 1/true/yes/on or 0/false/no/off in any case; empty is no."""
    word = (value or "").strip().lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise ValidationError(
        f"{name} takes 1 or 0 (or true/false, yes/no, on/off), not {value!r}.", code="invalid"
    )
