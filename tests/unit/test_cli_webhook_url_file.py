"""``--webhook-url-file`` and the ``--webhook-url`` warning, without a portal."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from bitrix_openlines import WebhookAuth
from bitrix_openlines._cli_dialog import FLAG_WARNING, build_auth, read_webhook_url_file
from bitrix_openlines.errors import CommandLineError

URL = "https://portal.bitrix24.com/rest/1/q8w7e6r5t4y3u2i1/"


def _args(**kwargs: str | None) -> argparse.Namespace:
    values: dict[str, str | None] = {
        "webhook_url": None,
        "webhook_url_file": None,
        "tokens_file": None,
        "client_id": None,
        "token_url": None,
    }
    values.update(kwargs)
    return argparse.Namespace(**values)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("BITRIX24_WEBHOOK_URL", "BITRIX24_TOKENS_FILE"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("content", [URL, f"{URL}\n", f"  {URL}  \r\n\r\n", f"\ufeff{URL}\n"])
def test_the_file_is_read_and_stripped(tmp_path: Path, content: str) -> None:
    path = tmp_path / "url"
    path.write_text(content, encoding="utf-8")
    assert read_webhook_url_file(str(path)) == URL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\n \t\r\n", "the file is empty"),
        (URL.encode() + b"\n" + URL.encode(), "on one line"),
        (b"\xc3\x28" + URL.encode(), "not UTF-8 text"),
        (b"x" * 4097, "larger than 4096 bytes"),
    ],
)
def test_a_bad_file_is_refused_naming_it_not_its_content(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "url"
    path.write_bytes(data)
    with pytest.raises(CommandLineError, match=message) as caught:
        read_webhook_url_file(str(path))
    text = str(caught.value)
    assert text.startswith(f"--webhook-url-file: {path}: ")
    assert "q8w7e6r5t4y3u2i1" not in text
    assert "xxxx" not in text


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandLineError, match="cannot read it: No such file or directory"):
        read_webhook_url_file(str(tmp_path / "nothing"))


def test_the_file_builds_a_webhook_auth_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text(URL, encoding="utf-8")
    err = io.StringIO()
    auth = build_auth(_args(webhook_url_file=str(path)), err)
    assert isinstance(auth, WebhookAuth)
    assert auth.portal == "https://portal.bitrix24.com"
    assert err.getvalue() == ""


def test_the_flag_builds_the_auth_and_warns_once() -> None:
    err = io.StringIO()
    auth = build_auth(_args(webhook_url=URL), err)
    assert isinstance(auth, WebhookAuth)
    assert err.getvalue() == FLAG_WARNING
    assert "q8w7e6r5t4y3u2i1" not in FLAG_WARNING


def test_the_file_with_a_tokens_file_is_too_much(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text(URL, encoding="utf-8")
    with pytest.raises(CommandLineError, match="not both"):
        build_auth(_args(webhook_url_file=str(path), tokens_file=str(tmp_path / "t.json")))
