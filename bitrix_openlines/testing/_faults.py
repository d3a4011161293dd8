"""Describe and draw the infrastructure faults the fake portal can inject.

Real portals sit behind nginx and a cloud edge: besides API errors, a client meets 500s,
502 pages in HTML, dropped connections, slow answers and cut bodies. These are the failures
a retry policy has to survive, so the fake portal can produce them on purpose, reproducibly
(one seeded :class:`random.Random` per portal).
"""

from __future__ import annotations

import math
import random
from typing import Any, Final

import attrs

__all__ = ["REQUEST_FAULTS", "FaultRoller", "Faults"]

#: Request-level fault kinds, in the order their probabilities are stacked.
REQUEST_FAULTS: Final = ("internal_error", "bad_gateway", "drop", "slow", "truncate")


def _probability(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"Faults.{attribute.name} must be a number between 0 and 1, got {value!r}"
        )
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Faults.{attribute.name} must be between 0 and 1, got {value!r}")


def _seconds(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Faults.{attribute.name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Faults.{attribute.name} must be >= 0 seconds, got {value!r}")


@attrs.frozen
class Faults:
    """Probabilities of injected faults; at most one request-level fault per request.

    Request-level faults apply to ``/rest/`` calls the bucket admitted (so they count in
    the bucket), never to the token endpoint. One random draw per request picks at most one
    of them, stacking the probabilities in the order of the fields, so their sum must not
    exceed 1.

    Attributes:
        internal_error: Answer 500 ``INTERNAL_SERVER_ERROR`` "Internal server error".
        bad_gateway: Answer 502 with an nginx HTML page (``text/html``).
        drop: Close the connection without answering.
        slow: Wait ``slow_seconds``, then answer normally.
        truncate: Answer with only the first half of the body (the JSON does not parse).
        command_internal_error: Per ``batch`` command (its own draw): the command fails
            with ``INTERNAL_SERVER_ERROR`` in ``result_error``.
        command_query_limit: Per ``batch`` command (its own draw): the command is refused
            with ``QUERY_LIMIT_EXCEEDED`` in ``result_error`` (a 200 answer outside).
        slow_seconds: The delay of a ``slow`` fault.
        token_delay: Seconds the token endpoint waits before it answers, after it has
            issued the new pair (and so spent the refresh token), as a slow OAuth server
            does: a client that gives up on the answer has lost the pair.
        seed: Seed of the portal's fault generator; the same seed and the same sequence of
            requests give the same faults.
    """

    internal_error: float = attrs.field(default=0.0, validator=_probability)
    bad_gateway: float = attrs.field(default=0.0, validator=_probability)
    drop: float = attrs.field(default=0.0, validator=_probability)
    slow: float = attrs.field(default=0.0, validator=_probability)
    truncate: float = attrs.field(default=0.0, validator=_probability)
    command_internal_error: float = attrs.field(default=0.0, validator=_probability)
    command_query_limit: float = attrs.field(default=0.0, validator=_probability)
    slow_seconds: float = attrs.field(default=2.0, validator=_seconds)
    token_delay: float = attrs.field(default=0.0, validator=_seconds)
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        total = sum(getattr(self, kind) for kind in REQUEST_FAULTS)
        if total > 1.0 + 1e-12:
            raise ValueError(
                "Faults: internal_error + bad_gateway + drop + slow + truncate must not "
                f"exceed 1 (one fault at most per request), got {total!r}"
            )


class FaultRoller:
    """Draw faults from one seeded generator.

    Args:
        faults: The probabilities, or None for no faults at all.
    """

    def __init__(self, faults: Faults | None) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed if faults is not None else 0)

    @property
    def slow_seconds(self) -> float:
        """Return the delay of a ``slow`` fault (0 without faults)."""
        return self.faults.slow_seconds if self.faults is not None else 0.0

    @property
    def token_delay(self) -> float:
        """Return the token endpoint's delay (0 without faults)."""
        return self.faults.token_delay if self.faults is not None else 0.0

    def roll_request(self) -> str | None:
        """Return the fault kind for one admitted request, or None."""
        if self.faults is None:
            return None
        draw = self._rng.random()
        edge = 0.0
        for kind in REQUEST_FAULTS:
            probability: float = getattr(self.faults, kind)
            edge += probability
            if probability > 0 and draw < edge:
                return kind
        return None

    def roll_command(self) -> bool:
        """Return True when one batch command must fail with ``INTERNAL_SERVER_ERROR``."""
        if self.faults is None:
            return False
        return self._rng.random() < self.faults.command_internal_error

    def roll_command_limit(self) -> bool:
        """Return True when one batch command must be refused with ``QUERY_LIMIT_EXCEEDED``."""
        if self.faults is None or self.faults.command_query_limit <= 0:
            return False
        return self._rng.random() < self.faults.command_query_limit
