"""Is a run learning, or has it blown up? A verdict from its per-step training losses.

A green "Finished" on a run whose loss ended far above random guessing teaches the
wrong lesson. Every character model starts near ln(vocabulary), the loss of guessing
uniformly, and a healthy run only goes down from there; so a run is flagged unstable
when, after warm-up, its loss climbs far above that line, or when it ends above where
it began. (A loss that stops being a number is caught in the loop itself: diverged.)
"""

from __future__ import annotations

import math

FAR_ABOVE_GUESSING = 2.0  # times ln(vocab): a healthy run never comes near it
EDGE_STEPS = 10  # how many steps make "where it began" and "where it ended"
LOWER_LR = "lower the learning rate (lr), by 3 to 10 times, and train it again"


class Stability:
    """Watches every step's loss as the trainer reports it (cheap: floats only)."""

    def __init__(self, vocab_size: int, warmup_steps: int):
        self.guess = math.log(vocab_size) if vocab_size > 1 else 1.0
        self.warmup = warmup_steps
        self.first: list[float] = []
        self.last: list[float] = []
        self.peak: tuple[int, float] | None = None  # (step, loss) above the line
        self.count = 0

    def observe(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self.count += 1
        if len(self.first) < EDGE_STEPS:
            self.first.append(loss)
        self.last = (self.last + [loss])[-EDGE_STEPS:]
        if (step > self.warmup and loss > FAR_ABOVE_GUESSING * self.guess
                and (self.peak is None or loss > self.peak[1])):
            self.peak = (step, loss)

    def verdict(self) -> str | None:
        """None for a run that behaved; else one sentence: what happened, what to do."""
        if self.peak is not None:
            step, loss = self.peak
            return (f"The run was unstable: after warm-up its training loss climbed to "
                    f"{loss:.1f} nats/char at step {step:,}, far above random guessing "
                    f"(ln vocabulary = {self.guess:.2f}); {LOWER_LR}.")
        if self.count >= max(2 * EDGE_STEPS, self.warmup + EDGE_STEPS):
            began = sum(self.first) / len(self.first)
            ended = sum(self.last) / len(self.last)
            if ended > began:
                return (f"The run did not learn: its training loss ended at {ended:.2f} "
                        f"nats/char, above the {began:.2f} it began at; {LOWER_LR}.")
        return None
