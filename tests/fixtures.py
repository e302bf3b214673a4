"""Small labeled texts the suite makes itself: two topics any sentence encoder tells apart."""

from __future__ import annotations

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
