"""Count what the fake portal saw and answered, for assertions in tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

__all__ = ["PortalStats"]


@attrs.define
class PortalStats:
    """Counters of one fake portal; mutated by the portal, read by tests.

    Attributes:
        requests: HTTP requests to ``/rest/...``, whatever their answer (302, 404, 401,
            503, faults included).
        by_method: Top-level requests per lower-cased method name, as parsed from the URL
            (unknown methods included; ``batch`` counts once per batch; requests answered
            with a wrong transport or a 302 are not counted).
        commands: ``batch`` commands dispatched to a known method, per method (commands
            refused as nested batch, unknown method or beyond 50 are not counted here;
            commands refused by the operating limit or a fault are).
        rejections: Error codes answered at top level, on ``/rest/`` and on the token
            endpoint (``ACCESS_ERROR``, ``QUERY_LIMIT_EXCEEDED``, ``invalid_grant``...).
        command_rejections: Error codes answered per command inside ``batch``
            (``result_error``), kept apart from ``rejections``.
        refreshes: Successful ``grant_type=refresh_token`` exchanges.
        token_requests: All requests to the token endpoint.
        faults: Injected faults per kind (``internal_error``, ``bad_gateway``, ``drop``,
            ``slow``, ``truncate``, ``command_internal_error``).
        max_bucket_level: Highest leaky-bucket level reached after an admission.
        events: Events posted to handlers by ``send_event``, per event name.
    """

    requests: int = 0
    by_method: Counter[str] = attrs.Factory(Counter)
    commands: Counter[str] = attrs.Factory(Counter)
    rejections: Counter[str] = attrs.Factory(Counter)
    command_rejections: Counter[str] = attrs.Factory(Counter)
    refreshes: int = 0
    token_requests: int = 0
    faults: Counter[str] = attrs.Factory(Counter)
    max_bucket_level: float = 0.0
    events: Counter[str] = attrs.Factory(Counter)

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as plain dicts and numbers (safe to keep or compare)."""
        return {
            field.name: dict(value) if isinstance(value, Counter) else value
            for field, value in ((f, getattr(self, f.name)) for f in attrs.fields(PortalStats))
        }

    def copy(self) -> PortalStats:
        """Return an independent copy (counters copied too)."""
        return attrs.evolve(
            self,
            by_method=Counter(self.by_method),
            commands=Counter(self.commands),
            rejections=Counter(self.rejections),
            command_rejections=Counter(self.command_rejections),
            faults=Counter(self.faults),
            events=Counter(self.events),
        )

    def reset(self) -> None:
        """Zero every counter in place, so references held by tests stay valid."""
        fresh = PortalStats()
        for field in attrs.fields(PortalStats):
            value = getattr(self, field.name)
            if isinstance(value, Counter):
                value.clear()
            else:
                setattr(self, field.name, getattr(fresh, field.name))
