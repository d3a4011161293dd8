"""``bitrix-openlines dialog get`` and ``dialog get-many``: auth from flags or environment."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any, TextIO

from bitrix_openlines._cli_args import positive_float, positive_int
from bitrix_openlines._jobs import (
    QueryLine,
    dialog_to_json,
    outcome_to_json,
    read_queries,
    scan_output,
)
from bitrix_openlines.auth import DEFAULT_TOKEN_URL, Auth, OAuthAuth, OAuthTokens, WebhookAuth
from bitrix_openlines.errors import AuthError, CommandLineError, OpenLinesError
from bitrix_openlines.ratelimit import RateLimit
from bitrix_openlines.sync import SyncOpenLinesClient

__all__ = ["add_auth_arguments", "run_get", "run_get_many"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# A webhook URL is under 300 bytes; a file much larger is not one (and is not read whole).
_MAX_URL_FILE_BYTES = 4096

FLAG_WARNING = (
    "bitrix-openlines: warning: --webhook-url puts the webhook's secret code in the process "
    "list (ps) and the shell history; set BITRIX24_WEBHOOK_URL or use --webhook-url-file "
    "PATH instead\n"
)


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the credential and limit flags shared by the ``dialog`` commands."""
    group = parser.add_argument_group("credentials (flags override the environment)")
    webhook = group.add_mutually_exclusive_group()
    webhook.add_argument(
        "--webhook-url-file",
        metavar="PATH",
        help="a file holding the incoming webhook's URL (preferred, with BITRIX24_WEBHOOK_URL)",
    )
    webhook.add_argument(
        "--webhook-url",
        metavar="URL",
        help=(
            "incoming webhook https://portal/rest/<user>/<code>/; visible to other users "
            "in ps: prefer env BITRIX24_WEBHOOK_URL or --webhook-url-file"
        ),
    )
    group.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="OAuth token pair as JSON, rewritten after each refresh (env BITRIX24_TOKENS_FILE)",
    )
    group.add_argument(
        "--client-id", metavar="ID", help="OAuth client id (env BITRIX24_CLIENT_ID)"
    )
    group.add_argument(
        "--token-url",
        metavar="URL",
        help=f"OAuth server (env BITRIX24_TOKEN_URL, default {DEFAULT_TOKEN_URL})",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--enterprise", action="store_true", help="the Enterprise plan's limit (5/s, burst 250)"
    )
    limits.add_argument(
        "--rate", type=positive_float, help="the portal's drain, requests/s (default 2)"
    )
    limits.add_argument("--burst", type=positive_int, help="the portal's bucket size (default 50)")


def _env(args: argparse.Namespace, flag: str, variable: str) -> str | None:
    value = getattr(args, flag, None)
    return value if value else os.environ.get(variable) or None


