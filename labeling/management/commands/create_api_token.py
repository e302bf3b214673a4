"""python manage.py create_api_token USERNAME: prints a new API key (shown this once)."""

from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labeling.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print its key; only a hash is stored."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        if not user.is_active:
            raise CommandError(f"{user.username} is deactivated.")
        _, key = ApiToken.issue(user, options["name"])
        self.stdout.write(key)
