"""python manage.py seed_demo: a demo lead, a demo annotator and a small demo project."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from labeling.import_jobs import import_now
from labeling.importing import ImportOptions
from labeling.models import Project, Role

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "support_messages.txt"
DEMO_PROJECT = "Support inbox (demo)"
DEMO_LABELS = ["billing", "bug", "feature request", "praise"]
DEMO_INSTRUCTIONS = (
    "Sort each customer message by what the customer needs.\n"
    "billing: charges, invoices, refunds, plans. bug: something is broken. "
    "feature request: something new is wanted. praise: thanks and compliments.\n"
    "If two apply, pick what the customer most needs answered."
)


class Command(BaseCommand):
    help = "Create (or refresh) the demo accounts and project; prints the passwords."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        passwords: dict[str, str] = {}
        with transaction.atomic():
            for username in ("lead", "annotator"):
                user = users.filter(username=username).first() or users.create_user(username)
                passwords[username] = secrets.token_urlsafe(9)
                user.set_password(passwords[username])
                user.save()
            lead = users.get(username="lead")
            lead.user_permissions.add(Permission.objects.get(codename="add_project"))
            project, created = Project.objects.get_or_create(
                name=DEMO_PROJECT, defaults={"instructions": DEMO_INSTRUCTIONS, "created_by": lead}
            )
            if created:
                project.set_labels(DEMO_LABELS)
                # A recorded batch, as a lead's upload is; the import asks for the first retrain.
                with DEMO_FILE.open("rb") as stream:
                    import_now(project, lead, stream, DEMO_FILE.name, "txt", ImportOptions())
            project.add_member(lead, Role.LEAD)
            project.add_member(users.get(username="annotator"), Role.ANNOTATOR)
        self.stdout.write(f"Demo project: {project.name} ({project.items.count()} items)")
        for username, password in passwords.items():
            self.stdout.write(f"  log in as {username:<10} password {password}")
