"""`manage.py simulate`: Alice replays active learning on a small labeled file before a project.

These tests embed with the real MiniLM model, so each successful run costs a second or two.
"""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from modeling.core.finetuning import AdaptingFineTunes, FineTuneConfig
from modeling.core.strategies import DEFAULT_STRATEGY
from modeling.management.commands.simulate import MODELS, Command, _Texts
from tests.fixtures import csv_rows

SUBJECTS = ("The striker", "Our goalkeeper", "The home team", "The coach", "A young winger")
TOPICS = {
    "sport": ("scored twice in the final", "won the league title", "lost the derby on penalties"),
    "weather": (
        "heavy rain is expected tomorrow",
        "snow will cover the hills tonight",
        "a heatwave is forecast this week",
    ),
    "cooking": (
        "simmer the sauce for ten minutes",
        "knead the dough until smooth",
        "season the soup with pepper",
    ),
}
SMALL_RUN = ("--seed-size", "6", "--batch-size", "6", "--budget", "24", "--repeats", "1")


@pytest.fixture(autouse=True)
def embedding_cache(settings, tmp_path: Path) -> Path:
    """Keep cached embeddings out of the real var/ folder."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR / "cache" / "embeddings"


def write_dataset(path: Path, topics: dict[str, tuple[str, ...]] = TOPICS) -> Path:
    """Twenty short texts per topic in a `text,label` CSV with a header."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for label, phrases in topics.items():
            for i in range(20):
                opening = SUBJECTS[i % len(SUBJECTS)] if label == "sport" else f"Note {i}:"
                writer.writerow([f"{opening} {phrases[i % len(phrases)]}", label])
    return path


def accuracies(out: Path) -> list[str]:
    return [row["accuracy"] for row in csv_rows(out / "curves.csv")]


def simulate(*args: str) -> str:
    stdout = StringIO()
    call_command("simulate", *args, stdout=stdout, stderr=StringIO())
    return stdout.getvalue()


