"""The model report: versions, learning curve, label distribution, quality and compute."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.csv_safety import SafeCsvWriter
from labeling.reports import (
    compute_csv_rows,
    compute_totals,
    confusion_csv_rows,
    label_distribution,
    label_distribution_chart,
    label_distribution_csv_rows,
    latest_quality,
    learning_curve_chart,
    learning_curve_csv_rows,
    per_class_csv_rows,
    price_per_device_hour,
    random_baseline,
    version_reports,
)

# The compute table shows the latest versions; its total and CSV cover all.
COMPUTE_ROWS = 12


@login_required
def model_report(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    versions = version_reports(project)
    labels = label_distribution(project)
    context = {
        "project": project,
        "versions": versions,
        "recent_versions": versions[-COMPUTE_ROWS:],
        "totals": compute_totals(versions),
        "price": price_per_device_hour(),
        "curve": learning_curve_chart(versions, random_baseline(project)),
        "labels_chart": label_distribution_chart(labels),
        "has_answers": any(label.answers for label in labels),
        "quality": latest_quality(project),
    }
    return render(request, "labeling/model_report.html", context)


@login_required
def model_report_csv(request: AuthedRequest, project_id: int, table: str) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    if table == "labels":
        rows = label_distribution_csv_rows(label_distribution(project))
    elif table == "learning-curve":
        rows = learning_curve_csv_rows(version_reports(project), random_baseline(project))
    elif table == "per-class":
        rows = per_class_csv_rows(latest_quality(project))
    elif table == "confusion":
        rows = confusion_csv_rows(latest_quality(project))
    elif table == "compute":
        rows = compute_csv_rows(version_reports(project))
    else:
        raise Http404("No such table.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{table}-{project.pk}.csv"'
    SafeCsvWriter(response).writerows(rows)
    return response
