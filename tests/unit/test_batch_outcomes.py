"""How the batch engine builds each outcome (unit level, a scripted ``send_batch``).

A command's result is structured and its outcome filled without the frozen class's
guarded stores (``bitrix_openlines._fill``): the outcome must be exactly the one calling
the class gives. An outcome class whose ``__init__`` does more (a validator, a field of
its own) is built by calling it. Results, errors, malformed results and missing commands
of one answer each get their own outcome.
"""

from __future__ import annotations

import copy
import pickle
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from _unit_helpers import dialog_example, fake_budget

from bitrix_openlines import Dialog, DialogGet, RetryPolicy
from bitrix_openlines.batch import BatchJob, BatchOutcome, DialogOutcome
from bitrix_openlines.errors import AccessError, DecodeError
from bitrix_openlines.methods import Method
from bitrix_openlines.types.common import TimeInfo
from bitrix_openlines.wire import WireParams

TIME = {"start": 1795806457, "finish": 1795806457.5, "duration": 0.5, "processing": 0}


@attrs.frozen
class _Answer:
    envelope: dict[str, Any]
    time: TimeInfo | None = None


class _Portal:
    """Answers each ``batch`` with a result for every command whose chat id is not in
    ``errors``/``malformed``/``missing``; those get an error, a result that does not fit
    ``Dialog``, or nothing (the first ``missing_times`` times they are sent)."""

    def __init__(self, dialog: dict[str, Any], *, missing_times: int = 1) -> None:
        self.dialog = dialog
        self.errors: set[int] = set()
        self.malformed: set[int] = set()
        self.missing: set[int] = set()
        self.stringy: set[int] = set()  # the id as digits in a string: the slow path's
        self.missing_times = missing_times
        self.sent: list[list[str]] = []
        self.time_block: Any = TIME  # each command's block (copied), as the portal sends it

    async def __call__(self, params: WireParams, *, idempotent: bool, commands: int) -> _Answer:
        cmd = params["cmd"]
        assert isinstance(cmd, dict)
        self.sent.append([str(c) for c in cmd.values()])
        result: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, command in cmd.items():
            chat = int(str(command).rpartition("=")[2])
            if (
                chat in self.missing
                and sum(str(command) in s for s in self.sent) <= self.missing_times
            ):
                continue
            times[key] = copy.deepcopy(self.time_block)
            if chat in self.errors:
                errors[key] = {"error": "ACCESS_ERROR", "error_description": "no"}
            elif chat in self.malformed:
                result[key] = {**copy.deepcopy(self.dialog), "id": "not a number"}
            elif chat in self.stringy:
                result[key] = {**copy.deepcopy(self.dialog), "id": str(chat), "dialog_id": ""}
            else:
                result[key] = {
                    **copy.deepcopy(self.dialog),
                    "id": chat,
                    "dialog_id": f"chat{chat}",
                }
        envelope = {
            "result": {"result": result, "result_error": errors or [], "result_time": times},
            "time": dict(TIME),
        }
        return _Answer(envelope, TimeInfo.from_wire(TIME))


def _job(portal: _Portal, queries: list[Any], **kwargs: Any) -> BatchJob:
    return BatchJob(
        portal,
        queries,
        retry=RetryPolicy.no_wait(),
        budget=fake_budget(),
        to_request=DialogGet.from_query,
        **kwargs,
    )


@pytest.fixture
def dialog(docs_examples: Path) -> dict[str, Any]:
    return copy.deepcopy(dialog_example(docs_examples)["result"])


async def test_a_result_s_outcome_is_exactly_the_constructed_one(dialog: dict[str, Any]) -> None:
    portal = _Portal(dialog)
    (outcome,) = [o async for o in _job(portal, [{"chat_id": 5}], outcome_type=DialogOutcome)]
    assert type(outcome) is DialogOutcome
    assert isinstance(outcome.dialog, Dialog)
    expected = DialogOutcome(
        index=0,
        query={"chat_id": 5},
        request=DialogGet(chat_id=5),
        result=outcome.dialog,
        error=None,
        time=TimeInfo.from_wire(TIME),
    )
    assert outcome == expected
    assert repr(outcome) == repr(expected)
    assert outcome.ok
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    assert attrs.evolve(outcome, index=3).index == 3
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        outcome.index = 1  # type: ignore[misc]


