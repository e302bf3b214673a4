"""Forms for answering, importing, creating projects and managing members."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from labeling.importing import LabelRules
from labeling.models import (
    LABEL_HOTKEYS,
    Annotation,
    Item,
    Label,
    Project,
    Role,
    label_color,
)
from labeling.parsers import FORMATS, Columns
from labeling.uploads import UploadTooLarge, check_upload_size, upload_limit
from labeling.validation import label_key, validate_name_text
from modeling.interface import STRATEGY_NAMES


class AnswerForm(forms.Form):
    item = forms.IntegerField(min_value=1)
    labels = forms.ModelMultipleChoiceField(queryset=Label.objects.none(), required=False)
    skipped = forms.BooleanField(required=False)
    seconds = forms.FloatField(required=False, min_value=0)
    client_id = forms.UUIDField(required=False)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["labels"].queryset = project.labels.all()  # type: ignore[attr-defined]

    def clean_item(self) -> Item:
        item = Item.objects.filter(pk=self.cleaned_data["item"], project=self.project).first()
        if item is None:
            raise ValidationError("This item is not part of the project.")
        return item


class RulingForm(forms.Form):
    """A reviewer's final labels for one item, with an optional note."""

    labels = forms.ModelMultipleChoiceField(queryset=Label.objects.none())
    note = forms.CharField(required=False, max_length=1000)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["labels"].queryset = project.labels.all()  # type: ignore[attr-defined]


def bound_inputs_by_model(form: forms.ModelForm) -> None:
    """Give number inputs the min and max of their model field's validators, as the form
    checks them (Django's own default is the field type's, e.g. min=0 for a positive one)."""
    model = form._meta.model
    for name, field in form.fields.items():
        if not isinstance(field, forms.IntegerField | forms.FloatField):
            continue
        for validator in model._meta.get_field(name).validators:
            if isinstance(validator, MinValueValidator):
                field.widget.attrs["min"] = validator.limit_value
            elif isinstance(validator, MaxValueValidator):
                field.widget.attrs["max"] = validator.limit_value


