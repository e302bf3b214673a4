"""python manage.py create_project NAME --labels A,B,C: prints the new project's id."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from labeling.models import Project


class Command(BaseCommand):
    help = "Create a project with a label set and print its id."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--labels", required=True, help="comma-separated label names")
        parser.add_argument("--multi-label", action="store_true")
        parser.add_argument("--instructions", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("The project needs a name.")
        if Project.objects.filter(name=name).exists():
            raise CommandError(f"A project named {name!r} already exists.")
        try:
            with transaction.atomic():
                project = Project.objects.create(
                    name=name,
                    multi_label=options["multi_label"],
                    instructions=options["instructions"],
                )
                project.set_labels(options["labels"].split(","))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(str(project.pk))
