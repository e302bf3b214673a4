"""Cursor pagination: stable pages over large, growing tables; bad page sizes are refused."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from labeling.validation import parse_whole_number

MAX_PAGE_SIZE = 1000


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            return parse_whole_number(raw, "page_size", 1, MAX_PAGE_SIZE)
        except DjangoValidationError as exc:
            raise ValidationError({"page_size": exc.messages}) from exc
