"""Test a Bitrix24 Open Lines client against a fake portal that speaks the real protocol.

:class:`FakePortal` is a real aiohttp server on 127.0.0.1 that answers
``imopenlines.dialog.get``, ``batch``, ``imopenlines.revision.get``, ``server.time`` and
``app.info`` like a Bitrix24 portal: webhook and OAuth auth, the token endpoint with
single-use refresh tokens, the leaky bucket (503), the operating-time limit (429) and
injectable faults. It also posts events to an application's handler
(:meth:`FakePortal.send_event`), form-encoded as a portal does.
:class:`FakePortalHost` serves many portals from one server (one application installed
on each), each named by its own host. :class:`ThreadedFakePortal` runs one in a
background thread for sync code, and the pytest plugin
(``bitrix_openlines.testing.pytest_plugin``) provides it as the ``fake_portal`` fixture.
The package depends only on aiohttp and attrs, never on the SDK itself::

    async with FakePortal(dialogs=10, forbidden=[3]) as portal:
        async with aiohttp.ClientSession() as http:
            url = portal.webhook_url + "imopenlines.dialog.get"
            async with http.post(url, json={"CHAT_ID": 1}) as response:
                dialog = (await response.json())["result"]
"""

from ._data import FakeDialog
from ._faults import Faults
from ._host import FakePortalHost, LocalhostResolver
from ._portal import FakePortal
from ._stats import PortalStats
from ._threaded import ThreadedFakePortal

__all__ = [
    "FakeDialog",
    "FakePortal",
    "FakePortalHost",
    "Faults",
    "LocalhostResolver",
    "PortalStats",
    "ThreadedFakePortal",
]