def read_webhook_url_file(path: str) -> str:
    """Return the webhook URL held in ``path``, stripped of surrounding whitespace.

    Raises:
        CommandLineError: The file is missing, unreadable, too large, not UTF-8 text, empty
            or more than one line; the text names the file, never its content.
    """
    where = f"--webhook-url-file: {path}"
    try:
        with open(path, "rb") as stream:
            data = stream.read(_MAX_URL_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandLineError(f"{where}: cannot read it: {exc.strerror}") from None
    if len(data) > _MAX_URL_FILE_BYTES:
        raise CommandLineError(
            f"{where}: larger than {_MAX_URL_FILE_BYTES} bytes, not a webhook URL"
        )
    try:
        url = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise CommandLineError(f"{where}: not UTF-8 text") from None
    if not url:
        raise CommandLineError(f"{where}: the file is empty")
    if len(url.splitlines()) > 1:
        raise CommandLineError(f"{where}: the file must hold the URL alone, on one line")
    return url


def build_auth(args: argparse.Namespace, err: TextIO | None = None) -> Auth:
    """Build the auth from flags and environment.

    ``--webhook-url`` (visible in ``ps``) prints a warning to ``err``, once per call.

    Raises:
        CommandLineError: Nothing or too much is configured, or a value is invalid; the text
            names the setting, never its secret value.
    """
    url_file = getattr(args, "webhook_url_file", None)
    if getattr(args, "webhook_url", None) and err is not None:
        err.write(FLAG_WARNING)
        err.flush()
    if url_file:
        webhook: str | None = read_webhook_url_file(url_file)
        source = "--webhook-url-file"
    else:
        webhook = _env(args, "webhook_url", "BITRIX24_WEBHOOK_URL")
        source = "--webhook-url / BITRIX24_WEBHOOK_URL"
    tokens_file = _env(args, "tokens_file", "BITRIX24_TOKENS_FILE")
    if webhook and tokens_file:
        raise CommandLineError("give either a webhook URL or an OAuth tokens file, not both")
    if webhook:
        try:
            return WebhookAuth(webhook)
        except (TypeError, ValueError) as exc:
            raise CommandLineError(f"{source}: {exc}") from None
    if tokens_file:
        client_id = _env(args, "client_id", "BITRIX24_CLIENT_ID")
        client_secret = os.environ.get("BITRIX24_CLIENT_SECRET")
        if not client_id or not client_secret:
            raise CommandLineError(
                "OAuth needs BITRIX24_CLIENT_ID (or --client-id) and BITRIX24_CLIENT_SECRET"
            )
        tokens = _load_tokens(tokens_file)
        token_url = _env(args, "token_url", "BITRIX24_TOKEN_URL") or DEFAULT_TOKEN_URL
        try:
            return OAuthAuth(
                client_id=client_id,
                client_secret=client_secret,
                tokens=tokens,
                token_url=token_url,
                on_refresh=lambda new: _save_tokens(tokens_file, new),
            )
        except (TypeError, ValueError) as exc:
            raise CommandLineError(f"OAuth settings: {exc}") from None
    raise CommandLineError(
        "no credentials: set BITRIX24_WEBHOOK_URL (or --webhook-url-file), or "
        "BITRIX24_TOKENS_FILE with BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET"
    )


def _load_tokens(path: str) -> OAuthTokens:
    try:
        with open(path, encoding="utf-8") as stream:
            body = json.load(stream)
    except OSError as exc:
        raise CommandLineError(f"--tokens-file: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CommandLineError(f"--tokens-file: {path} is not JSON") from None
    if not isinstance(body, Mapping):
        raise CommandLineError(f"--tokens-file: {path} must hold a JSON object")
    try:
        return OAuthTokens.from_response(body)
    except ValueError as exc:
        raise CommandLineError(f"--tokens-file: {exc}") from None


def _save_tokens(path: str, tokens: OAuthTokens) -> None:
    body = tokens.to_response()
    # Write then rename: a crash never leaves a half-written pair (the old one is spent).
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".tokens-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump(body, stream)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def build_rate_limit(args: argparse.Namespace) -> RateLimit:
    """The client's rate limit from ``--enterprise``, ``--rate`` and ``--burst``."""
    base = RateLimit.enterprise() if args.enterprise else RateLimit.standard()
    rate = args.rate if args.rate is not None else base.requests_per_second
    burst = args.burst if args.burst is not None else base.burst
    # argparse has already refused a --rate or --burst that is not positive.
    return RateLimit(requests_per_second=rate, burst=burst)


def run_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``dialog get``: print one dialog as JSON."""
    try:
        auth = build_auth(args, err)
        limit = build_rate_limit(args)
        query = {
            key: getattr(args, key)
            for key in ("chat_id", "dialog_id", "session_id", "user_code")
            if getattr(args, key) is not None
        }
        with SyncOpenLinesClient(auth, rate_limit=limit) as client:
            try:
                dialog = client.get_dialog(**query)
            except (TypeError, ValueError) as exc:
                raise CommandLineError(str(exc)) from None
    except CommandLineError as exc:
        err.write(f"bitrix-openlines: error: {exc}\n")
        return EXIT_USAGE
    except AuthError as exc:
        err.write(f"bitrix-openlines: auth error: {exc}\n")
        return EXIT_USAGE
    except OpenLinesError as exc:
        err.write(f"bitrix-openlines: {exc}\n")
        return EXIT_FAILED
    json.dump(dialog_to_json(dialog), out, ensure_ascii=False, indent=2)
    out.write("\n")
    return EXIT_OK


class _Bar:
    """A progress bar on a terminal (stderr); nothing when it is not a terminal."""

    def __init__(self, stream: TextIO, skipped: int) -> None:
        self._stream = stream
        self._on = stream.isatty()
        self._started = time.monotonic()
        self._last = 0.0
        self._skipped = skipped

    def __call__(self, done: int, failed: int, total: int | None) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done != total:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            eta = (total - done) / rate if rate > 0 else 0.0
            text = f"[{bar}] {done}/{total} failed {failed}  {rate:.0f}/s  eta {eta:.0f}s"
        else:
            text = f"{done} done, failed {failed}  {rate:.0f}/s"
        self._stream.write("\r" + text + " " * 4)
        self._stream.flush()

    def finish(self) -> None:
        if self._on:
            self._stream.write("\n")
            self._stream.flush()


def _open_input(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CommandLineError(f"--input: cannot read {path}: {exc.strerror}") from None


def _count_queries(path: str, skip: set[int]) -> int | None:
    if path == "-":
        return None
    with open(path, encoding="utf-8") as stream:
        return sum(1 for _ in read_queries(stream, skip))


def run_get_many(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``dialog get-many``: queries from a file, one JSON line per outcome."""
    started = time.monotonic()
    try:
        if args.resume and args.output == "-":
            raise CommandLineError("--resume needs --output FILE (it reads what is already there)")
        existing = args.output != "-" and os.path.exists(args.output)
        if existing and not args.resume and os.path.getsize(args.output) > 0:
            raise CommandLineError(
                f"--output: {args.output} exists; use --resume to continue it, or remove it"
            )
        auth = build_auth(args, err)
        limit = build_rate_limit(args)
        try:
            skip = scan_output(args.output) if args.resume else set()
        except ValueError as exc:
            raise CommandLineError(f"--output: {exc}") from None
        source = _open_input(args.input)
        total = _count_queries(args.input, skip)
    except CommandLineError as exc:
        err.write(f"bitrix-openlines: error: {exc}\n")
        return EXIT_USAGE

    bar = _Bar(err, len(skip))
    ok = failed = 0
    code = EXIT_OK
    pending: dict[int, QueryLine] = {}

    def queries() -> Iterator[Any]:
        for index, line in enumerate(read_queries(source, skip)):
            pending[index] = line
            yield line.query

    with contextlib.ExitStack() as cleanup:
        if source is not sys.stdin:
            cleanup.enter_context(source)
        sink = (
            out
            if args.output == "-"
            else cleanup.enter_context(open(args.output, "a", encoding="utf-8"))
        )
        try:
            client = cleanup.enter_context(SyncOpenLinesClient(auth, rate_limit=limit))
            stream = client.iter_dialogs(
                queries(),
                ordered=not args.unordered,
                concurrency=args.concurrency,
                progress=lambda d, f, t: bar(d, f, total),
            )
            cleanup.callback(stream.close)  # type: ignore[attr-defined]
            for outcome in stream:
                if isinstance(outcome.error, AuthError):
                    # Every other query would fail the same way: stop, and write nothing
                    # for it, so that a resumed run does these queries again.
                    bar.finish()
                    err.write(f"bitrix-openlines: auth error: {outcome.error}\n")
                    code = EXIT_USAGE
                    break
                line = pending.pop(outcome.index)
                sink.write(json.dumps(outcome_to_json(line, outcome), ensure_ascii=False))
                sink.write("\n")
                if outcome.ok:
                    ok += 1
                else:
                    failed += 1
        except KeyboardInterrupt:
            bar.finish()
            err.write("bitrix-openlines: interrupted; run again with --resume to continue\n")
            code = EXIT_INTERRUPTED
        finally:
            sink.flush()
    if code == EXIT_OK:
        bar.finish()
        code = EXIT_FAILED if failed else EXIT_OK
    seconds = time.monotonic() - started
    resumed = f", {len(skip)} already done" if skip else ""
    err.write(
        f"get-many: {ok + failed} queries ({ok} ok, {failed} failed){resumed} in {seconds:.1f}s\n"
    )
    return code
