"""An export's rows: one per item with its final label, read one chunk of items at a time.

Items are read in keyset-paginated chunks, each chunk's answers fetched in one query, so an
export of any size holds one chunk in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.db.models import QuerySet

from labeling.consensus import agreement, answers_by_item, final_labels, rulings_by_item
from labeling.exports.request import ExportOptions, candidate_items
from labeling.models import Adjudication, Annotation, Item, Project
from labeling.parsers import EXPORT_COLUMNS, MULTI_LABEL_SEPARATOR
from modeling.models import latest_predictions

CHUNK_ITEMS = 2000
COLUMNS = EXPORT_COLUMNS


def export_rows(
    project: Project,
    options: ExportOptions,
    *,
    progress: Callable[[int], None] | None = None,
    among: QuerySet[Item] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one row per exported item, in id order; `progress` hears the items read so far.

    `among` narrows the export to these items (a bulk delete keeps a file of what it deletes).
    """
    labels = list(project.labels.values_list("pk", "name"))
    label_names = dict(labels)
    names_in_order = [name for _, name in labels]
    items = candidate_items(project, options).order_by("pk")
    if among is not None:
        items = items.filter(pk__in=among.values("pk"))
    fields = (
        "pk",
        "external_id",
        "text",
        "metadata",
        "is_random_control",
        "adjudication",
    )
    predictions = latest_predictions(project)
    last_pk, read = 0, 0
    while chunk := list(items.filter(pk__gt=last_pk).values_list(*fields)[:CHUNK_ITEMS]):
        last_pk = chunk[-1][0]
        in_chunk = Annotation.objects.filter(item_id__in=[values[0] for values in chunk])
        answers = answers_by_item(in_chunk, label_names)
        ruled = [values[0] for values in chunk if values[-1] is not None]
        rulings = (
            rulings_by_item(Adjudication.objects.filter(item_id__in=ruled), label_names)
            if ruled
            else {}
        )
        predicted = (
            predictions.predictions_of([values[0] for values in chunk]) if predictions else {}
        )
        for pk, external_id, text, metadata, control, _ in chunk:
            item_answers = answers.get(pk, [])
            final = final_labels(
                item_answers, project.multi_label, names_in_order, rulings.get(pk, ())
            )
            guess = predicted.get(pk)
            prediction = (
                [label_names[p] for p in guess.label_ids if p in label_names] if guess else []
            )
            row: dict[str, Any] = {
                "id": pk,
                "external_id": external_id,
                "text": text,
                "label": MULTI_LABEL_SEPARATOR.join(final) if final else None,
                "labels": final,
                "agreement": agreement(item_answers, final),
                "adjudicated": pk in rulings,
                "answers_count": sum(not answer.skipped for answer in item_answers),
                "prediction": MULTI_LABEL_SEPARATOR.join(prediction) if guess else None,
                "confidence": round(guess.confidence, 6) if guess else None,
                "model_version": guess.version if guess else None,
                "random_control": control,
                "metadata": metadata,
            }
            if not options.keeps(row):
                continue
            if options.with_answers:
                row["answers"] = [
                    {
                        "annotator": answer.annotator,
                        "labels": answer.labels,
                        "skipped": answer.skipped,
                        "seconds_spent": answer.seconds_spent,
                        "created_at": answer.created_at,
                    }
                    for answer in item_answers
                ]
            yield row
        read += len(chunk)
        if progress is not None:
            progress(read)
