"""Answering an export request: the file at once when it is small, a background job otherwise.

Shared by the API (`labeling/api/exports.py`) and the export page (`labeling/views/exports.py`).
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse

from labeling.exports.jobs import start_export_job
from labeling.exports.request import ExportRequest, candidate_items, runs_in_background
from labeling.exports.rows import export_rows
from labeling.exports.writers import (
    CONTENT_TYPES,
    WHOLE_FILE_FORMATS,
    export_filename,
    text_blocks,
    write_export,
)
from labeling.models import ExportJob, Project

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def answer_export(
    project: Project, user: User, wanted: ExportRequest
) -> HttpResponseBase | ExportJob:
    """The file as a response, or, above SIFT_EXPORT_SYNC_LIMIT items or when asked, the job
    a worker writes it in (refreshed: without a broker it has failed already)."""
    count = candidate_items(project, wanted.options).count()
    if not (wanted.background or runs_in_background(count)):
        return file_response(project, wanted)
    job = start_export_job(project, user, wanted.fmt, wanted.options, count)
    job.refresh_from_db()
    return job


def file_response(project: Project, wanted: ExportRequest) -> HttpResponseBase:
    filename = export_filename(project, wanted.fmt)
    rows = export_rows(project, wanted.options)
    content_type = CONTENT_TYPES[wanted.fmt]
    if wanted.fmt in WHOLE_FILE_FORMATS:
        # Parquet's footer and a zip's index come last: the file is written whole, then sent.
        target = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it once sent)
        try:
            write_export(rows, wanted.fmt, target, wanted.options.with_answers, project)
        except BaseException:
            target.close()
            raise
        target.seek(0)
        return FileResponse(
            target, as_attachment=True, filename=filename, content_type=content_type
        )
    blocks = text_blocks(rows, wanted.fmt, wanted.options.with_answers)
    response = StreamingHttpResponse(blocks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
