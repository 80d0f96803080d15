"""Numbers as a student reads them: durations, SI prefixes, and the one test of
whether a stored value is a number at all (old or damaged rows may hold None or NaN)."""

from __future__ import annotations

import math
from typing import Any


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, not a number or not finite."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def duration(seconds: float | None) -> str:
    """'0.4 s', '45 s', '3 min 05 s', '1 h 02 min'; '—' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 9.95:
        return f"{round(seconds, 1):g} s"  # a tiny run should not read "0 s"
    s = int(round(seconds))
    if s < 100:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def rough_duration(seconds: float | None) -> str:
    """An estimate, short enough for a metric tile: '45 s', '12 min', '2.7 h', and
    'more than a day' beyond one (a precise number there would be false precision)."""
    if seconds is None or not math.isfinite(seconds):
        return "more than a day" if seconds == math.inf else "—"
    if seconds > 24 * 3600:
        return "more than a day"
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def si(x: float | None, unit: str = "") -> str:
    """1234567 -> '1.23 M' (with unit); '—' when unknown."""
    if x is None:
        return "—"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()
