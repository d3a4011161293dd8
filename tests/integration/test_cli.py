"""The ``bitrix-openlines`` command end to end against the fake portal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitrix_openlines.batch import DialogOutcome
from bitrix_openlines.cli import _demo_failures, main
from bitrix_openlines.errors import AccessError, OpenLinesError, TransportError
from bitrix_openlines.testing import ThreadedFakePortal

pytestmark = pytest.mark.integration

ENV_KEYS = (
    "BITRIX24_WEBHOOK_URL",
    "BITRIX24_TOKENS_FILE",
    "BITRIX24_CLIENT_ID",
    "BITRIX24_CLIENT_SECRET",
    "BITRIX24_TOKEN_URL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def portal() -> Iterator[ThreadedFakePortal]:
    with ThreadedFakePortal(dialogs=400, forbidden=[7], rate=None) as fake:
        yield fake


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_dialog_get_prints_json(
    portal: ThreadedFakePortal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", portal.webhook_url)
    fake = portal.dialogs[4]
    for flags in (
        ["--chat-id", str(fake.chat_id)],
        ["--dialog-id", fake.dialog_id],
        ["--session-id", str(fake.session_id)],
        ["--user-code", fake.user_code],
    ):
        assert main(["dialog", "get", *flags]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["id"] == fake.chat_id
        assert data["entity_id"] == fake.user_code


def test_dialog_get_failures_and_exit_codes(
    portal: ThreadedFakePortal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dialog", "get", "--chat-id", "1"]) == 2
    assert "no credentials" in capsys.readouterr().err
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", portal.webhook_url)
    assert main(["dialog", "get", "--chat-id", "7"]) == 1
    assert "ACCESS_ERROR" in capsys.readouterr().err
    assert main(["dialog", "get", "--dialog-id", "29"]) == 2
    assert "dialog_id" in capsys.readouterr().err
    wrong = portal.webhook_url.rstrip("/").rsplit("/", 1)[0] + "/wrongsecret99/"
    assert main(["dialog", "get", "--chat-id", "1", "--webhook-url", wrong]) == 2
    err = capsys.readouterr().err
    assert "INVALID_CREDENTIALS" in err
    assert "wrongsecret99" not in err
    assert (
        main(["dialog", "get", "--chat-id", "1", "--webhook-url", "http://x.com/rest/1/s3cr3t/"])
        == 2
    )
    err = capsys.readouterr().err
    assert "https" in err
    assert "s3cr3t" not in err
    # An invalid port is bad input (exit 2, before any request), not a network error.
    bad_port = "https://x.com:99999/rest/1/s3cr3t/"
    assert main(["dialog", "get", "--chat-id", "1", "--webhook-url", bad_port]) == 2
    err = capsys.readouterr().err
    assert "invalid port" in err
    assert "s3cr3t" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dialog", "get"], "one of the arguments"),
        (["dialog", "get", "--chat-id", "0"], "positive integer"),
        (["dialog", "get", "--chat-id", "1", "--session-id", "2"], "not allowed with"),
        (["dialog", "get-many", "--input", "x"], "--output"),
        (["demo", "--dialogs", "-3"], "positive integer"),
        (["fake-portal", "--port", "70000"], "port"),
        (["dialog", "get", "--chat-id", "1", "--rate", "0"], "argument --rate"),
        (["dialog", "get-many", "--input", "x", "--output", "y", "--burst", "-5"], "--burst"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_get_many_writes_one_line_per_query(
    portal: ThreadedFakePortal,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", portal.webhook_url)
    source = tmp_path / "in.txt"
    lines = [f"chat_id={i}" for i in range(1, 121)]
    lines += ['{"dialog_id": "chat5"}', "", "# comment", "bogus", "chat_id=abc", "user_code=a|b"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    code = main(["dialog", "get-many", "--input", str(source), "--output", str(output)])
    assert code == 1  # some failed
    records = _records(output)
    assert [r["line"] for r in records] == [*range(1, 122), 124, 125, 126]
    by_line = {r["line"]: r for r in records}
    assert by_line[7]["ok"] is False
    assert by_line[7]["error"]["code"] == "ACCESS_ERROR"  # type: ignore[index]
    assert by_line[121]["dialog"]["id"] == 5  # type: ignore[index]
    assert "chat_id" in by_line[125]["error"]["description"]  # type: ignore[index]
    assert "user_code" in by_line[126]["error"]["description"]  # type: ignore[index]
    err = capsys.readouterr().err
    assert "get-many: 124 queries (120 ok, 4 failed)" in err
    # Running again without --resume would append duplicates: refused.
    assert main(["dialog", "get-many", "--input", str(source), "--output", str(output)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_get_many_stdin_to_stdout(
    portal: ThreadedFakePortal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", portal.webhook_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("chat_id=1\nchat_id=2\n"))
    assert main(["dialog", "get-many", "--input", "-", "--output", "-"]) == 0
    out = capsys.readouterr()
    assert [json.loads(line)["dialog"]["id"] for line in out.out.splitlines()] == [1, 2]
    assert "[" not in out.err  # no progress bar when stderr is not a terminal
    assert main(["dialog", "get-many", "--input", "-", "--output", "-", "--resume"]) == 2


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bitrix_openlines.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_job_resumes_without_loss_or_duplicates(tmp_path: Path, how: int) -> None:
    queries = 1000
    source = tmp_path / "in.txt"
    source.write_text("".join(f"chat_id={i}\n" for i in range(1, queries + 1)), encoding="utf-8")
    output = tmp_path / "out.jsonl"
    # 20 batches at 8/s with a bucket of 4: about 2 s, so the kill lands part-way.
    with ThreadedFakePortal(dialogs=queries, rate=8.0, burst=4) as portal:
        env = {"BITRIX24_WEBHOOK_URL": portal.webhook_url}
        args = [
            "dialog",
            "get-many",
            "--input",
            str(source),
            "--output",
            str(output),
            "--rate",
            "8",
            "--burst",
            "4",
        ]
        job = _run_cli(args, env)
        # Kill it once it has written a good part of its output (300 of 1000 lines),
        # while it still runs (however long it takes to start on a loaded machine).
        while not (output.exists() and output.read_bytes().count(b"\n") >= 300):
            assert job.poll() is None, job.communicate()[1]
            time.sleep(0.05)
        job.send_signal(how)
        _, err = job.communicate(timeout=30)
        if how == signal.SIGTERM:
            assert job.returncode == 130, err
            assert "--resume" in err
        else:
            assert job.returncode == -signal.SIGKILL
        done_before = output.read_bytes().count(b"\n")
        assert 0 < done_before < queries
        resumed = _run_cli([*args, "--resume"], env)
        _, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
        assert "already done" in err
    lines = sorted(int(r["line"]) for r in _records(output))  # type: ignore[call-overload]
    assert lines == list(range(1, queries + 1))


# -- the demo ----------------------------------------------------------------------------


def test_demo_says_its_failures_are_planted(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--dialogs", "600", "--rate", "1000", "--burst", "1000", "--seed", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    (line,) = [x for x in captured.out.splitlines() if x.strip().startswith("dialogs")]
    assert "failed: ACCESS_ERROR (the " in line
    assert "dialogs the demo mixes in on purpose)" in line
    assert "unexpected" not in captured.err


def _outcome(index: int, error: OpenLinesError | None = None) -> DialogOutcome:
    return DialogOutcome(index=index, query={"chat_id": index}, request=None, error=error)


def _access_error() -> AccessError:
    return AccessError(code="ACCESS_ERROR", status=400)


def test_demo_failures_as_planted() -> None:
    planted = {1: "unknown", 3: "forbidden", 4: "forbidden"}
    outcomes = [_outcome(i, _access_error() if i in planted else None) for i in range(6)]
    text, unexpected = _demo_failures(outcomes, planted)
    assert text == (
        "ACCESS_ERROR (the 1 unknown and 2 forbidden dialogs the demo mixes in on purpose)"
    )
    assert unexpected == []
    assert _demo_failures([_outcome(0)], {}) == ("none", [])


def test_demo_failures_not_planted_are_shown_as_such() -> None:
    planted = {1: "unknown", 3: "forbidden"}
    outcomes = [
        _outcome(0, TransportError("reset")),  # a real failure
        _outcome(1, _access_error()),
        _outcome(2, _access_error()),  # an ACCESS_ERROR the demo did not plant
        _outcome(3),  # planted, yet it succeeded
    ]
    text, unexpected = _demo_failures(outcomes, planted)
    assert text.startswith("1 ACCESS_ERROR (the 1 unknown and 0 forbidden dialogs")
    assert text.endswith("; 1 TransportError, 1 ACCESS_ERROR, not planted")
    assert unexpected == [
        "2 failed other than planted: 1 TransportError, 1 ACCESS_ERROR",
        "1 planted queries did not fail (indexes [3])",
    ]
    # A planted query failing with another code is not as planted either.
    text, unexpected = _demo_failures([_outcome(0, TransportError("reset"))], {0: "unknown"})
    assert text == "1 TransportError, not planted"
    assert unexpected == ["1 failed other than planted: 1 TransportError"]
