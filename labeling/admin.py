from __future__ import annotations

from django.contrib import admin

from labeling.models import Annotation, Item, Label, Lease, Membership, Project, QueueEntry


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "multi_label", "overlap", "created_at"]
    search_fields = ["name"]
    inlines = [LabelInline, MembershipInline]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "short_text", "external_id", "answer_count"]
    list_filter = ["project"]
    search_fields = ["text", "external_id"]
    readonly_fields = ["content_hash", "created_at"]

    @admin.display(description="text")
    def short_text(self, item: Item) -> str:
        return item.text[:80]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "annotator", "skipped", "seconds_spent", "created_at"]
    list_filter = ["item__project", "skipped", "annotator"]
    raw_id_fields = ["item"]
    filter_horizontal = ["labels"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["item", "annotator", "project", "expires_at"]
    list_filter = ["project"]
    raw_id_fields = ["item"]


admin.site.register(Membership)
admin.site.register(QueueEntry)
