"""What a benchmark hands back to the runner: one figure, its reference, a verdict."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Result", "mb"]


def mb(kib: float) -> float:
    """Convert KiB (what ``ru_maxrss`` gives on Linux) to MB (10**6 bytes)."""
    return kib * 1024 / 1e6


@dataclasses.dataclass
class Result:
    """One benchmark's outcome.

    Attributes:
        name: The benchmark's name (``rate_limited_single``...).
        figure: What was measured (seconds, MB...).
        unit: The unit of ``figure`` and ``reference``.
        reference: What ``figure`` is compared with, measured or computed in the same run.
        reference_label: What the reference is ("theoretical minimum"...).
        target: The target, in words.
        passed: Whether the target was met (a report, never a gate).
        details: Every other number worth keeping (parameters, counters, checks).
        notes: Lines to print under the table (the parameters, what missed and why).
        skipped: Why the benchmark did not run (an optional dependency is missing), or
            ``None`` when it ran; a skipped result counts neither as a pass nor a miss.
        paired_ratio: The ratio the verdict uses when it is not ``figure / reference``:
            the median of ratios of paired rounds (each round runs both paths back to
            back), which cancels the machine's drift between rounds; ``None`` otherwise.
    """

    name: str
    figure: float
    unit: str
    reference: float
    reference_label: str
    target: str
    passed: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        """The verdict's ratio: ``paired_ratio`` when given, else ``figure / reference``;
        ``None`` when the reference is zero or the benchmark was skipped."""
        if self.skipped is not None:
            return None
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.figure / self.reference if self.reference > 0 else None

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        data = dataclasses.asdict(self)
        data["ratio"] = self.ratio
        return data
