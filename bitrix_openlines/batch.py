"""The batch engine: many method calls -> ``batch`` requests of <= 50 -> one outcome each.

:class:`BatchJob` runs a stream of requests through a ``send_batch`` callable (the
session's, in a client) and reads the answers with :mod:`~bitrix_openlines.wire`:

- requests are read lazily from any iterable or async iterable; at most ``window``
  of them are held at a time (read but not yet handed out), so memory does not grow
  with the input;
- each request is encoded once (:func:`~bitrix_openlines.wire.batch_command`): the
  command string is the dedup key and what is sent; identical requests are sent once
  and share their outcome;
- unique requests are packed into ``batch`` calls of at most 50 commands, and up to
  ``concurrency`` batches are in flight, each waiting for its slot of the portal's
  bucket (a batch costs one slot);
- a command that failed for a transient reason (``OPERATION_TIME_LIMIT``,
  ``QUERY_LIMIT_EXCEEDED``, ``INTERNAL_SERVER_ERROR`` inside the batch, or missing from the
  answer) goes back in the queue; a whole ``batch`` request that fails (503, a dropped
  connection, a 5xx) is retried whole by the client's retry policy; after the policy's
  last attempt the remaining commands become failed outcomes;
- a request with a value the portal would rewrite inside a ``batch`` (a reference like
  ``$result[c0][id]``, see :func:`holds_batch_reference`) is sent alone, through the
  ``send_single`` callable, so it means the same as in a single call;
- every request ends with exactly one outcome: nothing is lost, duplicated or hidden.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs

from bitrix_openlines._convert import fast_structurer, structure_result
from bitrix_openlines._fill import filler, new
from bitrix_openlines.errors import (
    DecodeError,
    InvalidQueryError,
    OpenLinesError,
    OperationTimeLimitError,
    RateLimitError,
    ServerError,
)
from bitrix_openlines.methods.base import Method
from bitrix_openlines.ratelimit import OperatingBudget
from bitrix_openlines.retry import RetryPolicy
from bitrix_openlines.types.common import TimeInfo
from bitrix_openlines.types.dialog import Dialog
from bitrix_openlines.wire import (
    MAX_BATCH_COMMANDS,
    CommandResult,
    WireParams,
    WireValue,
    batch_command,
    reset_at_of,
    split_batch_result,
    take_command,
)

__all__ = [
    "BatchJob",
    "BatchOutcome",
    "DialogOutcome",
    "SendBatch",
    "SendSingle",
    "holds_batch_reference",
]

T = TypeVar("T")

ProgressCallback = Callable[[int, int, int | None], Awaitable[None] | None]


class _Answer(Protocol):
    @property
    def envelope(self) -> dict[str, Any]: ...

    @property
    def time(self) -> TimeInfo | None: ...


class _SingleAnswer(Protocol):
    @property
    def envelope(self) -> dict[str, Any]: ...

    @property
    def time(self) -> TimeInfo | None: ...


class SendSingle(Protocol):
    """Send one call of ``method`` alone (``params`` in wire form); return its decoded answer.

    It raises the call's final error, after the retry policy's attempts.
    """

    def __call__(
        self, method: str, params: WireParams, *, idempotent: bool
    ) -> Awaitable[_SingleAnswer]: ...


class SendBatch(Protocol):
    """Send one ``batch`` request (``params`` in wire form) and return its decoded answer.

    It raises the request's final error, after the retry policy's attempts.
    """

    def __call__(
        self, params: WireParams, *, idempotent: bool, commands: int
    ) -> Awaitable[_Answer]: ...


def _time_info(value: Any) -> TimeInfo | None:
    """A ``time`` as its ``TimeInfo``: a raw block read, a ``TimeInfo`` or ``None`` kept."""
    return TimeInfo.from_wire(value) if type(value) is dict else value


@attrs.frozen(slots=True)
class BatchOutcome(Generic[T]):
    """The outcome of one request of a batch job: a result or an error, never both.

    Attributes:
        index: The request's position in the input (0-based).
        query: The input item as given.
        request: The method object (``None`` when the query was malformed).
        result: The structured result, when the call succeeded.
        error: The error, when it failed.
        time: The command's ``time`` block (from ``result_time``), when given.
    """

    index: int
    query: Any = attrs.field(repr=False)
    request: Method[T] | None
    result: T | None = attrs.field(default=None, repr=False)
    error: OpenLinesError | None = None
    # Given as time= (its alias). A job stores a command's raw block here, read into a
    # TimeInfo on first access: most jobs never read it, and a raw block of numbers and
    # texts is no object the garbage collector tracks (a TimeInfo per dialog was 1 to 2
    # µs of a job's CPU per dialog). Compared as the TimeInfo it reads into.
    _time: TimeInfo | None = attrs.field(default=None, repr=False, alias="time", eq=_time_info)

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.error is None

    @property
    def time(self) -> TimeInfo | None:
        """The command's ``time`` block (from ``result_time``), when given."""
        block = self._time
        info = _time_info(block)
        if info is not block:  # a raw block, read once
            object.__setattr__(self, "_time", info)
        return info