def test_it_writes_curves_a_plot_and_a_summary(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")
    out = tmp_path / "results"

    output = simulate("--train", str(train), "--out", str(out), *SMALL_RUN)

    assert "Held out 12 of topics.csv" in output
    rows = csv_rows(out / "curves.csv")
    assert list(rows[0]) == ["strategy", "repeat", "labels", "accuracy", "macro_f1", "seconds"]
    assert [(row["strategy"], row["labels"]) for row in rows] == [
        (strategy, str(labels))
        for strategy in (DEFAULT_STRATEGY, "random")
        for labels in (6, 12, 18, 24)
    ]
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["default_strategy"] == DEFAULT_STRATEGY
    assert set(summary["strategies"]) == {DEFAULT_STRATEGY, "random"}
    for row in summary["strategies"].values():
        assert set(row) == {"auc", "final_accuracy", "accuracy_at", "labels_to_random_final"}
        assert row["accuracy_at"] == {}  # 24 labels never reach the first checkpoint, 125
    # Three obvious topics: the model is right on the held-out texts.
    assert summary["strategies"]["random"]["final_accuracy"] == 1.0
    assert "labels to random's final" in output


def test_with_report_it_also_writes_the_dashboard_figures(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")
    out = tmp_path / "results"

    output = simulate("--train", str(train), "--out", str(out), "--report", *SMALL_RUN)

    rows = csv_rows(out / "labels_saved.csv")
    assert [(row["strategy"], row["labels"]) for row in rows] == [
        (DEFAULT_STRATEGY, str(labels)) for labels in (6, 12, 18, 24)
    ]
    for name in ("labels_saved.png", "compute.csv", "report.json"):
        assert (out / name).is_file()
    assert "labels_saved.csv" in output


def test_a_second_run_reuses_the_cached_embeddings(tmp_path: Path, embedding_cache: Path):
    train = write_dataset(tmp_path / "topics.csv")
    args = ("--train", str(train), "--strategy", "margin", *SMALL_RUN)

    first = simulate(*args, "--out", str(tmp_path / "one"))
    second = simulate(*args, "--out", str(tmp_path / "two"))

    assert "Embedding topics.csv: 60/60" in first
    assert len(list(embedding_cache.glob("*.npy"))) == 1
    assert "read from the cache" in second
    assert "Embedding topics.csv" not in second
    assert accuracies(tmp_path / "one") == accuracies(tmp_path / "two")


def test_labeled_lines_with_a_separate_test_file(tmp_path: Path):
    lines = [f"{label} {text}" for label, texts in TOPICS.items() for text in texts]
    train = tmp_path / "topics.train"
    train.write_text("\n".join(lines * 5) + "\n\n", encoding="utf-8")
    test = tmp_path / "topics.test"
    test.write_text("\n".join([*lines, "sport"]) + "\n", encoding="utf-8")
    out = tmp_path / "results"

    output = simulate(
        "--train", str(train), "--test", str(test), "--format", "labeled-lines",
        "--strategy", "random", "--out", str(out), *SMALL_RUN,
    )  # fmt: skip

    assert "Read 45 labeled rows from topics.train." in output
    assert "Read 9 labeled rows from topics.test; dropped 1 without text" in output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["strategies"]) == ["random"]


def test_it_names_the_columns_a_file_has_when_one_is_missing(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")

    with pytest.raises(CommandError, match=r"'category' not found; the header has: text, label"):
        simulate("--train", str(train), "--label-column", "category", "--out", str(tmp_path))


def test_it_lists_the_strategies_when_one_is_unknown(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")

    with pytest.raises(CommandError, match=r"Unknown strategy 'smart'; choose from: random, "):
        simulate("--train", str(train), "--strategy", "margin", "smart", "--out", str(tmp_path))


def test_it_lists_the_models_when_one_is_unknown(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")

    with pytest.raises(
        CommandError, match=r"Unknown model 'bert'; choose one of: head, finetune\."
    ):
        simulate("--train", str(train), "--model", "bert", "--out", str(tmp_path))


def test_it_replays_the_live_loop_fine_tuning_as_labels_grow(tmp_path: Path):
    train = write_dataset(tmp_path / "topics.csv")

    output = simulate(
        "--train", str(train), "--model", "finetune", "--strategy", "random", "--epochs", "1",
        "--min-steps", "2", "--finetune-min-labels", "6", "--finetune-growth", "0.5",
        "--threads", "1", *SMALL_RUN[:4], "--budget", "12", "--repeats", "1",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip

    assert "random, repeat 1/1" in output
    # 6 labels are enough for the first; 12 are 100% and 6 more than 6: the second.
    assert "fine-tuned at 6 labels" in output
    assert "fine-tuned at 12 labels" in output
    rows = csv_rows(tmp_path / "out" / "curves.csv")
    assert [row["labels"] for row in rows] == ["6", "12"]
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)


def test_the_fine_tunes_take_the_learning_rates_and_schedule_given_on_the_command_line(
    tmp_path: Path,
):
    """What the learning-rate check in the README varies reaches each fine-tune's config."""
    arguments = [
        "--train", "t.csv", "--out", str(tmp_path), "--model", "finetune",
        "--learning-rate", "2e-5", "--min-steps", "160", "--validation-fraction", "0",
        "--start-head-c", "30",
    ]  # fmt: skip
    options = vars(Command().create_parser("manage.py", "simulate").parse_args(arguments))
    texts = np.array(["a", "b"], dtype=object)

    fine_tunes = MODELS["finetune"](options, _Texts(texts, texts, np.array([0, 1])))

    assert isinstance(fine_tunes, AdaptingFineTunes)
    config = fine_tunes.factory.config
    assert (config.learning_rate, config.min_steps) == (2e-5, 160)
    assert (config.validation_fraction, config.head_C) == (0.0, 30.0)
    defaults = vars(
        Command().create_parser("manage.py", "simulate").parse_args(["--train", "t", "--out", "o"])
    )
    by_default = MODELS["finetune"](defaults, _Texts(texts, texts, np.array([0, 1])))
    assert isinstance(by_default, AdaptingFineTunes)
    assert by_default.factory.config == FineTuneConfig(epochs=3, warm_start_epochs=1)


def test_the_head_chooses_its_regularization_unless_one_is_given(tmp_path: Path):
    """--head-c checks a regularization against the one the live head would choose."""

    def head_c(*given: str) -> float | None:
        arguments = ["--train", "t.csv", "--out", str(tmp_path), *given]
        parsed = Command().create_parser("manage.py", "simulate").parse_args(arguments)
        return vars(parsed)["head_c"]

    assert head_c() is None  # chosen at every fit
    assert head_c("--head-c", "auto") is None
    assert head_c("--head-c", "30") == 30.0
    train = write_dataset(tmp_path / "topics.csv")
    for wrong in ("0", "-3", "strong", "nan", "inf"):
        with pytest.raises(CommandError, match="expected a positive number or auto"):
            simulate("--train", str(train), "--out", str(tmp_path), "--head-c", wrong)
    simulate("--train", str(train), "--out", str(tmp_path / "given"), *SMALL_RUN, "--head-c", "3")
    assert len(accuracies(tmp_path / "given")) == 4 * 2  # the default strategy and random


def test_a_file_with_one_class_cannot_train_a_classifier(tmp_path: Path):
    train = write_dataset(tmp_path / "sport.csv", {"sport": TOPICS["sport"]})

    with pytest.raises(CommandError, match=r"single class \('sport'\)"):
        simulate("--train", str(train), "--out", str(tmp_path))


def test_it_asks_for_a_format_it_cannot_guess(tmp_path: Path):
    train = tmp_path / "topics.train"
    train.write_text("sport The striker scored\n", encoding="utf-8")

    with pytest.raises(CommandError, match=r"pass --format \(one of: csv, tsv, jsonl, labeled"):
        simulate("--train", str(train), "--out", str(tmp_path))


def test_fresh_seeds_repeat_the_run_that_seed_would_give(tmp_path: Path):
    """--first-seed 1 --repeats 1 is the second repeat of --repeats 2: a fresh seed confirms a
    choice without rerunning the first."""
    train = write_dataset(tmp_path / "topics.csv")
    small = ("--seed-size", "6", "--batch-size", "6", "--budget", "24", "--strategy", "random")

    simulate("--train", str(train), "--out", str(tmp_path / "both"), *small, "--repeats", "2")
    output = simulate(
        "--train", str(train), "--out", str(tmp_path / "second"), *small,
        "--repeats", "1", "--first-seed", "1",
    )  # fmt: skip

    both = [row for row in csv_rows(tmp_path / "both" / "curves.csv") if row["repeat"] == "1"]
    second = csv_rows(tmp_path / "second" / "curves.csv")
    assert [row["repeat"] for row in second] == ["1"] * 4
    assert [row["accuracy"] for row in second] == [row["accuracy"] for row in both]
    assert "(seed 1)" in output
    with pytest.raises(CommandError, match="--first-seed must be 0 or more"):
        simulate("--train", str(train), "--out", str(tmp_path / "x"), *small, "--first-seed", "-1")
