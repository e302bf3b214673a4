"""The items page: leads and reviewers search and filter the data, open an item, and leads
label a selection or a whole filtered result in one go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labeling.access import LEADS, OVERSEERS, AuthedRequest, project_for
from labeling.import_jobs import import_batches
from labeling.item_browser import (
    SORTS,
    STATES,
    ItemQuery,
    delete_in_bulk,
    exclude_in_bulk,
    final_labels_of,
    label_in_bulk,
    matching_items,
    page_of,
    phrase_target,
    prediction_history_of,
    predictions_of,
)
from labeling.models import Annotation, Item, ItemDeletion, Project, Role
from labeling.review_requests import send_to_review, withdraw_from_review
from labeling.validation import parse_whole_number
from modeling.scheduling import request_retrain

# The confidence bounds the filter offers, in percent.
CONFIDENCE_CHOICES = (50, 60, 70, 80, 90, 95, 99)


@login_required
def items_page(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    try:
        query = ItemQuery.from_params(project, request.GET)
    except ValidationError as exc:
        return _render_list(request, project, ItemQuery(), errors=exc.messages, status=400)
    return _render_list(request, project, query)


@login_required
def item_detail(request: AuthedRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    item = get_object_or_404(Item, pk=item_id, project=project)
    answers = item.annotations.select_related("annotator").prefetch_related("labels")
    ruling = getattr(item, "adjudication", None)
    context = {
        "project": project,
        "item": item,
        "answers": answers.order_by("created_at"),
        "ruling": ruling,
        "final": final_labels_of(project, [item]).get(item.pk, []),
        "queued": getattr(item, "queue_entry", None),
        "history": prediction_history_of(project, item),
        "labels": project.labels.all(),
        "back": request.GET.get("back", ""),
        "review": getattr(item, "review_request", None),
        "is_lead": project.role_of(request.user) == Role.LEAD,
    }
    return render(request, "labeling/item_detail.html", context)


@login_required
@require_POST
def item_review(request: AuthedRequest, project_id: int, item_id: int) -> HttpResponse:
    """From the item's page: send it to review with a note, or (withdraw=1) take it back."""
    project = project_for(request.user, project_id, LEADS)
    item = get_object_or_404(Item, pk=item_id, project=project)
    just_this = project.items.filter(pk=item.pk)
    if request.POST.get("withdraw") == "1":
        withdraw_from_review(project, just_this)
        messages.success(request, f"Item {item.pk} withdrawn from review.")
    else:
        try:
            send_to_review(project, request.user, just_this, request.POST.get("note", ""))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Item {item.pk} is on the reviewers' list.")
    back = request.POST.get("back", "")
    url = reverse("item_detail", args=[project.pk, item.pk])
    return redirect(f"{url}?{urlencode({'back': back})}" if back else url)


@dataclass(frozen=True)
class _Selection:
    """What a bulk action applies to: the ticked items, or every item the filters match."""

    query: ItemQuery
    items: QuerySet[Item]
    everything: bool
    chosen: list[str]

    def note(self, action: str) -> str:
        scope = "every matching item" if self.everything else "ticked items"
        return f"Bulk {action} on the items page ({scope}: {self.query.as_params() or 'all items'})"


def _selection(request: AuthedRequest, project: Project) -> _Selection:
    """The bulk action's items from the posted filters and ticks; ValidationError when none."""
    query = ItemQuery.from_params(project, request.POST)
    items = matching_items(project, query, phrase_target(project, query))
    everything = request.POST.get("scope") == "all"
    chosen = request.POST.getlist("item")
    if not everything:
        ticked = [parse_whole_number(raw, "item", 1, 2**63 - 1) for raw in chosen]
        if not ticked:
            raise ValidationError("Tick some items, or choose every item that matches.")
        items = items.filter(pk__in=ticked)
    return _Selection(query, items, everything, chosen)


def _refused(
    request: AuthedRequest, project: Project, exc: ValidationError, back: str = ""
) -> HttpResponse:
    """Back to the items page (or `back`), saying why the bulk action was refused."""
    messages.error(request, " ".join(exc.messages))
    return redirect(back or _list_url(project, ItemQuery()))


def _confirm(
    request: AuthedRequest, project: Project, selection: _Selection, **extra: object
) -> HttpResponse:
    context = {
        "project": project,
        "count": selection.items.count(),
        "everything": selection.everything,
        "query": selection.query,
        "chosen": selection.chosen,
        "back": _list_url(project, selection.query),
        **extra,
    }
    return render(request, "labeling/items_bulk_confirm.html", context)


@login_required
@require_POST
def bulk_label(request: AuthedRequest, project_id: int) -> HttpResponse:
    """First POST: a confirmation with the count; with confirm=1: the rulings are made."""
    project = project_for(request.user, project_id, LEADS)
    try:
        selection = _selection(request, project)
        label = project.labels.filter(name=request.POST.get("label_to_give", "")).first()
        if label is None:
            raise ValidationError("Choose the label to give.")
    except ValidationError as exc:
        return _refused(request, project, exc)
    if request.POST.get("confirm") != "1":
        return _confirm(request, project, selection, action="label", label=label)
    back = _list_url(project, selection.query)
    try:
        done = label_in_bulk(project, request.user, selection.items, label, selection.note("label"))
    except ValidationError as exc:
        return _refused(request, project, exc, back)
    request_retrain(project)
    messages.success(
        request,
        f"{done.items} item{'s' if done.items != 1 else ''} now have the label {done.label} "
        "as your ruling; their answers are kept, and the next retrain learns from it.",
    )
    return redirect(back)


