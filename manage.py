#!/usr/bin/env python
"""Django's command-line utility for Sift."""

from __future__ import annotations

import os
import sys

# Commands that serve web requests sign sessions and CSRF tokens with SECRET_KEY; every other
# command (create_project, import_items, simulate, migrate, ...) runs without one, so the
# README's commands work in a fresh shell (config/settings.py reads SIFT_OFFLINE_COMMAND).
SERVING = {"runserver", "testserver"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if len(sys.argv) > 1 and sys.argv[1] not in SERVING:
        os.environ.setdefault("SIFT_OFFLINE_COMMAND", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
