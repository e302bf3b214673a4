"""Embedding a phrase a lead searches by meaning, in the space the items were embedded in."""

from __future__ import annotations

import logging

from labeling.models import Project
from modeling.models import store_phrase_vector
from modeling.services.embeddings import base_space, current_space, encoder_for

log = logging.getLogger(__name__)


def embed_phrase(project_id: int, encoder: str, phrase: str) -> None:
    """Store the phrase's embedding for the web side; a space no longer kept is skipped."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    space = next(
        (space for space in (current_space(project), base_space(project)) if space.name == encoder),
        None,
    )
    if space is None:
        log.info("Project %s no longer searches %s; phrase not embedded", project_id, encoder)
        return
    store_phrase_vector(
        project_id, encoder, phrase, encoder_for(project, space).encode([phrase])[0]
    )
