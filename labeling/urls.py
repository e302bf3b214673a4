from __future__ import annotations

from django.urls import path

from labeling.views import (
    annotate,
    exports,
    imports,
    items,
    members,
    people,
    projects,
    reports,
    tokens,
)

urlpatterns = [
    path("", projects.project_list, name="project_list"),
    path("projects/new/", projects.project_create, name="project_create"),
    path("projects/<int:project_id>/", projects.project_detail, name="project_detail"),
    path("projects/<int:project_id>/label/", annotate.annotate, name="annotate"),
    path("projects/<int:project_id>/label/answer/", annotate.answer, name="answer"),
    path("projects/<int:project_id>/label/undo/", annotate.undo, name="undo"),
    path("projects/<int:project_id>/label/items/<int:item_id>/", annotate.reopen, name="reopen"),
    path("projects/<int:project_id>/import/", imports.project_import, name="project_import"),
    path(
        "projects/<int:project_id>/import/jobs/<int:job_id>/",
        imports.import_job,
        name="import_job",
    ),
    path("projects/<int:project_id>/export/", exports.project_export, name="project_export"),
    path("projects/<int:project_id>/items/", items.items_page, name="project_items"),
    path("projects/<int:project_id>/items/bulk/label/", items.bulk_label, name="bulk_label"),
    path("projects/<int:project_id>/items/bulk/delete/", items.bulk_delete, name="bulk_delete"),
    path("projects/<int:project_id>/items/bulk/exclude/", items.bulk_exclude, name="bulk_exclude"),
    path("projects/<int:project_id>/items/bulk/review/", items.bulk_review, name="bulk_review"),
    path(
        "projects/<int:project_id>/items/deleted/<int:deletion_id>/",
        items.deleted_items_file,
        name="deleted_items_file",
    ),
    path("projects/<int:project_id>/items/<int:item_id>/", items.item_detail, name="item_detail"),
    path(
        "projects/<int:project_id>/items/<int:item_id>/review/",
        items.item_review,
        name="item_review",
    ),
    path("projects/<int:project_id>/model/", projects.model_status, name="model_status"),
    path("projects/<int:project_id>/model/retrain/", projects.retrain, name="retrain"),
    path("projects/<int:project_id>/model/finetune/", projects.finetune, name="finetune"),
    path(
        "projects/<int:project_id>/model/finetune/cancel/",
        projects.cancel_finetune_view,
        name="cancel_finetune",
    ),
    path(
        "projects/<int:project_id>/model/versions/<int:number>/promote/",
        projects.promote,
        name="promote_version",
    ),
    path("projects/<int:project_id>/members/", members.project_members, name="project_members"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/remove/",
        members.remove_member,
        name="remove_member",
    ),
    path("projects/<int:project_id>/settings/", projects.project_settings, name="project_settings"),
    path("projects/<int:project_id>/delete/", projects.delete_project, name="delete_project"),
    path(
        "projects/<int:project_id>/labels/<int:label_id>/remove/",
        projects.remove_label,
        name="remove_label",
    ),
    path("projects/<int:project_id>/people/", people.people, name="people"),
    path(
        "projects/<int:project_id>/items/<int:item_id>/resolve/",
        people.resolve_item,
        name="resolve_item",
    ),
    path(
        "projects/<int:project_id>/people/throughput.csv",
        people.throughput_csv,
        name="throughput_csv",
    ),
    path("projects/<int:project_id>/model/report/", reports.model_report, name="model_report"),
    path(
        "projects/<int:project_id>/model/report/<slug:table>.csv",
        reports.model_report_csv,
        name="model_report_csv",
    ),
    path("account/tokens/", tokens.api_tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke/", tokens.revoke_api_token, name="revoke_api_token"),
]