_OUTCOME_FIELDS: Final = frozenset(attrs.fields_dict(BatchOutcome))


@attrs.frozen(slots=True)
class DialogOutcome(BatchOutcome["Dialog"]):
    """The outcome of one dialog query: ``.dialog`` or ``.error``, and ``.ok``."""

    @property
    def dialog(self) -> Dialog | None:
        """The dialog, when the query succeeded."""
        return self.result


# -- batch references --------------------------------------------------------------------

# Inside a batch the portal rewrites parameter values that hold $result[...], $next[...],
# $total[...], $time[...] or $error[...] (any case; the name may run on, "$timestamp[1]"
# counts) and keys that hold "$" followed by [...] (PROTOCOL.md section 5: the regex
# /\$(result|next|total|time|error)([^\s]*)/i, and its path /\[([^\]]+)\]/). The value is
# read after parse_str, so no percent-encoding hides the pattern: there is no escape.
_REFERENCE_NAME: Final = re.compile(r"\$(?:result|next|total|time|error)", re.IGNORECASE)


def holds_batch_reference(params: WireParams) -> bool:
    """Whether the portal would rewrite a value or key of ``params`` inside a ``batch``.

    A superset of the portal's rule, in linear time: a string value with one of the
    reference names followed anywhere by ``[``, or a key with ``$``.
    """
    stack: list[WireValue] = [params]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "$" not in value:  # every reference starts with "$": most values have none
                continue
            found = _REFERENCE_NAME.search(value)
            if found is not None and value.find("[", found.end()) >= 0:
                return True
        elif isinstance(value, list):
            stack.extend(value)
        else:
            for key, item in value.items():
                if "$" in key:
                    return True
                stack.append(item)
    return False


# -- the job ---------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class _Pending:
    """One unique request in flight, and the inputs waiting on it.

    The first input that made it is kept in ``index`` and ``query``; identical later
    inputs, which share its outcome, in ``duplicates`` (no list for the common case).
    """

    request: Method[Any]
    method: str
    command: str
    index: int
    query: Any
    duplicates: list[tuple[int, Any]] | None = None
    attempts: int = 0
    started: float | None = None
    # The wire params of a request sent alone (one the portal would rewrite in a batch).
    alone: WireParams | None = None
    # Set when a send ends: the final outcome, or None to send the request again.
    outcome: BatchOutcome[Any] | None = None


@attrs.frozen(slots=True)
class _Bad:
    """A query that did not make a request (the error to report for it)."""

    error: InvalidQueryError


ToRequest = Callable[[Any], Method[Any]]


