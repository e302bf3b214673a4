"""CSV that a spreadsheet opens as data: no cell of text is taken for a formula.

Item texts, usernames and label names come from users. Excel, LibreOffice and Google Sheets
run a cell that starts with = + - @ (or a tab or carriage return before one) as a formula,
which can fetch URLs or run commands on the machine of whoever opens the export. Following
OWASP's advice such a cell goes out with a single quote in front; numbers stay numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(value: str) -> bool:
    """Text a spreadsheet would run, or one that only quotes in front keep from it: a text that
    itself starts with `'=` gets its own `'` too, so the import takes exactly one off."""
    return value.lstrip("'").startswith(FORMULA_STARTS)


def spreadsheet_safe(value: object) -> object:
    """The cell with a `'` in front when it is text that starts like a formula, else as it is."""
    if isinstance(value, str) and looks_like_formula(value):
        return f"'{value}"
    return value


class SafeCsvWriter:
    """A csv.writer that makes every cell spreadsheet-safe; every CSV Sift writes uses it."""

    def __init__(self, stream: SupportsWrite[str]) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([spreadsheet_safe(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)