@login_required
@require_POST
def bulk_exclude(request: AuthedRequest, project_id: int) -> HttpResponse:
    """Take items out of labeling, or (include=1) back in: a confirmation first."""
    project = project_for(request.user, project_id, LEADS)
    include = request.POST.get("include") == "1"
    try:
        selection = _selection(request, project)
    except ValidationError as exc:
        return _refused(request, project, exc)
    if request.POST.get("confirm") != "1":
        action = "include" if include else "exclude"
        return _confirm(request, project, selection, action=action)
    changed = exclude_in_bulk(project, selection.items, excluded=not include)
    request_retrain(project)
    done = "back in labeling" if include else "out of labeling: nobody is served them"
    messages.success(request, f"{changed} item{pluralize(changed)} now {done}.")
    return redirect(_list_url(project, selection.query))


@login_required
@require_POST
def bulk_delete(request: AuthedRequest, project_id: int) -> HttpResponse:
    """First POST: a confirmation with the counts; with confirm=1: the items are deleted."""
    project = project_for(request.user, project_id, LEADS)
    try:
        selection = _selection(request, project)
    except ValidationError as exc:
        return _refused(request, project, exc)
    if request.POST.get("confirm") != "1":
        answers = Annotation.objects.filter(item__in=selection.items, skipped=False).count()
        return _confirm(request, project, selection, action="delete", answers=answers)
    record = delete_in_bulk(project, request.user, selection.items, selection.note("delete"))
    request_retrain(project)
    messages.success(
        request,
        f"Deleted {record.items} item{'s' if record.items != 1 else ''} and "
        f"{record.answers} answer{'s' if record.answers != 1 else ''}. A file of them is kept "
        "under Deleted items below; it imports back.",
    )
    return redirect(_list_url(project, ItemQuery()))


@login_required
@require_POST
def bulk_review(request: AuthedRequest, project_id: int) -> HttpResponse:
    """Send items to the reviewers' list with a note, or (withdraw=1) take them off it: a
    confirmation with the counts first."""
    project = project_for(request.user, project_id, LEADS)
    withdraw = request.POST.get("withdraw") == "1"
    try:
        selection = _selection(request, project)
    except ValidationError as exc:
        return _refused(request, project, exc)
    if request.POST.get("confirm") != "1":
        waiting = selection.items.filter(review_request__isnull=False).count()
        new = selection.items.filter(review_request__isnull=True).count()
        action = "withdraw" if withdraw else "review"
        return _confirm(request, project, selection, action=action, waiting=waiting, new=new)
    back = _list_url(project, selection.query)
    if withdraw:
        withdrawn = withdraw_from_review(project, selection.items)
        messages.success(request, f"{withdrawn} item{pluralize(withdrawn)} withdrawn from review.")
        return redirect(back)
    try:
        sent = send_to_review(project, request.user, selection.items, request.POST.get("note", ""))
    except ValidationError as exc:
        return _refused(request, project, exc, back)
    if sent:
        messages.success(
            request,
            f"{sent} item{pluralize(sent)} sent to review: reviewers find "
            f"{'them' if sent != 1 else 'it'} on the people page until they rule.",
        )
    else:
        messages.info(request, "They were all waiting for review already; nothing changed.")
    return redirect(back)


@login_required
def deleted_items_file(request: AuthedRequest, project_id: int, deletion_id: int) -> FileResponse:
    """The file a bulk delete kept: the deleted items and their answers, as export JSONL."""
    project = project_for(request.user, project_id, LEADS)
    record = get_object_or_404(ItemDeletion, pk=deletion_id, project=project)
    path = Path(settings.MEDIA_ROOT) / record.file
    if not path.is_file():
        raise Http404("That file is no longer kept.")
    name = f"{project.name}-deleted-{record.created_at:%Y-%m-%d-%H%M}.jsonl"
    return FileResponse(path.open("rb"), as_attachment=True, filename=name)


def _render_list(
    request: AuthedRequest,
    project: Project,
    query: ItemQuery,
    *,
    errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    page = page_of(project, query, phrase_target(project, query))
    final = final_labels_of(project, page.items)
    predicted = predictions_of(project, page.items)
    context = {
        "project": project,
        "query": query,
        "rows": [
            (item, final.get(item.pk, []), predicted.get(item.pk), page.closeness.get(item.pk))
            for item in page.items
        ],
        "waiting": page.waiting,
        "like_item": project.items.filter(pk=query.like).first() if query.like else None,
        "next_url": _list_url(project, query, after=page.cursor) if page.cursor is not None else "",
        "first_url": _list_url(project, query, after=None) if query.after is not None else "",
        "states": STATES,
        "sorts": SORTS,
        "labels": project.labels.all(),
        "confidence_choices": CONFIDENCE_CHOICES,
        "annotators": sorted(project.memberships.values_list("user__username", flat=True)),
        "batches": import_batches(project, query.batch),
        "is_lead": project.role_of(request.user) == Role.LEAD,
        "deletions": project.deletions.select_related("deleted_by")[:10],
        "errors": errors or [],
        "here": _list_url(project, query),
    }
    template = "labeling/items.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)


def _list_url(project: Project, query: ItemQuery, **changes: object) -> str:
    params = query.as_params(**changes)
    url = reverse("project_items", args=[project.pk])
    return f"{url}?{urlencode(params)}" if params else url
