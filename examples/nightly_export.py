"""A nightly job: export Open Lines dialogs to a JSON lines file, with no event loop.

It resolves a range of chat ids through ``SyncOpenLinesClient.iter_dialogs`` (``batch``
calls of 50 at the portal's rate, memory bounded however long the range) and writes one
line per chat: the dialog, or the error (a forbidden or unknown chat does not stop the
job). A summary goes to standard output.

Run it:

* without configuration, against a fake portal (in a background thread) with 240
  dialogs, a few of them forbidden, exporting chats 1..250;
* with ``BITRIX24_WEBHOOK_URL`` set, against that portal::

    python examples/nightly_export.py --first 1 --last 5000 --output dialogs.jsonl

Either way the file is ``--output``, by default ``dialogs-export.jsonl`` in the current
folder (replaced if it exists); its full path is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from bitrix_openlines import Dialog, DialogOutcome, SyncOpenLinesClient, WebhookAuth
from bitrix_openlines.testing import ThreadedFakePortal


def _plain(value: Any) -> Any:
    """A JSON-ready copy: attrs objects as dicts, dates as ISO-8601 text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dialog_record(dialog: Dialog) -> dict[str, Any]:
    """The dialog's fields, with the fields this SDK does not know yet (``extra``) merged in."""
    record = _plain(dialog)
    extra = record.pop("extra", {})
    record.update({k: v for k, v in extra.items() if k not in record})
    return dict(record)


def outcome_record(chat_id: int, outcome: DialogOutcome) -> dict[str, Any]:
    """One output line: the chat id and the dialog, or the error."""
    if outcome.dialog is not None:
        return {"chat_id": chat_id, "ok": True, "dialog": dialog_record(outcome.dialog)}
    error = outcome.error
    return {
        "chat_id": chat_id,
        "ok": False,
        "error": {"type": type(error).__name__, "code": getattr(error, "code", None)},
    }


def export(client: SyncOpenLinesClient, chat_ids: range, out: TextIO) -> tuple[int, int]:
    """Write one JSON line per chat id; return (exported, failed)."""
    exported = failed = 0
    queries: Iterator[dict[str, int]] = ({"chat_id": chat_id} for chat_id in chat_ids)
    # Outcomes come in input order, one per query.
    for chat_id, outcome in zip(chat_ids, client.iter_dialogs(queries), strict=True):
        out.write(json.dumps(outcome_record(chat_id, outcome), ensure_ascii=False) + "\n")
        if outcome.ok:
            exported += 1
        else:
            failed += 1
    return exported, failed


def run(client: SyncOpenLinesClient, chat_ids: range, output: Path) -> None:
    """Export to ``output`` (written aside, then renamed, so a failed night leaves no half
    file) and print a summary."""
    started = time.monotonic()
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        exported, failed = export(client, chat_ids, out)
    partial.replace(output)
    print(
        f"exported {exported} dialogs, {failed} failed, to {output.resolve()} "
        f"in {time.monotonic() - started:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Export chats ``--first``..``--last`` to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--first", type=int, default=1, help="first chat id (default 1)")
    parser.add_argument("--last", type=int, default=250, help="last chat id (default 250)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("dialogs-export.jsonl"),
        help="the JSON lines file to write (default: dialogs-export.jsonl in the current folder)",
    )
    args = parser.parse_args(argv)
    chat_ids = range(args.first, args.last + 1)
    output: Path = args.output
    webhook_url = os.environ.get("BITRIX24_WEBHOOK_URL")
    if webhook_url:
        with SyncOpenLinesClient(WebhookAuth(webhook_url)) as client:
            run(client, chat_ids, output)
        return 0
    print("BITRIX24_WEBHOOK_URL is not set: exporting from a fake portal")
    with (
        ThreadedFakePortal(dialogs=240, forbidden=[7, 70, 170]) as portal,
        SyncOpenLinesClient(WebhookAuth(portal.webhook_url)) as client,
    ):
        run(client, chat_ids, output)
        print(f"the portal answered {portal.stats.by_method['batch']} batch calls")
    with output.open(encoding="utf-8") as lines:
        first = json.loads(next(lines))
    shown = first["dialog"]["name"] if first["ok"] else first["error"]["code"]
    print(f"first line: chat {first['chat_id']}: {shown!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