class ProjectForm(forms.ModelForm):
    labels = forms.CharField(
        help_text="Comma-separated, in the order of their hotkeys: 1-9, 0, then a-z.",
        widget=forms.TextInput(attrs={"placeholder": "positive, negative, neutral"}),
    )

    class Meta:
        model = Project
        fields = ["name", "instructions", "multi_label", "overlap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bound_inputs_by_model(self)

    def label_names(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["labels"].split(",") if name.strip()]

    def clean_labels(self) -> str:
        names = [n.strip() for n in self.cleaned_data["labels"].split(",") if n.strip()]
        if not names:
            raise ValidationError("Give at least one label.")
        if len(set(names)) != len(names):
            raise ValidationError("Label names must be unique.")
        if any(len(name) > 100 for name in names):
            raise ValidationError("Label names are at most 100 characters.")
        for name in names:
            validate_name_text(name)
        return str(self.cleaned_data["labels"])


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[("", "From the file name")] + [(f, f.upper()) for f in FORMATS], required=False
    )
    text_column = forms.CharField(required=False, help_text="Default: 'text'.")
    label_column = forms.CharField(required=False, help_text="Default: 'label', if present.")
    id_column = forms.CharField(
        required=False, help_text="Default: 'external_id' or 'id', if present."
    )
    no_header = forms.BooleanField(required=False, label="The first row is data, not a header")
    ignore_labels = forms.BooleanField(
        required=False, label="Ignore the labels in this file (import the texts only)"
    )
    label_values = forms.CharField(
        required=False,
        label="Map file values to labels",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "1 = World\n2 = Sports"}),
        help_text="One per line, file value = label. Names match whatever their case.",
    )
    labels_by_position = forms.BooleanField(
        required=False,
        label="Numbers in the label column are label positions (1 is the first label)",
    )
    # A previewed file, kept on the server (labeling/staging.py), and its name.
    staged = forms.CharField(required=False, widget=forms.HiddenInput, max_length=32)
    staged_name = forms.CharField(required=False, widget=forms.HiddenInput, max_length=255)

    def __init__(
        self,
        *args: Any,
        project: Project | None = None,
        upload_problem: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["file"].help_text = f"At most {upload_limit()}."
        # The upload was refused as it came in (labeling/uploads.py): say why, not "required".
        self.upload_problem = upload_problem
        previewed = bool(self.data.get("staged")) if self.is_bound else False
        self.fields["file"].required = upload_problem is None and not previewed

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload is not None:
            try:
                check_upload_size(upload.size)
            except UploadTooLarge as exc:
                raise ValidationError(str(exc)) from exc
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.upload_problem is not None:
            raise ValidationError(self.upload_problem)
        return data

    def clean_label_values(self) -> dict[str, str]:
        known = {label_key(name): name for name in self._label_names()}
        mapping: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["label_values"].splitlines(), start=1):
            if not line.strip():
                continue
            value, sign, name = line.partition("=")
            if not sign or not value.strip() or not name.strip():
                raise ValidationError(f"Line {number}: write it as file value = label.")
            if label_key(name) not in known:
                raise ValidationError(
                    f"Line {number}: no label {name.strip()!r}; the labels are "
                    f"{', '.join(known.values())}."
                )
            mapping[value.strip()] = known[label_key(name)]
        return mapping

    def _label_names(self) -> list[str]:
        if self.project is None:
            return []
        return list(self.project.labels.order_by("position").values_list("name", flat=True))

    def label_rules(self) -> LabelRules:
        return LabelRules(
            values=self.cleaned_data.get("label_values") or {},
            by_position=bool(self.cleaned_data.get("labels_by_position")),
            ignore=bool(self.cleaned_data.get("ignore_labels")),
        )

    def keeping(self, token: str) -> ImportForm:
        """This form, now carrying the staged file's token (empty: none kept) to the next step."""
        name = self.file_name() if token else ""
        self.data = {**dict(self.data.items()), "staged": token, "staged_name": name}
        self.fields["file"].required = not token
        if token:
            self.fields[
                "file"
            ].help_text = (
                f"At most {upload_limit()}. Leave empty to import {name}, previewed above."
            )
        return self

    def file_name(self) -> str:
        upload = self.cleaned_data.get("file")
        return str(upload.name) if upload is not None else self.cleaned_data.get("staged_name", "")

    def columns(self) -> Columns:
        text = self.cleaned_data["text_column"]
        return Columns(
            text=[c.strip() for c in text.split(",") if c.strip()] if text else [],
            label=self.cleaned_data["label_column"] or None,
            external_id=self.cleaned_data["id_column"] or None,
            has_header=not self.cleaned_data["no_header"],
        )


class MemberForm(forms.Form):
    """A lead adds an existing account, creates one, or changes a member's role."""

    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(
        # The role with the fewest rights comes first and is the default.
        choices=[(role, Role(role).label) for role in (Role.ANNOTATOR, Role.REVIEWER, Role.LEAD)],
        initial=Role.ANNOTATOR,
    )
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Only to create a new account; leave empty to add an existing user.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        username = data.get("username")
        if not username:
            return data
        users = get_user_model().objects
        data["user"] = users.filter(username=username, is_active=True).first()
        if data["user"] is not None:
            return data
        # A new account: the same checks as Django's own sign-up and password forms.
        taken = users.filter(username__iexact=username).first()
        if taken is not None:
            state = "" if taken.is_active else ", deactivated"
            raise ValidationError(
                f"An account {taken.username!r}{state} exists already; give its exact name."
            )
        try:
            UnicodeUsernameValidator()(username)
        except ValidationError as exc:
            self.add_error("username", exc)
        password = data.get("password")
        if not password:
            raise ValidationError(f"No user {username!r}; give a password to create the account.")
        try:
            validate_password(password, user=get_user_model()(username=username))
        except ValidationError as exc:
            self.add_error("password", exc)
        return data


