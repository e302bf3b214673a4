"""python manage.py import_items PROJECT FILE: stream a CSV, TSV, JSONL or TXT file in."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from labeling.import_jobs import import_now
from labeling.importing import ImportFailed, ImportOptions
from labeling.models import Project
from labeling.parsers import FORMATS, Columns, ParseError, guess_format


def find_project(reference: str) -> Project:
    """A project by id or by exact name."""
    project = None
    if reference.isascii() and reference.isdigit():
        project = Project.objects.filter(pk=int(reference)).first()
    project = project or Project.objects.filter(name=reference).first()
    if project is None:
        raise CommandError(f"No project with id or name {reference!r}.")
    return project


class Command(BaseCommand):
    help = "Import items (optionally labeled) from a CSV, TSV, JSONL or TXT file."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project", help="project id or name")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=FORMATS, help="default: from the extension")
        parser.add_argument(
            "--text-column",
            help="column name (or 1-based position); several joined by commas are concatenated",
        )
        parser.add_argument("--label-column", help="column holding labels (default: 'label')")
        parser.add_argument("--id-column", help="column holding your own id (default: 'id')")
        parser.add_argument("--no-header", action="store_true", help="the first row is data")

    def handle(self, *args: Any, **options: Any) -> None:
        project = find_project(options["project"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            fmt = options["format"] or guess_format(path.name)
        except ParseError as exc:
            raise CommandError(str(exc)) from exc
        text_column = options["text_column"]
        columns = Columns(
            text=[c.strip() for c in text_column.split(",")] if text_column else [],
            label=options["label_column"],
            external_id=options["id_column"],
            has_header=not options["no_header"],
        )
        try:
            with path.open("rb") as stream:
                _, report = import_now(
                    project, None, stream, path.name, fmt, ImportOptions(columns)
                )
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        for rejection in report.rejections:
            self.stderr.write(f"line {rejection.line}: {rejection.reason}")
        if report.rejected > len(report.rejections):
            self.stderr.write(f"... and {report.rejected - len(report.rejections)} more")
        self.stdout.write(report.summary())
