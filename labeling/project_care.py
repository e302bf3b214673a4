"""Removing what a lead no longer wants, without losing what annotators gave: a label with
answers is merged into another first, and a project is deleted only after its counts are
shown and its name typed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.models import Adjudication, Annotation, ExportJob, Label, Project, QueueEntry


@dataclass(frozen=True)
class LabelUse:
    """What carries a label: answers (not skips) and rulings."""

    answers: int
    rulings: int

    @property
    def used(self) -> bool:
        return bool(self.answers or self.rulings)


def label_use(label: Label) -> LabelUse:
    return LabelUse(
        answers=Annotation.objects.filter(labels=label, skipped=False).count(),
        rulings=Adjudication.objects.filter(labels=label).count(),
    )


def remove_label(project: Project, label: Label, into: Label | None) -> LabelUse:
    """Remove the label; answers and rulings that carry it get `into` instead (required when
    there are any). The project keeps at least one label."""
    if label.project_id != project.pk or (into is not None and into.project_id != project.pk):
        raise ValidationError("A label of another project was given.")
    if into is not None and into.pk == label.pk:
        raise ValidationError("Choose another label to merge into.")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if project.labels.count() <= 1:
            raise ValidationError("A project needs at least one label.")
        use = label_use(label)
        if use.used and into is None:
            raise ValidationError(
                f"{label.name} is on {use.answers} answers and {use.rulings} rulings: choose the "
                "label they should carry instead."
            )
        if into is not None:
            for through, owner in (
                (Annotation.labels.through, "annotation_id"),
                (Adjudication.labels.through, "adjudication_id"),
            ):
                carrying = through.objects.filter(label=label)
                has_both = through.objects.filter(label=into).values(owner)
                carrying.filter(**{f"{owner}__in": has_both}).delete()
                carrying.update(label=into)
        # The queue's suggestions name label ids; the next retrain writes new ones.
        QueueEntry.objects.filter(project=project, suggested_labels__contains=[label.pk]).update(
            suggested_labels=[]
        )
        label.delete()
        for position, kept in enumerate(project.labels.order_by("position")):
            if kept.position != position:
                Label.objects.filter(pk=kept.pk).update(position=position)
    return use


@dataclass(frozen=True)
class ProjectContents:
    """What deleting a project deletes, counted for the confirmation."""

    items: int
    answers: int
    members: int
    versions: int
    exports: int


def project_contents(project: Project) -> ProjectContents:
    return ProjectContents(
        items=project.items.count(),
        answers=Annotation.objects.filter(item__project=project, skipped=False).count(),
        members=project.memberships.count(),
        versions=project.model_versions.count(),
        exports=ExportJob.objects.filter(project=project).count(),
    )


def delete_project(project: Project, typed_name: str) -> ProjectContents:
    """Delete the project and everything in it, once its name is typed exactly; its export
    files and fine-tuned weights go too."""
    if typed_name.strip() != project.name:
        raise ValidationError("Type the project's name exactly to delete it.")
    contents = project_contents(project)
    media = Path(settings.MEDIA_ROOT)
    exports = ExportJob.objects.filter(project=project).exclude(file="")
    files = [media / str(name) for name in exports.values_list("file", flat=True)]
    files += [media / name for name in project.deletions.values_list("file", flat=True)]
    weights = project.model_versions.exclude(weights_path="").values_list("weights_path", flat=True)
    files += [Path(path) for path in weights]  # read now: the rows go with the project
    project.delete()
    for path in files:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return contents