class ProjectSettingsForm(forms.ModelForm):
    strategy = forms.ChoiceField(choices=[(name, name) for name in STRATEGY_NAMES])

    class Meta:
        model = Project
        fields = [
            "name",
            "instructions",
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
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bound_inputs_by_model(self)

    def clean_encoder(self) -> str:
        # The folder itself is checked by the model field (labeling/validation.py).
        return str(self.cleaned_data["encoder"]).strip()


class BaseLabelFormSet(forms.BaseModelFormSet):
    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        kwargs = super().get_form_kwargs(index)
        if index is not None and index >= self.initial_form_count():
            # The empty row offers the next unused key and colour, as a new project's labels get.
            labels = list(self.get_queryset())
            used = {label.hotkey for label in labels}
            kwargs["initial"] = {
                "hotkey": next((key for key in LABEL_HOTKEYS if key not in used), ""),
                "color": label_color(len(labels)),
            }
        return kwargs

    def clean(self) -> None:
        super().clean()
        names: set[str] = set()
        hotkeys: set[str] = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or not data.get("name"):
                continue
            name, hotkey = data["name"].strip(), (data.get("hotkey") or "").strip()
            if label_key(name) in names:
                raise ValidationError(f"Two labels are named {name!r} (case does not count).")
            if hotkey and hotkey in hotkeys:
                raise ValidationError(f"Two labels use the key {hotkey!r}.")
            names.add(label_key(name))
            hotkeys.add(hotkey)


LabelFormSet = forms.modelformset_factory(
    Label,
    formset=BaseLabelFormSet,
    fields=["name", "hotkey", "color", "description", "keywords"],
    extra=1,
    # One row per label under shared column headers: each input names itself, and the help
    # texts are printed once under the table (project_settings.html), with these ids.
    widgets={
        "name": forms.TextInput(attrs={"aria-label": "Label name"}),
        "hotkey": forms.TextInput(attrs={"aria-label": "Key"}),
        "color": forms.TextInput(attrs={"type": "color", "aria-label": "Colour"}),
        "description": forms.Textarea(
            attrs={
                "rows": 2,
                "aria-label": "Description",
                "aria-describedby": "label-description-help",
            }
        ),
        "keywords": forms.TextInput(
            attrs={"aria-label": "Keywords", "aria-describedby": "label-keywords-help"}
        ),
    },
)


class ExportForm(forms.Form):
    """The export page: the API's export parameters as fields (labeling/exports/request.py)."""

    format = forms.ChoiceField(
        choices=[
            ("csv", "CSV: opens in a spreadsheet"),
            ("jsonl", "JSONL: one JSON object per line"),
            ("parquet", "Parquet: for pandas, Spark or Hugging Face datasets"),
            ("hf", "Hugging Face datasets: a zip with train and test splits and the labels"),
        ],
        initial="csv",
    )
    label = forms.ChoiceField(required=False, help_text="Only items whose final labels include it.")
    annotator = forms.ChoiceField(required=False, help_text="Only items this person answered.")
    since = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Only items with an answer changed at or after this time.",
    )
    min_agreement = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text="0 to 1: only items whose answers agree at least this much (two answers or "
        "more).",
    )
    final_only = forms.BooleanField(required=False, label="Only items with a final label")
    random_control = forms.BooleanField(
        required=False, label="Only the random-control items (the evaluation set)"
    )
    answers = forms.BooleanField(required=False, label="List every answer in each row")
    background = forms.BooleanField(
        required=False,
        label="Write the file in the background",
        help_text="Large exports always are; the file then waits below.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = list(project.labels.values_list("name", flat=True))
        self.fields["label"].choices = [("", "Any label"), *((name, name) for name in names)]  # type: ignore[attr-defined]
        members = project.memberships.values_list("user__username", flat=True)
        answered = (
            Annotation.objects.filter(item__project=project)
            .values_list("annotator__username", flat=True)
            .distinct()
        )
        usernames = sorted({*members, *answered})
        self.fields["annotator"].choices = [("", "Anyone"), *((n, n) for n in usernames)]  # type: ignore[attr-defined]

    def as_params(self) -> dict[str, str]:
        """The cleaned fields as the API's query parameters."""
        data = self.cleaned_data
        since = data.get("since")
        agreement = data.get("min_agreement")
        return {
            "format": data["format"],
            "label": data.get("label") or "",
            "annotator": data.get("annotator") or "",
            "since": since.isoformat() if since else "",
            "min_agreement": "" if agreement is None else str(agreement),
            "final_only": "1" if data.get("final_only") else "0",
            "random_control": "1" if data.get("random_control") else "0",
            "answers": "1" if data.get("answers") else "0",
            "async": "1" if data.get("background") else "0",
        }
