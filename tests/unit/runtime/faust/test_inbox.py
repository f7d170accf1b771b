"""The inbox between the Faust consumer's drain loop and the worker."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.runtime.faust.inbox import Inbox


def test_a_take_gets_every_waiting_fetch_up_to_the_batch_size_in_order():
    async def scenario() -> list[list[int]]:
        inbox = Inbox(limit=100)
        await inbox.put([1, 2])
        await inbox.put([3])
        await inbox.put([4, 5, 6])
        return [await inbox.take(5), await inbox.take(5)]

    assert asyncio.run(scenario()) == [[1, 2, 3, 4, 5], [6]]


def test_a_take_waits_for_records():
    async def scenario() -> list[int]:
        inbox = Inbox(limit=100)
        taking = asyncio.create_task(inbox.take(10))
        await asyncio.sleep(0.01)
        assert not taking.done()
        await inbox.put([7])
        return await asyncio.wait_for(taking, 1)

    assert asyncio.run(scenario()) == [7]


@pytest.mark.parametrize(("waiting", "put_waits"), [(3, False), (4, True), (6, True)])
def test_a_put_waits_only_while_the_limit_is_reached(waiting, put_waits):
    """A fetch is added whole even past the limit; the next one waits until the worker
    has taken records below it."""

    async def scenario() -> None:
        inbox = Inbox(limit=4)
        await inbox.put(list(range(waiting)))
        putting = asyncio.create_task(inbox.put([99]))
        await asyncio.sleep(0.01)
        assert putting.done() is not put_waits
        await inbox.take(waiting)
        await asyncio.wait_for(putting, 1)
        assert len(inbox) == 1

    asyncio.run(scenario())