def _slot(outcome: BatchOutcome[Any]) -> Any:
    """What the outcome holds for its time, without reading it (no property involved)."""
    slot: Any = vars(BatchOutcome)["_time"]  # the slot's descriptor
    return slot.__get__(outcome)


async def test_a_command_s_time_block_is_read_into_a_time_info_on_first_access(
    dialog: dict[str, Any],
) -> None:
    portal = _Portal(dialog)
    queries = [{"chat_id": 5}, {"chat_id": 5}, {"chat_id": 6}]
    outcomes = [o async for o in _job(portal, queries, outcome_type=DialogOutcome)]
    # Kept raw (no TimeInfo per dialog of a job that never reads it)...
    assert all(type(_slot(o)) is dict for o in outcomes)
    # ...yet equal to, and hashed as, an outcome given the TimeInfo it reads into.
    eager = attrs.evolve(outcomes[2], time=TimeInfo.from_wire(TIME))
    assert type(_slot(eager)) is TimeInfo
    assert outcomes[2] == eager
    assert hash(attrs.evolve(outcomes[2], query=6)) == hash(attrs.evolve(eager, query=6))
    info = outcomes[2].time
    assert info == TimeInfo.from_wire(TIME)
    assert outcomes[2].time is info  # read once
    assert _slot(outcomes[2]) is info
    # The duplicate (query 1 is query 0's) has its own copy of the outcome: read alike.
    assert outcomes[1].time == outcomes[0].time == info
    # Copied and pickled before it is read, it reads the same after.
    (fresh,) = [o async for o in _job(portal, [{"chat_id": 7}], outcome_type=DialogOutcome)]
    assert pickle.loads(pickle.dumps(fresh)).time == copy.deepcopy(fresh).time == info


@pytest.mark.parametrize(
    "block",
    [{**TIME, "start": [1]}, {**TIME, "date_start": {"a": 1}}, ["start", 1], "1795806457"],
    ids=["a list for a number", "a map for a date", "a list", "a text"],
)
async def test_a_malformed_time_block_gives_no_time_and_costs_nothing_else(
    dialog: dict[str, Any], block: Any
) -> None:
    portal = _Portal(dialog)
    portal.time_block = block
    outcomes: list[Any] = [
        o async for o in _job(portal, [{"chat_id": 5}, {"chat_id": 6}], outcome_type=DialogOutcome)
    ]
    assert [o.dialog.chat_id if o.dialog else None for o in outcomes] == [5, 6]
    assert [o.time for o in outcomes] == [None, None]
    assert [o.error for o in outcomes] == [None, None]


async def test_a_time_block_with_keys_a_time_info_does_not_have_is_read_at_once(
    dialog: dict[str, Any],
) -> None:
    # What arrives from the network is kept only as far as it is needed: a block with
    # more keys than a TimeInfo has fields is read when it arrives, its other keys let go.
    portal = _Portal(dialog)
    portal.time_block = {**TIME, **{f"junk{i}": "x" * 100 for i in range(20)}}
    (outcome,) = [o async for o in _job(portal, [{"chat_id": 5}], outcome_type=DialogOutcome)]
    assert type(_slot(outcome)) is TimeInfo
    assert outcome.time == TimeInfo.from_wire(TIME)


async def test_a_metered_command_s_block_is_read_at_once_for_the_budget(
    dialog: dict[str, Any],
) -> None:
    # Where the portal bills commands per method (batch's own block reports no operating
    # time), a command's operating figures count for its method: read when it arrives.
    clock_now = 1795806457.0
    portal = _Portal(dialog)
    portal.time_block = {**TIME, "operating": 479.5, "operating_reset_at": clock_now + 60}
    budget = fake_budget()
    job = BatchJob(
        portal,
        [{"chat_id": 5}],
        retry=RetryPolicy.no_wait(),
        budget=budget,
        to_request=DialogGet.from_query,
        outcome_type=DialogOutcome,
    )
    (outcome,) = [o async for o in job]
    assert type(_slot(outcome)) is TimeInfo
    assert outcome.time is not None
    assert outcome.time.operating == 479.5
    # 479.5 s of the 480 s budget: the method is paused until its reset.
    assert budget.pause_remaining("imopenlines.dialog.get") > 0


@attrs.frozen
class _Counted(BatchOutcome[Dialog]):
    """An outcome class whose __init__ does more than store (a post-init): called."""

    def __attrs_post_init__(self) -> None:
        _BUILT.append(self.index)
        # Its init is given the TimeInfo, never a raw block.
        assert type(_slot(self)) is TimeInfo


