"""The same query gives the same outcome alone and inside a ``batch``, whatever its type.

One encoder (:func:`bitrix_openlines.wire.to_wire`) serves both paths: a single call's
JSON body and a batch command's PHP query string carry the same PHP array to the portal.
The fake portal decodes each path on its own (JSON, and ``parse_str`` for batch
commands), so a disagreement between the two encodings shows up as two outcomes.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import pytest

from bitrix_openlines import Dialog, OpenLinesClient
from bitrix_openlines.errors import OpenLinesError
from bitrix_openlines.methods import Method

pytestmark = pytest.mark.integration


class Chat(int, enum.Enum):
    """An ``int``-mixin enum, as applications name their well-known chats."""

    SUPPORT = 5


class Line(enum.IntEnum):
    SALES = 7


class Prefix(str, enum.Enum):  # noqa: UP042 - a mixin on purpose: str() is not its value
    CHAT9 = "chat9"


@attrs.frozen(kw_only=True)
class _AnyDialogGet(Method[Dialog]):
    """``imopenlines.dialog.get`` without the SDK's checks: any value goes out as given."""

    __api_method__ = "imopenlines.dialog.get"
    __returns__ = Dialog
    __idempotent__ = True

    chat_id: Any = attrs.field(default=None, metadata={"wire": "CHAT_ID"})
    dialog_id: Any = attrs.field(default=None, metadata={"wire": "DIALOG_ID"})
    user_code: Any = attrs.field(default=None, metadata={"wire": "USER_CODE"})


# (parameters, what the portal must answer: a chat id, or an error code)
CASES: list[tuple[dict[str, Any], int | str]] = [
    ({"chat_id": 5}, 5),
    ({"chat_id": "5"}, 5),
    ({"chat_id": " 6"}, 6),
    ({"chat_id": 6.0}, 6),
    ({"chat_id": True}, 1),
    ({"chat_id": False}, "ACCESS_ERROR"),
    ({"chat_id": Chat.SUPPORT}, 5),
    ({"chat_id": Line.SALES}, 7),
    ({"chat_id": 3}, "ACCESS_ERROR"),  # forbidden
    ({"chat_id": 10**6}, "ACCESS_ERROR"),  # unknown
    ({"dialog_id": "chat8"}, 8),
    ({"dialog_id": Prefix.CHAT9}, 9),
    ({"dialog_id": "chat 8"}, "ACCESS_ERROR"),
    ({"chat_id": None, "dialog_id": "chat10"}, 10),
    ({"chat_id": [], "dialog_id": "chat11"}, 11),  # an empty list is not sent at all
]


def _outcome(result: Dialog | None, error: BaseException | None) -> int | str:
    if error is not None:
        assert isinstance(error, OpenLinesError), repr(error)
        return error.code or type(error).__name__
    assert result is not None
    return result.chat_id


@pytest.mark.parametrize(("params", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
async def test_alone_and_in_a_batch_the_same(
    client: OpenLinesClient, params: dict[str, Any], expected: int | str
) -> None:
    method = _AnyDialogGet(**params)
    try:
        dialog: Dialog = await client(method)
        alone = _outcome(dialog, None)
    except OpenLinesError as error:
        alone = _outcome(None, error)
    (outcome,) = await client.batch([method])
    in_batch = _outcome(outcome.result, outcome.error)
    assert (alone, in_batch) == (expected, expected)


async def test_all_cases_in_one_batch(client: OpenLinesClient) -> None:
    methods = [_AnyDialogGet(**params) for params, _ in CASES]
    outcomes = await client.batch(methods)
    assert [_outcome(o.result, o.error) for o in outcomes] == [e for _, e in CASES]
