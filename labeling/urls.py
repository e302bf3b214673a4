from __future__ import annotations

from django.urls import path

from labeling import views

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/label/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/label/answer/", views.answer, name="answer"),
    path("projects/<int:project_id>/label/undo/", views.undo, name="undo"),
    path("projects/<int:project_id>/label/items/<int:item_id>/", views.reopen, name="reopen"),
    path("projects/<int:project_id>/import/", views.project_import, name="project_import"),
    path("projects/<int:project_id>/model/", views.model_status, name="model_status"),
    path("projects/<int:project_id>/model/retrain/", views.retrain, name="retrain"),
    path("projects/<int:project_id>/model/finetune/", views.finetune, name="finetune"),
    path(
        "projects/<int:project_id>/model/finetune/cancel/",
        views.cancel_finetune_view,
        name="cancel_finetune",
    ),
    path(
        "projects/<int:project_id>/model/versions/<int:number>/promote/",
        views.promote,
        name="promote_version",
    ),
    path("projects/<int:project_id>/members/", views.project_members, name="project_members"),
    path("projects/<int:project_id>/settings/", views.project_settings, name="project_settings"),
    path("projects/<int:project_id>/people/", views.people, name="people"),
    path(
        "projects/<int:project_id>/items/<int:item_id>/resolve/",
        views.resolve_item,
        name="resolve_item",
    ),
    path(
        "projects/<int:project_id>/people/throughput.csv",
        views.throughput_csv,
        name="throughput_csv",
    ),
    path("projects/<int:project_id>/model/report/", views.model_report, name="model_report"),
    path(
        "projects/<int:project_id>/model/report/<slug:table>.csv",
        views.model_report_csv,
        name="model_report_csv",
    ),
    path("account/tokens/", views.api_tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.revoke_api_token, name="revoke_api_token"),
]
