"""``bitrix_openlines.contrib.redis`` without the ``redis`` extra: a message saying so."""

from __future__ import annotations

import importlib
import sys

import pytest

MODULE = "bitrix_openlines.contrib.redis"


def test_import_without_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forget the cached modules (restored afterwards), then hide redis as if not installed.
    for name in list(sys.modules):
        if name in (MODULE, "redis") or name.startswith("redis."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module(MODULE)
    error = caught.value
    assert 'pip install "bitrix-openlines[redis]"' in str(error)
    # The missing module's name is kept ("redis.asyncio" here: Python names the module
    # whose import failed when the parent is hidden this way; "redis" when not installed).
    assert error.name is not None
    assert error.name.partition(".")[0] == "redis"
    assert error.__cause__ is None
    assert error.__suppress_context__ is True
    assert MODULE not in sys.modules


def test_import_with_redis_works() -> None:
    pytest.importorskip("redis")
    module = importlib.import_module(MODULE)
    assert module.RedisTokenStore.__name__ == "RedisTokenStore"
