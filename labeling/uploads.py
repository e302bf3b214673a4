"""Import files as they arrive over HTTP: within SIFT_MAX_UPLOAD_BYTES, and whole.

A body that is over the limit is refused before it is read or stored. A body shorter than its
Content-Length (the client went away) would read like a clean end of file; it fails the
import instead, so nothing of it is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, QueryDict
from django.template.defaultfilters import filesizeformat
from django.utils.datastructures import MultiValueDict

from labeling.importing import ImportFailed


class UploadTooLarge(ImportFailed):
    """The upload is over SIFT_MAX_UPLOAD_BYTES; nothing past the limit was read."""

    def __init__(self) -> None:
        super().__init__(
            f"The upload is larger than the limit of {upload_limit()}. Nothing was imported."
        )


class UploadCutShort(ImportFailed):
    """Fewer bytes arrived than the request announced."""

    def __init__(self, received: int | None = None, declared: int | None = None) -> None:
        arrived = (
            f": {received:,} of {declared:,} bytes arrived"
            if received is not None and declared is not None
            else " before the whole file arrived"
        )
        super().__init__(f"The upload was cut short{arrived}. Nothing was imported.")


def upload_limit() -> str:
    """SIFT_MAX_UPLOAD_BYTES as configured, in bytes, with its size in KB/MB/GB beside it."""
    limit = settings.SIFT_MAX_UPLOAD_BYTES
    exact = f"{limit:,} bytes"
    return exact if limit < 1024 else f"{exact} ({filesizeformat(limit)})"


def declared_length(request: HttpRequest) -> int:
    """The request's Content-Length; 0 when it has none (Django then reads no body)."""
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def check_upload_size(size: int) -> None:
    """Raise UploadTooLarge when `size` bytes are over SIFT_MAX_UPLOAD_BYTES."""
    if size > settings.SIFT_MAX_UPLOAD_BYTES:
        raise UploadTooLarge


def whole_body(lines: Iterable[bytes], declared: int) -> Iterator[bytes]:
    """The lines of a request body; UploadCutShort at its end if it is shorter than declared."""
    received = 0
    for line in lines:
        received += len(line)
        yield line
    if received < declared:
        raise UploadCutShort(received, declared)


class ImportUploadGuard(FileUploadHandler):
    """First of a request's upload handlers: stops a file at SIFT_MAX_UPLOAD_BYTES before the
    handlers after it store more, and notes an upload whose file never ended."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.problem: ImportFailed | None = None
        self._received = 0

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> tuple[QueryDict, MultiValueDict[str, UploadedFile]] | None:
        # A body longer than a file at the limit plus the most the other fields may hold
        # cannot be a good upload: refuse it without reading it at all.
        fields_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if fields_limit is not None and content_length > (
            settings.SIFT_MAX_UPLOAD_BYTES + fields_limit
        ):
            self.problem = UploadTooLarge()
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._received += len(raw_data)
        if self._received > settings.SIFT_MAX_UPLOAD_BYTES:
            self.problem = UploadTooLarge()
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None

    def upload_interrupted(self) -> None:
        if self.problem is None:
            self.problem = UploadCutShort()
