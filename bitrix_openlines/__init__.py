"""bitrix-openlines: an async SDK for the Bitrix24 Open Lines REST API.

Quick start::

    from bitrix_openlines import OpenLinesClient, WebhookAuth

    async with OpenLinesClient(WebhookAuth("https://portal.bitrix24.com/rest/1/code/")) as client:
        dialog = await client.get_dialog(user_code="livechat|1|1373|211")

The names below are what an application uses; everything else stays importable from its
module: the exceptions from :mod:`bitrix_openlines.errors`, limiters and the budget from
:mod:`bitrix_openlines.ratelimit`, hook events from :mod:`bitrix_openlines.hooks`, event
types from :mod:`bitrix_openlines.events`, the chat object's nested types from
:mod:`bitrix_openlines.types`, ``Method`` and the registry from
:mod:`bitrix_openlines.methods`, the wire format from :mod:`bitrix_openlines.wire`.
"""

from bitrix_openlines._version import __version__
from bitrix_openlines.app import Eviction, OpenLinesApp
from bitrix_openlines.auth import (
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    TokenStore,
    WebhookAuth,
    exchange_code,
)
from bitrix_openlines.batch import BatchOutcome, DialogOutcome
from bitrix_openlines.client import OpenLinesClient
from bitrix_openlines.errors import OpenLinesError
from bitrix_openlines.events import parse_event, verify_event
from bitrix_openlines.hooks import Hooks
from bitrix_openlines.methods import DialogGet
from bitrix_openlines.ratelimit import RateLimit
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.sync import SyncOpenLinesClient
from bitrix_openlines.transport import Timeouts
from bitrix_openlines.types.common import Response
from bitrix_openlines.types.dialog import Dialog, UserCode

__all__ = [
    "BatchOutcome",
    "Dialog",
    "DialogGet",
    "DialogOutcome",
    "Eviction",
    "Hooks",
    "InMemoryTokenStore",
    "OAuthAuth",
    "OAuthTokens",
    "OpenLinesApp",
    "OpenLinesClient",
    "OpenLinesError",
    "RateLimit",
    "Response",
    "RetryPolicy",
    "SyncOpenLinesClient",
    "Timeouts",
    "TokenStore",
    "UserCode",
    "WebhookAuth",
    "__version__",
    "exchange_code",
    "parse_event",
    "verify_event",
]
