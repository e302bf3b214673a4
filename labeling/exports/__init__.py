"""Exports, in pipeline order: request (the query) -> rows -> writers (the file) -> jobs."""
