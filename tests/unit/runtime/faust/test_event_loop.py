"""The Faust runtime's event loop: uvloop by default, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from pipeline.runtime.faust.app import use_event_loop


@pytest.fixture(autouse=True)
def default_policy():
    yield
    asyncio.set_event_loop_policy(None)


@pytest.mark.parametrize(("name", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_the_loop_the_worker_and_its_consumer_thread_create(name, loop_type):
    use_event_loop(name)
    loop = asyncio.new_event_loop()  # what Faust's worker and consumer thread do
    try:
        if loop_type is None:
            assert not isinstance(loop, uvloop.Loop)
        else:
            assert isinstance(loop, loop_type)
    finally:
        loop.close()
