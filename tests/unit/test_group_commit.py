"""GroupCommitter: lone writes go alone, queued writes share a statement, failures stay private."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.store.group_commit import GroupCommitter


class Recorder:
    """Fake statements: records what went together; `bad` payloads make a statement fail."""

    def __init__(self, bad: frozenset[str] = frozenset()) -> None:
        self.statements: list[list[str]] = []
        self.bad = bad

    async def one(self, payload: str) -> str:
        await asyncio.sleep(0.01)
        self.statements.append([payload])
        if payload in self.bad:
            raise ValueError(f"refused {payload}")
        return payload.upper()

    async def many(self, payloads: list[str]) -> list[str]:
        await asyncio.sleep(0.01)
        if self.bad & set(payloads):
            raise ValueError("the whole statement is rolled back")
        self.statements.append(list(payloads))
        return [p.upper() for p in payloads]


async def test_a_lone_write_goes_at_once_and_alone() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=2)
    assert await group.submit("k1", "a") == "A"
    assert rec.statements == [["a"]]
    assert (group.statements, group.writes) == (1, 1)


async def submit_after_first(group: GroupCommitter[str, str], payloads: list[tuple[str, str]]):
    """The first write starts alone; the rest arrive while its statement is in flight."""
    first = asyncio.ensure_future(group.submit(*payloads[0]))
    await asyncio.sleep(0.001)
    rest = [asyncio.ensure_future(group.submit(k, p)) for k, p in payloads[1:]]
    return await asyncio.gather(first, *rest, return_exceptions=True)


async def test_writes_queued_behind_busy_slots_share_one_statement() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=1)
    results = await submit_after_first(group, [(f"k{i}", f"w{i}") for i in range(5)])
    assert results == ["W0", "W1", "W2", "W3", "W4"]
    assert rec.statements == [["w0"], ["w1", "w2", "w3", "w4"]]
    assert (group.statements, group.writes) == (2, 5)


async def test_writes_submitted_together_leave_together() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=1)
    await asyncio.gather(*(group.submit(f"k{i}", f"w{i}") for i in range(3)))
    assert rec.statements == [["w0", "w1", "w2"]]


async def test_two_writes_of_one_key_never_share_a_statement() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=1)
    await asyncio.gather(*(group.submit(k, p) for k, p in [("x", "a"), ("y", "b"), ("x", "c")]))
    assert rec.statements == [["a", "b"], ["c"]]


async def test_a_failing_write_fails_alone_and_its_neighbours_commit() -> None:
    rec = Recorder(bad=frozenset({"w2"}))
    group = GroupCommitter(rec.one, rec.many, slots=1)
    results = await submit_after_first(group, [(f"k{i}", f"w{i}") for i in range(4)])
    assert results[0] == "W0" and results[1] == "W1" and results[3] == "W3"
    assert isinstance(results[2], ValueError) and "refused w2" in str(results[2])
    # the grouped statement failed as a whole, then each of its writes went alone
    assert rec.statements == [["w0"], ["w1"], ["w2"], ["w3"]]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=1)
    first = asyncio.ensure_future(group.submit("k0", "w0"))
    await asyncio.sleep(0.001)
    second = asyncio.ensure_future(group.submit("k1", "w1"))
    third = asyncio.ensure_future(group.submit("k2", "w2"))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == "W0" and await third == "W2"
    with pytest.raises(asyncio.CancelledError):
        await second
    await group.drain()
    assert ["w1", "w2"] in rec.statements  # the write itself still went (it was already queued)


async def test_drain_waits_for_queued_writes() -> None:
    rec = Recorder()
    group = GroupCommitter(rec.one, rec.many, slots=1)
    futures = [asyncio.ensure_future(group.submit(f"k{i}", f"w{i}")) for i in range(3)]
    await asyncio.sleep(0)
    await group.drain()
    assert all(f.done() for f in futures)
    assert sum(len(s) for s in rec.statements) == 3
