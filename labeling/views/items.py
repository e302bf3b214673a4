"""The items page: leads and reviewers search and filter the data, open an item, and leads
label a selection or a whole filtered result in one go."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labeling.access import LEADS, OVERSEERS, AuthedRequest, project_for
from labeling.item_browser import (
    SORTS,
    STATES,
    ItemQuery,
    final_labels_of,
    label_in_bulk,
    matching_items,
    page_of,
    phrase_target,
    prediction_history_of,
    predictions_of,
)
from labeling.models import Item, Project, Role
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
    }
    return render(request, "labeling/item_detail.html", context)


@login_required
@require_POST
def bulk_label(request: AuthedRequest, project_id: int) -> HttpResponse:
    """First POST: a confirmation with the count; with confirm=1: the rulings are made."""
    project = project_for(request.user, project_id, LEADS)
    try:
        query = ItemQuery.from_params(project, request.POST)
        label = project.labels.filter(name=request.POST.get("label_to_give", "")).first()
        if label is None:
            raise ValidationError("Choose the label to give.")
        items = matching_items(project, query, phrase_target(project, query))
        everything = request.POST.get("scope") == "all"
        if not everything:
            chosen = [
                parse_whole_number(raw, "item", 1, 2**63 - 1)
                for raw in request.POST.getlist("item")
            ]
            if not chosen:
                raise ValidationError("Tick some items, or choose every item that matches.")
            items = items.filter(pk__in=chosen)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_list_url(project, ItemQuery()))
    count = items.count()
    back = _list_url(project, query)
    if request.POST.get("confirm") != "1":
        context = {
            "project": project,
            "count": count,
            "label": label,
            "everything": everything,
            "query": query,
            "chosen": request.POST.getlist("item"),
            "back": back,
        }
        return render(request, "labeling/items_bulk_confirm.html", context)
    scope = "every matching item" if everything else "ticked items"
    note = f"Bulk label on the items page ({scope}: {query.as_params() or 'all items'})"
    try:
        done = label_in_bulk(project, request.user, items, label, note)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    request_retrain(project)
    messages.success(
        request,
        f"{done.items} item{'s' if done.items != 1 else ''} now have the label {done.label} "
        "as your ruling; their answers are kept, and the next retrain learns from it.",
    )
    return redirect(back)


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
        "is_lead": project.role_of(request.user) == Role.LEAD,
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
