"""bitrix-openlines: an async SDK for the Bitrix24 Open Lines REST API.

Quick start::

    from bitrix_openlines import OpenLinesClient, WebhookAuth

    async with OpenLinesClient(WebhookAuth("https://portal.bitrix24.com/rest/1/code/")) as client:
        dialog = await client.get_dialog(user_code="livechat|1|1373|211")
"""

from bitrix_openlines._version import __version__
from bitrix_openlines.auth import (
    DEFAULT_TOKEN_URL,
    Auth,
    InMemoryTokenStore,
    OAuthAuth,
    OAuthTokens,
    TokenStore,
    WebhookAuth,
    exchange_code,
)
from bitrix_openlines.batch import BatchOutcome, DialogOutcome, InvalidQueryError
from bitrix_openlines.client import OpenLinesClient
from bitrix_openlines.errors import (
    AccessError,
    ApiError,
    AuthError,
    DecodeError,
    EventError,
    EventVerificationError,
    OpenLinesError,
    RateLimitError,
    TransportError,
)
from bitrix_openlines.events import (
    AppInstallEvent,
    Event,
    EventAuth,
    GenericEvent,
    MessageItem,
    OpenLineMessageEvent,
    SessionEvent,
    SessionItem,
    parse_event,
    verify_event,
)
from bitrix_openlines.hooks import Hooks, RefreshEvent, RequestEvent, RetryEvent
from bitrix_openlines.methods import DialogGet, Method, get_method, register_method
from bitrix_openlines.ratelimit import LeakyBucketLimiter, Limiter, OperatingBudget, RateLimit
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.sync import SyncOpenLinesClient
from bitrix_openlines.transport import Timeouts
from bitrix_openlines.types.common import Response, TimeInfo
from bitrix_openlines.types.dialog import (
    CrmBindings,
    Dialog,
    EntityLink,
    LastMessageViews,
    Permissions,
    ReadEntry,
    Restrictions,
    SessionData,
    UserCode,
    Viewer,
)

__all__ = [
    "DEFAULT_TOKEN_URL",
    "AccessError",
    "ApiError",
    "AppInstallEvent",
    "Auth",
    "AuthError",
    "BatchOutcome",
    "CrmBindings",
    "DecodeError",
    "Dialog",
    "DialogGet",
    "DialogOutcome",
    "EntityLink",
    "Event",
    "EventAuth",
    "EventError",
    "EventVerificationError",
    "GenericEvent",
    "Hooks",
    "InMemoryTokenStore",
    "InvalidQueryError",
    "LastMessageViews",
    "LeakyBucketLimiter",
    "Limiter",
    "MessageItem",
    "Method",
    "OAuthAuth",
    "OAuthTokens",
    "OpenLineMessageEvent",
    "OpenLinesClient",
    "OpenLinesError",
    "OperatingBudget",
    "Permissions",
    "RateLimit",
    "RateLimitError",
    "ReadEntry",
    "RefreshEvent",
    "RequestEvent",
    "Response",
    "Restrictions",
    "RetryEvent",
    "RetryPolicy",
    "SessionData",
    "SessionEvent",
    "SessionItem",
    "SyncOpenLinesClient",
    "TimeInfo",
    "TokenStore",
    "Timeouts",
    "TransportError",
    "UserCode",
    "Viewer",
    "WebhookAuth",
    "__version__",
    "exchange_code",
    "get_method",
    "parse_event",
    "register_method",
    "verify_event",
]
