"""Made-up texts and the one-sentence check the data and corpus tests share."""

from __future__ import annotations

import random
import re


def sample_text(lines: int = 60, seed: int = 0) -> str:
    """About 2,000 characters of varied words: enough for a corpus, quick to tokenize."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(6)) for _ in range(lines)) + "\n"


def assert_one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message, message
    assert not re.search(r"[.!?] [A-Z]", message), f"more than one sentence: {message}"
