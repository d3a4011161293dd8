"""The ``bitrix-openlines`` command.

- ``dialog get --chat-id N | --dialog-id chatN | --session-id N | --user-code X`` prints
  one dialog as JSON.
- ``dialog get-many --input FILE|- --output FILE|- [--resume]`` resolves many queries
  into JSON lines (see :mod:`bitrix_openlines._jobs` for the formats).
- ``demo`` resolves thousands of dialogs against a built-in fake portal at the
  documented limits and prints a summary; the unknown and forbidden dialogs it mixes in
  on purpose are said to be so, and any other failure is reported as unexpected.
- ``fake-portal`` runs the fake portal on a port for manual tests.

Credentials come from flags or the environment and are never echoed:
``BITRIX24_WEBHOOK_URL`` (or ``--webhook-url-file PATH``; ``--webhook-url`` works but
shows the secret in ``ps``, and prints a warning), or for OAuth ``BITRIX24_CLIENT_ID``,
``BITRIX24_CLIENT_SECRET``, ``BITRIX24_TOKENS_FILE`` (a JSON token pair, rewritten after
each refresh: refresh tokens are single-use) and optionally ``BITRIX24_TOKEN_URL``.

Exit codes: 0 all ok; 1 some queries failed (or the demo saw something unexpected);
2 usage or auth error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from bitrix_openlines._cli_args import port, positive_float, positive_int
from bitrix_openlines._cli_dialog import add_auth_arguments, run_get, run_get_many
from bitrix_openlines._version import __version__

if TYPE_CHECKING:
    from bitrix_openlines.batch import DialogOutcome

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``bitrix-openlines`` command."""
    parser = argparse.ArgumentParser(
        prog="bitrix-openlines",
        description="Bitrix24 Open Lines SDK: demo and tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dialog = commands.add_parser(
        "dialog", help="get dialogs from a portal", description="Get open-line dialogs."
    )
    dialog_commands = dialog.add_subparsers(dest="dialog_command", required=True, metavar="ACTION")
    get = dialog_commands.add_parser(
        "get",
        help="print one dialog as JSON",
        description="Print one dialog (imopenlines.dialog.get) as JSON.",
    )
    which = get.add_mutually_exclusive_group(required=True)
    which.add_argument("--chat-id", type=positive_int, metavar="N", help="the chat id")
    which.add_argument("--dialog-id", metavar="chatN", help="'chat' and the chat id")
    which.add_argument("--session-id", type=positive_int, metavar="N", help="a session id")
    which.add_argument("--user-code", metavar="CODE", help="connector|line|chat|user")
    add_auth_arguments(get)
    many = dialog_commands.add_parser(
        "get-many",
        help="resolve many queries into JSON lines",
        description=(
            'Read one query per line (a JSON object like {"chat_id": 13}, or key=value '
            "like user_code=livechat|1|1373|211), write one JSON line per query: "
            '{"line": N, "query": ..., "ok": true, "dialog": {...}} or "ok": false with '
            '"error". With --resume, queries already in the output are skipped.'
        ),
    )
    many.add_argument("--input", required=True, metavar="FILE", help="queries, or - for stdin")
    many.add_argument(
        "--output", required=True, metavar="FILE", help="JSON lines, or - for stdout"
    )
    many.add_argument("--resume", action="store_true", help="skip the queries already in --output")
    many.add_argument("--unordered", action="store_true", help="write outcomes as they complete")
    many.add_argument(
        "--concurrency", type=positive_int, default=4, help="batch calls in flight (default 4)"
    )
    add_auth_arguments(many)

    demo = commands.add_parser(
        "demo",
        help="resolve thousands of dialogs against a built-in fake portal",
        description=(
            "Start a fake portal with the documented limits, resolve dialogs through the "
            "public client with get_dialogs, and print a summary. About 2% of the queries "
            "fail on purpose (unknown and forbidden dialogs: ACCESS_ERROR) and the summary "
            "says so; any other failure is reported as unexpected (exit code 1)."
        ),
    )
    demo.add_argument("--dialogs", type=positive_int, default=5000, help="queries (default 5000)")
    demo.add_argument(
        "--rate", type=positive_float, default=2.0, help="portal drain, requests/s (default 2)"
    )
    demo.add_argument("--burst", type=positive_int, default=50, help="portal bucket (default 50)")
    demo.add_argument("--seed", type=int, default=7, help="random seed for the queries")

    fake = commands.add_parser(
        "fake-portal",
        help="run the fake portal on a local port until Ctrl-C",
        description="Run the fake Bitrix24 portal on 127.0.0.1 (test secrets are printed).",
    )
    fake.add_argument("--port", type=port, default=0, help="port (default: a free one)")
    fake.add_argument("--dialogs", type=positive_int, default=100, help="dialogs to serve")
    fake.add_argument("--rate", type=positive_float, default=2.0, help="drain, requests/s")
    fake.add_argument("--burst", type=positive_int, default=50, help="bucket size")
    fake.add_argument(
        "--no-limits",
        action="store_true",
        help="no leaky bucket and no operating-time limit (--rate and --burst are ignored)",
    )
    fake.add_argument(
        "--legacy-2024", action="store_true", help="answer like a 2024 portal (16 fields)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as command-line tools do.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="bitrix-openlines: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "dialog":
        if args.dialog_command == "get":
            return run_get(args, sys.stdout, sys.stderr)
        return _with_sigterm(lambda: run_get_many(args, sys.stdout, sys.stderr))
    if args.command == "demo":
        return asyncio.run(_demo(args, sys.stdout, sys.stderr))
    if args.command == "fake-portal":
        from bitrix_openlines.testing._serve import serve_forever

        limits: dict[str, Any] = (
            {"rate": None, "burst": None, "operating_limit": None}
            if args.no_limits
            else {"rate": args.rate, "burst": args.burst}
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve_forever(
                    args.port, dialogs=args.dialogs, legacy_2024=args.legacy_2024, **limits
                )
            )
        return 0
    raise AssertionError(f"unknown command {args.command!r}")  # argparse prevents this


def _with_sigterm(job: Callable[[], int]) -> int:
    """Run ``job`` with SIGTERM turned into KeyboardInterrupt (a clean, resumable stop)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return job()
    try:
        return job()
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Progress:
    """A one-line progress display on a terminal; occasional lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, failed: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done == total
        if not final and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        of = f"/{total}" if total is not None else ""
        percent = f" {100 * done / total:5.1f}%" if total else ""
        line = f"dialogs {done}{of}{percent}  failed {failed}"
        if self._tty:
            self._stream.write("\r" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


async def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from bitrix_openlines import OpenLinesClient, RateLimit, WebhookAuth
    from bitrix_openlines.testing import FakePortal

    rng = random.Random(args.seed)
    portal_dialogs = max(10, args.dialogs)
    forbidden_count = max(1, portal_dialogs // 100)
    async with FakePortal(
        dialogs=portal_dialogs,
        forbidden=range(1, forbidden_count + 1),
        rate=args.rate,
        burst=args.burst,
        seed=args.seed,
    ) as portal:
        dialogs = portal.dialogs
        queries: list[dict[str, Any]] = []
        # The failures mixed in on purpose, by query index: "unknown" or "forbidden".
        planted: dict[int, str] = {}
        for _ in range(args.dialogs):
            roll = rng.random()
            dialog = rng.choice(dialogs)
            if roll < 0.01:
                planted[len(queries)] = "unknown"
                queries.append({"chat_id": 10_000_000 + rng.randrange(10**6)})
                continue
            kind = rng.choice(("chat_id", "dialog_id", "session_id", "user_code"))
            value: Any = {
                "chat_id": dialog.chat_id,
                "dialog_id": dialog.dialog_id,
                "session_id": dialog.session_id,
                "user_code": dialog.user_code,
            }[kind]
            if dialog.forbidden:
                planted[len(queries)] = "forbidden"
            queries.append({kind: value})
        limit = RateLimit(requests_per_second=args.rate, burst=args.burst)
        unique = len({tuple(q.items()) for q in queries})
        batches = math.ceil(unique / 50)
        out.write(
            f"fake portal at {portal.base_url} (limit {args.rate:g}/s, burst {args.burst}); "
            f"resolving {len(queries)} dialog queries ({unique} unique) through batch...\n"
        )
        out.flush()
        started = time.perf_counter()
        async with OpenLinesClient(WebhookAuth(portal.webhook_url), rate_limit=limit) as client:
            outcomes = await client.get_dialogs(queries, progress=_Progress(err))
        elapsed = time.perf_counter() - started
        stats = portal.stats
    ok = sum(1 for o in outcomes if o.ok)
    failures, unexpected = _demo_failures(outcomes, planted)
    minimum = limit.minimum_seconds(batches)
    rejected = stats.rejections.get("QUERY_LIMIT_EXCEEDED", 0)
    out.write(
        "\nsummary\n"
        f"  dialogs           {len(outcomes)} ({ok} ok, {len(outcomes) - ok} failed: "
        f"{failures})\n"
        f"  batch requests    {stats.by_method.get('batch', 0)} for {batches} batches "
        f"of <= 50 unique queries\n"
        f"  seconds           {elapsed:.2f}\n"
        f"  theoretical min   {minimum:.2f} s  "
        f"(max(0, {batches} - {args.burst}) / {args.rate:g})\n"
        f"  server rejections {rejected} (QUERY_LIMIT_EXCEEDED)\n"
    )
    in_order = [o.index for o in outcomes] == list(range(len(queries)))
    if len(outcomes) != len(queries) or not in_order:
        unexpected.insert(0, f"{len(outcomes)} outcomes for {len(queries)} queries")
    for problem in unexpected:
        err.write(f"unexpected: {problem}\n")
    return 1 if unexpected else 0


def _demo_failures(
    outcomes: Sequence[DialogOutcome], planted: Mapping[int, str]
) -> tuple[str, list[str]]:
    """Describe the demo's failures; return the text and what was not as planted.

    ``planted`` maps the index of each query the demo made fail on purpose to why
    (``"unknown"`` or ``"forbidden"``); each must fail with ``ACCESS_ERROR`` and nothing
    else may fail, so that a real failure still shows as one.
    """
    failed = {o.index: o.error for o in outcomes if o.error is not None}
    as_planted = {i for i, e in failed.items() if i in planted and e.code == "ACCESS_ERROR"}
    others = Counter(e.code or type(e).__name__ for i, e in failed.items() if i not in as_planted)
    listed = ", ".join(f"{n} {code}" for code, n in others.most_common())
    missed = sorted(set(planted) - set(failed))
    unexpected: list[str] = []
    if others:
        unexpected.append(f"{others.total()} failed other than planted: {listed}")
    if missed:
        unexpected.append(f"{len(missed)} planted queries did not fail (indexes {missed[:5]})")
    kinds = Counter(planted[i] for i in as_planted)
    on_purpose = (
        f"the {kinds['unknown']} unknown and {kinds['forbidden']} forbidden dialogs "
        "the demo mixes in on purpose"
    )
    if not failed:
        return "none", unexpected
    if not others:
        return f"ACCESS_ERROR ({on_purpose})", unexpected
    text = f"{listed}, not planted"
    if as_planted:
        text = f"{len(as_planted)} ACCESS_ERROR ({on_purpose}); {text}"
    return text, unexpected


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
