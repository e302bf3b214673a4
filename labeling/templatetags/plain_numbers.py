"""Numbers and moments in words a person reads at a glance: the one place pages format them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()

SIGNIFICANT = 3
LARGE = ((1e9, "billion"), (1e6, "million"))
JUST_NOW = timedelta(minutes=1)
# An en dash: for no figure, and between the ends of a range.
DASH = "\u2013"
NOTHING = DASH


@register.filter
def people_number(value: float | str | None) -> str:
    """12,345 with separators; 30.4 million, 1.95 and 0.0183 to three significant digits.

    Anything but a number (None, or "" for a missing variable) is a dash.
    """
    value = _number(value)
    if value is None:
        return NOTHING
    size = abs(value)
    for scale, name in LARGE:
        if size >= scale:
            return f"{_significant(value / scale)} {name}"
    if size >= 10**SIGNIFICANT / 10:
        return f"{round(value):,}"
    return _significant(value)


@register.filter
def money(value: float | str | None, price: float | str | None = None) -> str:
    """ "$0.06", "under $0.01"; 0 at no price per device-hour (``price``) is "not priced"."""
    value, price = _number(value), _number(price)
    if value is None:
        return NOTHING
    if not value:
        return "$0" if price else "not priced"
    if value < 0.01:
        return "under $0.01"
    return f"${value:,.2f}"


@register.filter
def percent(fraction: float | str | None) -> str:
    """A fraction as a whole percentage: 0.594 is "59%"."""
    fraction = _number(fraction)
    return NOTHING if fraction is None else f"{round(100 * fraction)}%"


@register.filter
def percent_range(pair: tuple[float, float] | list[float] | None) -> str:
    """An interval of fractions as "40-80%", with an en dash."""
    low = _number(pair[0]) if pair else None
    if pair is None or low is None:
        return NOTHING
    return f"{round(100 * low)}{DASH}{percent(pair[1])}"


@register.filter
def ago(moment: datetime | None) -> str:
    """ "just now" for the last minute, then "2 minutes ago", "3 hours ago"."""
    if not isinstance(moment, datetime):
        return ""
    if timezone.now() - moment < JUST_NOW:
        return "just now"
    return f"{timesince(moment, depth=1)} ago"


def _number(value: object) -> float | None:
    """A number as it came, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _significant(value: float) -> str:
    """``value`` to SIGNIFICANT digits, in plain decimals (no exponent, no trailing zeros)."""
    if value == 0:
        return "0"
    decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    text = f"{round(value, decimals):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
