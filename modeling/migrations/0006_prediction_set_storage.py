"""PostgreSQL stores a prediction set's arrays uncompressed: they hardly compress (floats), and
trying to cost a 100,000-item retrain about 0.15 s (bench/bench_predictions.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

COLUMNS = ("item_ids", "classes", "probabilities", "held_out")


def store_uncompressed(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"ALTER TABLE modeling_predictionset ALTER COLUMN {column} SET STORAGE EXTERNAL"
        )


def store_as_before(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"ALTER TABLE modeling_predictionset ALTER COLUMN {column} SET STORAGE EXTENDED"
        )


class Migration(migrations.Migration):
    dependencies = [("modeling", "0005_prediction_sets")]

    operations = [migrations.RunPython(store_uncompressed, store_as_before)]
