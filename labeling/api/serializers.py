"""API representations: plain fields, labels by name, validation with clear messages."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import serializers

from labeling.models import Annotation, Item, Label, Project
from labeling.validation import contains_nul, label_key, validate_name_text
from modeling.interface import STRATEGY_NAMES
from modeling.models import ModelVersion


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "hotkey", "color", "description", "keywords", "position"]
        read_only_fields = ["id", "position"]

    def validate_name(self, name: str) -> str:
        name = name.strip()
        project = self.context.get("project")
        others = Label.objects.filter(project=project)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        taken = {label_key(other) for other in others.values_list("name", flat=True)}
        if project is not None and label_key(name) in taken:
            raise serializers.ValidationError(
                f"The project already has a label {name!r} (case does not count)."
            )
        return name

    def validate_hotkey(self, hotkey: str) -> str:
        hotkey = hotkey.strip()
        project = self.context.get("project")
        if not hotkey or project is None:
            return hotkey
        others = Label.objects.filter(project=project, hotkey=hotkey)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"Another label already uses the key {hotkey!r}.")
        return hotkey


class ProjectSerializer(serializers.ModelSerializer):
    labels = LabelSerializer(many=True, read_only=True)
    label_names = serializers.ListField(
        child=serializers.CharField(max_length=100, validators=[validate_name_text]),
        write_only=True,
        required=False,
        help_text="On create: the label set, in hotkey order.",
    )
    strategy = serializers.ChoiceField(choices=list(STRATEGY_NAMES), required=False)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "instructions",
            "multi_label",
            "overlap",
            "lease_seconds",
            "retrain_every",
            "strategy",
            "show_suggestions",
            "suggest_above",
            "annotators_see_answers",
            "encoder",
            "random_control_share",
            "train_on_control",
            "finetune_growth",
            "finetune_min_labels",
            "settings",
            "labels",
            "label_names",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def validate_settings(self, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if contains_nul(value):
            raise serializers.ValidationError("Must not contain a NUL character.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None and not attrs.get("label_names"):
            raise serializers.ValidationError({"label_names": "Give at least one label."})
        instance = self.instance
        if instance is not None and attrs.get("multi_label", instance.multi_label) != (
            instance.multi_label
        ):
            raise serializers.ValidationError(
                {"multi_label": "Cannot change once the project exists."}
            )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Project:
        names = validated_data.pop("label_names")
        try:
            with transaction.atomic():
                project = Project.objects.create(**validated_data)
                project.set_labels(names)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"label_names": exc.messages}) from exc
        return project

    def update(self, instance: Project, validated_data: dict[str, Any]) -> Project:
        validated_data.pop("label_names", None)
        return super().update(instance, validated_data)


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = [
            "id",
            "text",
            "external_id",
            "metadata",
            "answer_count",
            "is_random_control",
            "created_at",
        ]
        read_only_fields = fields


class AnnotationSerializer(serializers.ModelSerializer):
    item = serializers.PrimaryKeyRelatedField(queryset=Item.objects.none())
    annotator = serializers.CharField(source="annotator.username", read_only=True)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100),
        source="label_names",
        required=False,
        help_text="Label names (or ids); exactly one in single-label projects unless skipped.",
    )
    seconds_spent = serializers.FloatField(required=False, min_value=0, default=0)
    client_id = serializers.UUIDField(
        required=False, help_text="Your id for this answer: a retried request is stored once."
    )

    class Meta:
        model = Annotation
        fields = [
            "id",
            "item",
            "annotator",
            "labels",
            "skipped",
            "seconds_spent",
            "client_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "annotator", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        project = self.context.get("project")
        if project is not None:
            self.fields["item"].queryset = Item.objects.filter(project=project)


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "number",
            "kind",
            "encoder",
            "strategy",
            "labels_used",
            "class_counts",
            "pool_size",
            "train_seconds",
            "score_seconds",
            "device",
            "metrics",
            "snapshot_at",
            "created_at",
            "promoted",
            "samples_per_second",
            "peak_memory_bytes",
            "energy_wh",
            "energy_source",
            "cost",
        ]
        read_only_fields = fields


class ImportReportSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    labeled = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejections = serializers.ListField(child=serializers.DictField())
    job = serializers.IntegerField(help_text="The import's batch: GET /api/v1/imports/{job}/.")


class QueueItemSerializer(serializers.Serializer):
    item = ItemSerializer()
    lease_expires_at = serializers.DateTimeField()
    suggestion = serializers.DictField(allow_null=True)


class TrainingStatusSerializer(serializers.Serializer):
    phase = serializers.CharField()
    progress_done = serializers.IntegerField()
    progress_total = serializers.IntegerField()
    queued_at = serializers.DateTimeField(allow_null=True)
    running_since = serializers.DateTimeField(allow_null=True)
    queue_refreshed_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    latest_version = ModelVersionSerializer(allow_null=True)