@attrs.frozen
class _Tagged(BatchOutcome[Dialog]):
    """An outcome class with a field of its own: called, so the field gets its default."""

    tag: str = "job"


_BUILT: list[int] = []


@pytest.mark.parametrize("outcome_type", [_Counted, _Tagged])
async def test_an_outcome_class_that_checks_is_built_by_calling_it(
    dialog: dict[str, Any], outcome_type: type[BatchOutcome[Any]]
) -> None:
    _BUILT.clear()
    portal = _Portal(dialog)
    outcomes: list[Any] = [
        o
        async for o in _job(portal, [{"chat_id": i} for i in (1, 2, 3)], outcome_type=outcome_type)
    ]
    assert [type(o) for o in outcomes] == [outcome_type] * 3
    assert [o.result.chat_id for o in outcomes if o.result is not None] == [1, 2, 3]
    if outcome_type is _Counted:
        assert _BUILT == [0, 1, 2]
    else:
        assert [typing.cast(_Tagged, o).tag for o in outcomes] == ["job"] * 3


async def test_each_command_of_one_answer_gets_its_own_outcome(dialog: dict[str, Any]) -> None:
    # A result, an error, a result that does not fit Dialog and a command the answer left
    # out (sent again, then answered), in one batch: nothing lost, swapped or hidden.
    portal = _Portal(dialog)
    portal.errors = {2}
    portal.malformed = {3}
    portal.missing = {4}
    outcomes: list[Any] = [
        o
        async for o in _job(
            portal, [{"chat_id": i} for i in (1, 2, 3, 4, 5)], outcome_type=DialogOutcome
        )
    ]
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert [o.dialog.chat_id if o.dialog else None for o in outcomes] == [1, None, None, 4, 5]
    assert isinstance(outcomes[1].error, AccessError)
    assert isinstance(outcomes[2].error, DecodeError)
    assert "does not fit Dialog" in str(outcomes[2].error)
    assert len(portal.sent) == 2
    assert portal.sent[1] == ["imopenlines.dialog.get?CHAT_ID=4"]


async def test_a_command_missing_every_time_fails_after_the_policy_s_attempts(
    dialog: dict[str, Any],
) -> None:
    portal = _Portal(dialog, missing_times=100)
    portal.missing = {7}
    (outcome,) = [o async for o in _job(portal, [{"chat_id": 7}], outcome_type=DialogOutcome)]
    assert isinstance(outcome.error, DecodeError)
    assert "missing from the batch answer" in str(outcome.error)
    assert len(portal.sent) == RetryPolicy.no_wait().max_attempts


async def test_a_result_the_fast_path_refuses_is_structured_by_the_detailed_one(
    dialog: dict[str, Any],
) -> None:
    # "id": "6" (digits in a string) does not pass the fast function's exact-type checks;
    # the detailed path reads it, as a single call would.
    portal = _Portal(dialog)
    portal.stringy = {6}
    outcomes: list[Any] = [
        o async for o in _job(portal, [{"chat_id": 5}, {"chat_id": 6}], outcome_type=DialogOutcome)
    ]
    assert [o.dialog.chat_id for o in outcomes] == [5, 6]
    assert outcomes[1].dialog.dialog_id == "chat6"
    assert outcomes[1].dialog == outcomes[1].dialog.__class__(
        **attrs.asdict(outcomes[1].dialog, recurse=False)
    )


@attrs.frozen(kw_only=True)
class _Count(Method[int]):
    """A method whose result type (int) has no fast function."""

    __api_method__ = "test.count"
    __returns__ = int

    id: int


async def test_a_result_type_without_a_fast_function_goes_through_structure_result() -> None:
    async def send_batch(params: WireParams, *, idempotent: bool, commands: int) -> _Answer:
        cmd = params["cmd"]
        assert isinstance(cmd, dict)
        result = {key: 7 if key == "c0" else "x" for key in cmd}
        return _Answer({"result": {"result": result, "result_error": [], "result_time": {}}})

    job = BatchJob(
        send_batch,
        [_Count(id=1), _Count(id=2)],
        retry=RetryPolicy.no_wait(),
        budget=fake_budget(),
        to_request=lambda query: query,
    )
    first, second = [o async for o in job]
    assert first.result == 7
    assert isinstance(second.error, DecodeError)
    assert "does not fit int" in str(second.error)
