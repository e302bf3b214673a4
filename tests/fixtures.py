"""Small labeled texts the suite makes itself: two topics any sentence encoder tells apart."""

from __future__ import annotations

import csv
from pathlib import Path

TEAMS = ["Lions", "Tigers", "Rovers", "United", "Rangers", "Eagles", "Sharks", "Wolves"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]


def sports_texts(n: int) -> list[str]:
    return [
        f"The {TEAMS[i % 8]} beat the {TEAMS[(i + 3) % 8]} {i % 5 + 1}-{i % 3} "
        f"in the match on day {i}, and the coach praised the goalkeeper."
        for i in range(n)
    ]


def finance_texts(n: int) -> list[str]:
    return [
        f"Shares of {COMPANIES[i % 8]} rose {i % 9 + 1} percent on day {i} after quarterly "
        f"earnings beat analyst forecasts."
        for i in range(n)
    ]


def tiny_bert(folder: Path, *, dropout: float = 0.1) -> Path:
    """A 2-layer BERT with MiniLM's tokenizer, saved to `folder`: fine-tunes in a second."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from modeling.core.encoders import default_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path(), local_files_only=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        # Wider than BERT's 0.02, so that a random 2-layer model learns within a few epochs.
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file the code under test wrote, keyed by its header."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
