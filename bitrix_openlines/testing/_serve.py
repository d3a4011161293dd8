"""Run a fake portal until interrupted, for the ``bitrix-openlines fake-portal`` command.

It prints the portal's test credentials (webhook URL, client id and secret, a token pair)
so a person can point a client at it. They are throw-away secrets of a local test server,
generated at start and valid only while it runs, so printing them is intended.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._portal import FakePortal

__all__ = ["serve_forever"]


async def serve_forever(port: int, **portal_kwargs: Any) -> None:
    """Start a :class:`FakePortal` on 127.0.0.1:``port``, print its credentials, wait.

    Returns only when cancelled (Ctrl-C under ``asyncio.run``); the portal is closed then.

    Args:
        port: The port to listen on (0 picks a free one).
        **portal_kwargs: Other :class:`FakePortal` keyword arguments.
    """
    async with FakePortal(port=port, **portal_kwargs) as portal:
        tokens = portal.issue_tokens()
        lines = [
            f"Fake Bitrix24 portal listening on {portal.base_url}",
            f"  webhook URL:    {portal.webhook_url}",
            f"  OAuth endpoint: {portal.client_endpoint}",
            f"  token URL:      {portal.token_url}",
            f"  client_id:      {portal.client_id}",
            f"  client_secret:  {portal.client_secret}",
            f"  access_token:   {tokens['access_token']}",
            f"  refresh_token:  {tokens['refresh_token']}",
            f"  dialogs:        {len(portal.dialogs)} (chat ids 1..{len(portal.dialogs)})",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)
        await asyncio.Event().wait()
