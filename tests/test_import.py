"""Alice imports item files; bad rows are reported, good rows kept, broken files change nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.urls import reverse

from labeling.models import IMPORTED_USERNAME, Annotation, Item, Project
from tests.conftest import client_for


def run_import(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_items", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_it_imports_a_csv_with_labels_as_imported_answers(project: Project, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reviews.csv",
        'id,text,label,source\n7,"Great film, loved it",positive,imdb\n8,Dull,negative,imdb\n'
        "9,Not sure yet,,imdb\n",
    )

    out, _ = run_import(project.name, str(path))

    assert out.strip() == "imported 3, duplicates 0, rejected 0"
    great = Item.objects.get(project=project, external_id="7")
    assert great.text == "Great film, loved it"
    assert great.metadata == {"source": "imdb"}
    answer = Annotation.objects.get(item=great)
    assert answer.annotator.username == IMPORTED_USERNAME
    assert answer.label_names() == ["positive"]
    assert Item.objects.get(project=project, external_id="9").annotations.count() == 0


def test_it_skips_duplicates_in_the_file_and_in_the_project(
    project: Project, tmp_path: Path
) -> None:
    path = write(tmp_path, "items.txt", "review number 1\nfresh text\nfresh   text\n\n")

    out, _ = run_import(str(project.pk), str(path))

    assert out.strip() == "imported 1, duplicates 2, rejected 0"
    assert Item.objects.filter(project=project).count() == 21


def test_it_rejects_bad_rows_with_line_numbers_and_keeps_the_good_ones(
    project: Project, tmp_path: Path, settings: object
) -> None:
    long_text = "x" * 30_000
    path = write(
        tmp_path,
        "mixed.csv",
        b"text,label\nfine,positive\n,negative\nbad \xff byte,neutral\nok,happy\n"
        + f"{long_text},neutral\n".encode()
        + b"also fine,neutral\n",
    )

    out, err = run_import(project.name, str(path))

    assert out.strip() == "imported 2, duplicates 0, rejected 4"
    assert "line 3: empty text" in err
    assert "line 4: not valid UTF-8 (byte 0xff at column 5)" in err
    assert (
        "line 5: unknown label 'happy' (project labels: positive, negative, neutral; map file "
        "values to labels, or import without the labels)"
    ) in err
    assert "line 6: text is 30,000 characters; the limit is 20,000" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('text,label\n"never closed,positive\nnext,negative\n', "line 2: unexpected end of data"),
        ('text,label\n"a"b,positive\n', "line 2: ',' expected after '\"'"),
    ],
)
def test_a_broken_quote_imports_nothing(
    project: Project, tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path, "broken.csv", "text,label\nfirst good row,positive\n" + content[11:])

    with pytest.raises(CommandError) as excinfo:
        run_import(project.name, str(path))

    assert message.replace("line 2", "line 3") in str(excinfo.value)
    assert "Nothing was imported" in str(excinfo.value)
    assert Item.objects.filter(project=project).count() == 20


def test_a_missing_column_is_named_with_the_header(project: Project, tmp_path: Path) -> None:
    path = write(tmp_path, "items.csv", "body,label\nhello,positive\n")

    with pytest.raises(CommandError, match="Column 'content' not found; the header has: body"):
        run_import(project.name, str(path), "--text-column", "content")


def test_it_reads_headerless_tsv_by_position_with_quotes_as_text(
    project: Project, tmp_path: Path
) -> None:
    path = write(tmp_path, "sms.tsv", 'positive\t"Quoted" start of a message\nnegative\tsecond\n')

    out, _ = run_import(
        project.name, str(path), "--no-header", "--text-column", "2", "--label-column", "1"
    )

    assert out.strip() == "imported 2, duplicates 0, rejected 0"
    assert Item.objects.filter(text='"Quoted" start of a message').exists()


def test_it_reads_jsonl_with_multi_labels(alice: User, tmp_path: Path) -> None:
    from tests.conftest import make_project

    project = make_project(alice, name="Topics", multi_label=True)
    path = write(
        tmp_path,
        "items.jsonl",
        '{"text": "both", "labels": ["positive", "neutral"], "lang": "en"}\n'
        "not json\n"
        '{"text": "piped", "label": "negative|neutral"}\n',
    )

    out, err = run_import(project.name, str(path))

    assert out.strip() == "imported 2, duplicates 0, rejected 1"
    assert "line 2: invalid JSON" in err
    both = Item.objects.get(project=project, text="both")
    assert sorted(both.annotations.get().label_names()) == ["neutral", "positive"]
    assert both.metadata == {"lang": "en"}


def test_it_refuses_an_unknown_project_and_an_unguessable_format(
    project: Project, tmp_path: Path
) -> None:
    path = write(tmp_path, "items.xlsx", "whatever")
    with pytest.raises(CommandError, match="No project with id or name 'Nope'"):
        run_import("Nope", str(path))
    with pytest.raises(CommandError, match=r"Cannot tell the format of 'items\.xlsx'"):
        run_import(project.name, str(path))


def test_create_project_prints_the_new_id(db: None) -> None:
    out = io.StringIO()
    call_command("create_project", "Spam", "--labels", "ham, spam", stdout=out)

    project = Project.objects.get(pk=int(out.getvalue()))
    assert [(label.name, label.hotkey) for label in project.labels.all()] == [
        ("ham", "1"),
        ("spam", "2"),
    ]
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_project", "Spam", "--labels", "a")


def upload(project: Project, user: User, name: str, content: bytes) -> HttpResponse:
    """`user` sends a file from the project's import page."""
    file = SimpleUploadedFile(name, content)
    return client_for(user).post(reverse("project_import", args=[project.pk]), {"file": file})


def test_a_lead_uploads_a_file_and_sees_the_report(project: Project, alice: User) -> None:
    response = upload(
        project, alice, "new.csv", b"text,label\nuploaded one,positive\nbad,unknown\n"
    )

    assert response.status_code == 200
    assert b"imported 1, duplicates 0, rejected 1" in response.content
    assert b"line 3: unknown label" in response.content
    assert Item.objects.filter(project=project, text="uploaded one").exists()


def test_a_broken_upload_shows_the_error_and_keeps_nothing(project: Project, alice: User) -> None:
    response = upload(project, alice, "broken.csv", b'text\nkept?\n"open quote\n')

    assert response.status_code == 422
    assert b"Nothing was imported" in response.content
    assert not Item.objects.filter(project=project, text="kept?").exists()


def test_annotators_cannot_import(project: Project, bob: User) -> None:
    response = upload(project, bob, "new.csv", b"text\nsneaky\n")
    assert response.status_code == 404
    assert not Item.objects.filter(text="sneaky").exists()
