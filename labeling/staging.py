"""Uploads kept between an import's preview and the import itself, for one lead and project.

A previewed file is written under SIFT_MEDIA_ROOT/staged-imports with a random token in its
name, beside the project's and the lead's ids: another lead's token opens nothing. Files left
behind (a preview never imported) are removed after STAGED_HOURS.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User

from labeling.models import Project

STAGED_HOURS = 24
_TOKEN = re.compile(r"[0-9a-f]{32}")


def _folder() -> Path:
    folder = Path(settings.MEDIA_ROOT) / "staged-imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _path(project: Project, user: User, token: str) -> Path | None:
    if not _TOKEN.fullmatch(token):
        return None
    return _folder() / f"{project.pk}-{user.pk}-{token}"


def stage(project: Project, user: User, chunks: Iterable[bytes]) -> str:
    """Keep an upload for a later import; returns its token."""
    _sweep()
    token = secrets.token_hex(16)
    path = _path(project, user, token)
    assert path is not None
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return token


def open_staged(project: Project, user: User, token: str) -> IO[bytes] | None:
    """The staged upload, or None when the token is not this lead's or the file is gone."""
    path = _path(project, user, token)
    if path is None or not path.is_file():
        return None
    return path.open("rb")


def discard(project: Project, user: User, token: str) -> None:
    path = _path(project, user, token)
    if path is not None:
        path.unlink(missing_ok=True)


def _sweep() -> None:
    cutoff = time.time() - STAGED_HOURS * 3600
    for path in _folder().iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        except OSError:  # removed by another process meanwhile
            continue