class BatchJob:
    """Run many requests through ``batch`` calls; iterate to get one outcome per request.

    Args:
        send_batch: Sends one ``batch`` request (the session's, in a client): the
            limiter, the credentials and the whole-request retries are behind it.
        send_single: Sends one call alone (the session's, in a client), for a request
            whose values the portal would rewrite inside a ``batch``
            (:func:`holds_batch_reference`). Without it such a request fails with
            ``InvalidQueryError``: it is never sent in a ``batch``.
        retry: The retry policy, for the per-command decisions (attempts, deadline).
        budget: The portal's operating-time budget, per method.
        on_rate_limited: Awaited when a command of a batch was refused by the portal's
            bucket (``QUERY_LIMIT_EXCEEDED`` inside a 200 answer), before its commands go
            again: the session's pacing learns of it and slows down.
        queries: Any iterable or async iterable of queries.
        to_request: Turns a query into a method object; ``TypeError``/``ValueError`` from it
            make that query a failed outcome.
        ordered: Hand out outcomes in input order (else as they complete).
        window: The most queries held at once (read but not yet handed out).
        concurrency: The most ``batch`` requests in flight.
        progress: Called with ``(done, failed, total)`` after each outcome; ``total`` is
            ``None`` when the input has no length.
        outcome_type: The outcome class to build (``DialogOutcome`` for dialogs).
        redact: Hides secrets in the texts of the answers that become errors (the auth's
            redactor, in a client): a command's ``result_error`` may echo the request.
    """

    def __init__(
        self,
        send_batch: SendBatch,
        queries: Iterable[Any] | AsyncIterable[Any],
        *,
        send_single: SendSingle | None = None,
        retry: RetryPolicy,
        budget: OperatingBudget,
        on_rate_limited: Callable[[], Awaitable[None]] | None = None,
        to_request: ToRequest,
        ordered: bool = True,
        window: int = 5000,
        concurrency: int = 4,
        progress: ProgressCallback | None = None,
        outcome_type: type[BatchOutcome[Any]] = BatchOutcome,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if isinstance(queries, str | bytes | Mapping) or not isinstance(
            queries, Iterable | AsyncIterable
        ):
            raise TypeError(
                "queries must be an iterable (list, generator, async iterable) of queries, "
                f"got {type(queries).__name__}"
            )
        _int_in("concurrency", concurrency, 1, 1000)
        _int_in("window", window, MAX_BATCH_COMMANDS, 10**9)
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable")
        self._send_batch = send_batch
        self._send_single = send_single
        self._policy = retry
        self._budget = budget
        self._on_rate_limited = on_rate_limited
        self._queries = queries
        self._to_request = to_request
        self._ordered = ordered
        self._window = window
        self._concurrency = concurrency
        self._progress = progress
        self._outcome = outcome_type
        self._fill = _filler_of(outcome_type)
        self._redact: Callable[[str], str] = redact or _keep
        self._total: int | None = len(queries) if hasattr(queries, "__len__") else None  # type: ignore[arg-type]
        self.done = 0
        self.failed = 0

    def __aiter__(self) -> AsyncIterator[BatchOutcome[Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[BatchOutcome[Any]]:
        # A sync input is read with next(), not through an async generator (one step less
        # per query); it still yields to the loop every 1,000 queries.
        queries = self._queries
        sync = None if isinstance(queries, AsyncIterable) else iter(queries)
        source = aiter(queries) if isinstance(queries, AsyncIterable) else None
        progress = self._progress
        exhausted = False
        next_index = 0
        next_emit = 0
        held = 0  # read and not yet handed out
        queue: deque[_Pending] = deque()
        alone: deque[_Pending] = deque()  # sent one by one, never in a batch
        by_key: dict[str, _Pending] = {}
        ready: dict[int, BatchOutcome[Any]] = {}
        ready_fifo: deque[BatchOutcome[Any]] = deque()
        in_flight: set[asyncio.Task[list[_Pending]]] = set()

        ordered = self._ordered

        def finish(outcome: BatchOutcome[Any]) -> None:
            if ordered:
                ready[outcome.index] = outcome
            else:
                ready_fifo.append(outcome)

        try:
            while True:
                # 1. Read queries while the window has room.
                while not exhausted and held < self._window:
                    if sync is not None:
                        try:
                            query = next(sync)
                        except StopIteration:
                            exhausted = True
                            break
                        if next_index % 1000 == 999:
                            # A long sync input must not starve the loop (in-flight
                            # batches, timeouts).
                            await asyncio.sleep(0)
                    else:
                        assert source is not None
                        try:
                            query = await anext(source)
                        except StopAsyncIteration:
                            exhausted = True
                            break
                    index = next_index
                    next_index += 1
                    held += 1
                    made = self._make_request(query, index)
                    if isinstance(made, _Bad):
                        finish(
                            self._outcome(index=index, query=query, request=None, error=made.error)
                        )
                        continue
                    pending = by_key.get(made.command)
                    if pending is None:
                        by_key[made.command] = made
                        (queue if made.alone is None else alone).append(made)
                    elif pending.duplicates is None:
                        pending.duplicates = [(index, query)]
                    else:
                        pending.duplicates.append((index, query))

                # 2. Send batches. Step 1 stopped because the input ended or the window is
                # full, so nothing more can join a partial batch now: send it too. A
                # request sent alone takes a place of a batch.
                while alone and len(in_flight) < self._concurrency:
                    in_flight.add(asyncio.ensure_future(self._send_alone(alone.popleft())))
                while queue and len(in_flight) < self._concurrency:
                    size = min(MAX_BATCH_COMMANDS, len(queue))
                    chunk = [queue.popleft() for _ in range(size)]
                    in_flight.add(asyncio.ensure_future(self._send(chunk)))

                # 3. Hand out what is ready.
                while True:
                    if self._ordered:
                        outcome = ready.pop(next_emit, None)
                        if outcome is None:
                            break
                        next_emit += 1
                    else:
                        if not ready_fifo:
                            break
                        outcome = ready_fifo.popleft()
                    held -= 1
                    self.done += 1
                    if outcome.error is not None:
                        self.failed += 1
                    if progress is not None:
                        reported = progress(self.done, self.failed, self._total)
                        if inspect.isawaitable(reported):
                            await reported
                    yield outcome

                if not in_flight:
                    if exhausted and not queue and not alone and not ready and not ready_fifo:
                        return
                    # Everything held is handed out or queued: read more, or send the rest.
                    continue

                # 4. Wait for a batch to end; spread its outcomes, re-queue the transient.
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    in_flight.discard(task)
                    for pending in task.result():
                        outcome = pending.outcome
                        if outcome is None:
                            (queue if pending.alone is None else alone).appendleft(pending)
                            continue
                        del by_key[pending.command]
                        finish(outcome)
                        if pending.duplicates is not None:
                            for index, query in pending.duplicates:
                                # A duplicate shares the outcome of the one request sent.
                                finish(attrs.evolve(outcome, index=index, query=query))
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _make_request(self, query: Any, index: int) -> _Pending | _Bad:
        # Encoded once, here: the command string is the dedup key and what is sent. A
        # value that cannot be sent (a lone surrogate, a huge number) fails here, for
        # this query alone.
        try:
            request = self._to_request(query)
            method = type(request).__api_method__
            plain = request._plain_command()  # the common requests, already encoded
            if plain is not None:
                return _Pending(request, method, plain, index, query)
            params = request.to_params()
            command = batch_command(method, params)
        except (TypeError, ValueError) as exc:
            error = InvalidQueryError(f"invalid query: {exc}")
            error.__cause__ = exc
            return _Bad(error)
        if not holds_batch_reference(params):
            return _Pending(request, method, command, index, query)
        if self._send_single is None:
            return _Bad(
                InvalidQueryError(
                    "invalid query: a parameter holds a batch reference ('$result[...]' "
                    "or the like) that the portal would replace inside a batch, and this "
                    "job cannot send calls alone"
                )
            )
        return _Pending(request, method, command, index, query, alone=params)

    async def _send(self, chunk: list[_Pending]) -> list[_Pending]:
        """Send one ``batch``; return its requests, each with its ``outcome`` set (or
        ``None``, to send it again)."""
        policy = self._policy
        budget = self._budget
        now = policy.clock()
        for pending in chunk:
            if pending.started is None:
                pending.started = now
        # Usually one method and one request class in a chunk: asked once each.
        pause = max(budget.pause_remaining(m) for m in {p.method for p in chunk})
        settled: list[_Pending] = []
        if pause > 0:
            # A paused method: the commands whose deadline comes first fail now, rather
            # than wait past it; the others wait for the reset.
            waiting = []
            for pending in chunk:
                remaining = policy.remaining(pending.started or now)
                error = budget.past_deadline(pending.method, remaining, status=200)
                if error is None:
                    waiting.append(pending)
                else:
                    pending.outcome = self._failure(pending, error)
                    settled.append(pending)
            chunk = waiting
            if not chunk:
                return settled
            for method in {p.method for p in chunk}:
                await budget.wait(method)
        keys = _COMMAND_KEYS[: len(chunk)]
        cmd: dict[str, WireValue] = {
            key: pending.command for key, pending in zip(keys, chunk, strict=True)
        }
        idempotent = all(kind.__idempotent__ for kind in {type(p.request) for p in chunk})
        try:
            answer = await self._send_batch(
                {"cmd": cmd, "halt": "0"}, idempotent=idempotent, commands=len(chunk)
            )
            reset_at = reset_at_of(answer.envelope)
            parts = split_batch_result(answer.envelope.get("result"))
        except OpenLinesError as error:
            # The whole batch failed after the policy's last attempt: every command fails.
            for pending in chunk:
                pending.outcome = self._failure(pending, error)
            return settled + chunk
        results, errors, times = parts
        redact = self._redact
        rate_limited = False
        # The commands' time blocks count for their methods only where the portal bills
        # them so (not where they carry copies of batch's own total: that pauses batch).
        per_method = budget.bills_commands(answer.time)
        kind: Any = None  # the request class of the command before, and its structurer
        fast: Callable[[Any], Any] | None = None
        for key, pending in zip(keys, chunk, strict=True):
            if key in results and key not in errors:
                # The common case, a result. Its raw result is moved out of the answer
                # and freed once structured (fewer objects alive across garbage
                # collections). Its time block is kept raw, read on first access (see
                # BatchOutcome.time), unless the budget reads its operating figures now.
                block = times.pop(key, None)
                if type(block) is not dict:
                    block = None  # no time block (TimeInfo.from_wire reads none from it)
                elif len(block) > _TIME_KEYS or (
                    per_method and ("operating" in block or "operating_reset_at" in block)
                ):
                    # Read now: keys it does not know are not kept, and the budget reads
                    # the operating figures (observe passes over a block without them).
                    block = TimeInfo.from_wire(block)
                    if per_method:
                        budget.observe(pending.method, block)
                if type(pending.request) is not kind:
                    kind = type(pending.request)
                    fast = fast_structurer(kind.__returns__)
                pending.outcome = self._of_result(pending, results.pop(key), fast, block)
                settled.append(pending)
                continue
            command = take_command(key, pending.method, parts, reset_at=reset_at, redact=redact)
            if per_method:
                budget.observe(pending.method, command.time)
            pending.outcome = self._settle(pending, command, reset_at)
            settled.append(pending)
            # A bucket refusal (not a method's budget: that pauses the method instead).
            refusal = command.error
            if isinstance(refusal, RateLimitError) and not isinstance(
                refusal, OperationTimeLimitError
            ):
                rate_limited = rate_limited or self._policy.paces(refusal)
        if rate_limited and self._on_rate_limited is not None:
            # The portal's bucket refused commands: slow down before they go again.
            await self._on_rate_limited()
        return settled

    async def _send_alone(self, pending: _Pending) -> list[_Pending]:
        """Send one request as a single call; its outcome is final (the session retried)."""
        send = self._send_single
        params = pending.alone
        if send is None or params is None:  # _make_request sends nothing else here
            raise AssertionError("a request sent alone needs send_single and its params")
        kind = type(pending.request)
        try:
            answer = await send(pending.method, params, idempotent=kind.__idempotent__)
            result = structure_result(answer.envelope["result"], kind.__returns__, pending.method)
        except OpenLinesError as error:
            pending.outcome = self._failure(pending, error)
            return [pending]
        pending.outcome = self._outcome(
            index=pending.index,
            query=pending.query,
            request=pending.request,
            result=result,
            time=answer.time,
        )
        return [pending]

    def _of_result(
        self,
        pending: _Pending,
        raw: Any,
        fast: Callable[[Any], Any] | None,
        time_block: TimeInfo | dict[str, Any] | None,
    ) -> BatchOutcome[Any]:
        """The outcome of a command's result: structured, or the error saying why it does
        not fit. ``fast`` is the result class's fast function (``None``: it has none);
        ``time_block`` is the command's time block, raw or read."""
        try:
            if fast is None:
                raise TypeError  # no fast function: structure_result decides
            result = fast(raw)
        except Exception:
            # What the fast function refused, structure_result structures again through
            # the detailed path, or words the error: the same result or error as always.
            try:
                result = structure_result(
                    raw, type(pending.request).__returns__, pending.method, self._redact
                )
            except DecodeError as error:
                return self._failure(pending, error)
        fill = self._fill
        if fill is None:  # a class of the caller's, given a TimeInfo as its init takes
            return self._outcome(
                pending.index, pending.query, pending.request, result, None, _time_info(time_block)
            )
        # One per dialog of a job: filled without the frozen class's guarded stores (see
        # bitrix_openlines._fill), then exactly an instance of the outcome class.
        outcome: Any = new(fill)
        outcome.index = pending.index
        outcome.query = pending.query
        outcome.request = pending.request
        outcome.result = result
        outcome.error = None
        outcome._time = time_block  # a raw block is read by the time property
        outcome.__class__ = self._outcome
        made: BatchOutcome[Any] = outcome  # typed without a call (typing.cast is one)
        return made

    def _settle(
        self, pending: _Pending, command: CommandResult, reset_at: float | None
    ) -> BatchOutcome[Any] | None:
        """The outcome of a command that gave no result: an error, or absent from the
        answer (``None``: send it again)."""
        policy = self._policy
        method = pending.method
        error = command.error
        if error is None:  # take_command found neither a result nor an error
            error = DecodeError(
                "the command is missing from the batch answer", status=200, method=method
            )
        idempotent = type(pending.request).__idempotent__
        if isinstance(error, RateLimitError):
            transient = True  # the command did not run: safe to send again
        else:
            # A server error or a missing answer may mean it ran: only idempotent again.
            transient = idempotent and (isinstance(error, ServerError) or not command.found)
        if isinstance(error, OperationTimeLimitError):
            self._budget.pause(method, error.reset_at or reset_at)
        if transient:
            if not policy.paces(error):
                pending.attempts += 1
            remaining = policy.remaining(pending.started or policy.clock())
            # The wait before the next try: the method's pause, if it has one.
            pause = self._budget.pause_remaining(method)
            out_of_time = remaining is not None and (remaining <= 0 or pause > remaining)
            if pending.attempts < policy.max_attempts and not out_of_time:
                return None
        return self._failure(pending, error)

    def _failure(self, pending: _Pending, error: OpenLinesError) -> BatchOutcome[Any]:
        return self._outcome(
            index=pending.index, query=pending.query, request=pending.request, error=error
        )


#: The most keys a ``time`` block has (``TimeInfo``'s fields); a raw block with more is
#: read at once rather than kept.
_TIME_KEYS: Final = len(attrs.fields(TimeInfo))
#: The keys of a batch's commands, in order.
_COMMAND_KEYS: Final = tuple(f"c{i}" for i in range(MAX_BATCH_COMMANDS))
#: Each outcome class's filler (see _fill), or None for a class that cannot have one.
_FILLERS: dict[type, type | None] = {}


def _filler_of(outcome_type: type[BatchOutcome[Any]]) -> type | None:
    if outcome_type not in _FILLERS:
        made: type | None = None
        # _of_result fills exactly BatchOutcome's fields: a class with more is called.
        if set(attrs.fields_dict(outcome_type)) == _OUTCOME_FIELDS:
            try:
                made = filler(outcome_type)
            except TypeError:  # a user's class with checks of its own: called
                made = None
        _FILLERS[outcome_type] = made
    return _FILLERS[outcome_type]


def _keep(text: str) -> str:
    return text


def _int_in(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
