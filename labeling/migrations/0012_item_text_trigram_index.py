"""A trigram index for the items page's text search on PostgreSQL (SQLite scans; it is fast
enough there at 100,000 items, see bench/bench_items_page.py).

Django's `icontains` is `UPPER(text) LIKE UPPER('%word%')` on PostgreSQL, so the index is on
that expression. pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS item_text_trgm ON labeling_item "
    "USING gin (UPPER(text) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS item_text_trgm"]


def _run(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("labeling", "0011_annotators_see_answers")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
