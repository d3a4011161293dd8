"""How the command takes the webhook URL: the environment, a file, or the flag with a warning.

``--webhook-url`` puts the secret in ``ps``: it still works, but prints a warning once;
``BITRIX24_WEBHOOK_URL`` and ``--webhook-url-file PATH`` are preferred (issue 15, item 8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitrix_openlines.cli import main
from bitrix_openlines.testing import ThreadedFakePortal

pytestmark = pytest.mark.integration

ENV_KEYS = (
    "BITRIX24_WEBHOOK_URL",
    "BITRIX24_TOKENS_FILE",
    "BITRIX24_CLIENT_ID",
    "BITRIX24_CLIENT_SECRET",
    "BITRIX24_TOKEN_URL",
)
WARNING = "warning: --webhook-url puts the webhook's secret code in the process list"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="module")
def portal() -> Iterator[ThreadedFakePortal]:
    with ThreadedFakePortal(dialogs=20, rate=None) as fake:
        yield fake


def _code(portal: ThreadedFakePortal) -> str:
    """The webhook's secret code (the path segment after the user id)."""
    return portal.webhook_url.rstrip("/").rsplit("/", 1)[1]


def test_the_url_is_read_from_the_file_and_stripped(
    portal: ThreadedFakePortal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url_file = tmp_path / "webhook"
    url_file.write_text(f"\ufeff  {portal.webhook_url}\r\n\n", encoding="utf-8")
    assert main(["dialog", "get", "--chat-id", "5", "--webhook-url-file", str(url_file)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["id"] == 5
    assert captured.err == ""  # no warning


def test_the_file_overrides_the_environment(
    portal: ThreadedFakePortal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = portal.webhook_url.replace(_code(portal), "wrongsecret99")
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", wrong)
    url_file = tmp_path / "webhook"
    url_file.write_text(portal.webhook_url + "\n", encoding="utf-8")
    assert main(["dialog", "get", "--chat-id", "3", "--webhook-url-file", str(url_file)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == 3


def test_get_many_takes_the_file(
    portal: ThreadedFakePortal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url_file = tmp_path / "webhook"
    url_file.write_text(portal.webhook_url, encoding="utf-8")
    source = tmp_path / "in.txt"
    source.write_text("chat_id=1\nchat_id=2\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    argv = ["dialog", "get-many", "--input", str(source), "--output", str(output)]
    assert main([*argv, "--webhook-url-file", str(url_file)]) == 0
    lines = output.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["dialog"]["id"] for line in lines] == [1, 2]
    assert WARNING not in capsys.readouterr().err


def _refusals(tmp_path: Path, secret: str) -> list[tuple[Path, str]]:
    empty = tmp_path / "empty"
    empty.write_text(" \n\t\n", encoding="utf-8")
    two_lines = tmp_path / "two-lines"
    two_lines.write_text(f"https://p.example/rest/1/{secret}/\nsecond line\n", encoding="utf-8")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + secret.encode() + b"\x80")
    huge = tmp_path / "huge"
    huge.write_text(f"https://p.example/rest/1/{secret}/" * 200, encoding="utf-8")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return [
        (tmp_path / "missing", "cannot read it: No such file or directory"),
        (folder, "cannot read it: Is a directory"),
        (empty, "the file is empty"),
        (two_lines, "the file must hold the URL alone, on one line"),
        (binary, "not UTF-8 text"),
        (huge, "larger than 4096 bytes"),
    ]


@pytest.mark.parametrize("command", ["get", "get-many"])
def test_a_bad_file_is_refused_with_exit_2_without_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    secret = "s3cr3tc0de4w3bh00k"
    for path, message in _refusals(tmp_path, secret):
        if command == "get":
            argv = ["dialog", "get", "--chat-id", "1"]
        else:
            argv = ["dialog", "get-many", "--input", "-", "--output", str(tmp_path / "o")]
        assert main([*argv, "--webhook-url-file", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert f"error: --webhook-url-file: {path}: {message}" in err, err
        assert secret not in err
        assert "second line" not in err


def test_the_flag_works_and_warns_once(
    portal: ThreadedFakePortal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dialog", "get", "--chat-id", "4", "--webhook-url", portal.webhook_url]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["id"] == 4
    assert captured.err.count(WARNING) == 1
    assert "BITRIX24_WEBHOOK_URL" in captured.err
    assert "--webhook-url-file" in captured.err
    assert _code(portal) not in captured.err
    # get-many: once for the whole run, however many queries.
    source = tmp_path / "in.txt"
    source.write_text("".join(f"chat_id={i}\n" for i in range(1, 11)), encoding="utf-8")
    argv = ["dialog", "get-many", "--input", str(source), "--output", str(tmp_path / "out")]
    assert main([*argv, "--webhook-url", portal.webhook_url]) == 0
    assert capsys.readouterr().err.count(WARNING) == 1


def test_the_flag_warns_even_when_the_run_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # The secret is in the process list already, whatever happens next.
    argv = ["dialog", "get", "--chat-id", "1", "--webhook-url", "http://x.com/rest/1/s3cr3t/"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1
    assert "s3cr3t" not in err


def test_the_environment_gives_no_warning(
    portal: ThreadedFakePortal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", portal.webhook_url)
    assert main(["dialog", "get", "--chat-id", "2"]) == 0
    assert capsys.readouterr().err == ""


def test_the_flag_and_the_file_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url_file = tmp_path / "webhook"
    url_file.write_text("https://p.example/rest/1/abc/", encoding="utf-8")
    argv = ["dialog", "get", "--chat-id", "1", "--webhook-url-file", str(url_file)]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--webhook-url", "https://p.example/rest/1/abc/"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_the_help_and_the_docs_prefer_the_environment_or_a_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["dialog", "get", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--webhook-url-file PATH" in help_text
    assert "prefer env BITRIX24_WEBHOOK_URL or --webhook-url-file" in help_text
    jobs = (ROOT / "docs" / "jobs.md").read_text(encoding="utf-8")
    assert "### Giving the webhook URL" in jobs
    # No documented command passes a webhook URL on the command line.
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"--webhook-url[ =]+['\"]?https?://", text), page
