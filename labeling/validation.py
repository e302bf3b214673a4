"""Small checks shared by the pages, the API and the import: bad input gets a clear message."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

NUL = "\x00"
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_WHOLE_NUMBER = re.compile(r"[0-9]+")
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


def validate_name_text(value: str) -> None:
    """A name is one line of visible text: no line breaks, tabs or other control characters
    (they break CSV rows, log lines and the pages' layout)."""
    bad = next((c for c in value if unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise ValidationError(
            f"Names cannot hold line breaks or control characters (found U+{ord(bad):04X}).",
            code="control_character",
        )


def validate_color(value: str) -> None:
    """A label colour: #rrggbb."""
    if not _COLOR.fullmatch(value):
        raise ValidationError(f"{value!r} is not a colour; write it as #rrggbb, e.g. #1f77b4.")


def validate_hotkey(value: str) -> None:
    """A label's key: one letter or digit (space, Enter and Backspace skip, submit and undo)."""
    if value and not (len(value) == 1 and value.isascii() and value.isalnum()):
        raise ValidationError(f"{value!r} cannot be a key; use one letter or digit.")


def validate_encoder_folder(value: str) -> None:
    """An encoder is empty (the built-in MiniLM) or a local Hugging Face model folder."""
    path = value.strip()
    if not path:
        return
    try:
        found = (Path(path) / "config.json").is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in it
        found = False
    if not found:
        raise ValidationError(f"{path} is not a Hugging Face model folder (no config.json).")


def parse_whole_number(raw: str, name: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high`` in ASCII digits (``str.isdigit`` also passes
    "²", which ``int`` refuses), or a ValidationError saying so."""
    text = raw.strip()
    if not _WHOLE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise ValidationError(f"{name} must be a whole number from {low} to {high}, not {raw!r}.")
    return int(text)


def label_key(name: str) -> str:
    """A label name as matching sees it: case and runs of spaces do not count, so `world ` is
    `World`, and a project cannot have both."""
    return " ".join(name.split()).casefold()
