"""The worker's bulk consumption path (``streams.batching``) without a broker.

``next_batch`` against real asyncio queues; the fast hand-off against a real ``mode``
service and real coroutines that finish at once, suspend, fail or are interrupted;
the fetch-wait override on a real Faust app's consumer. The path end to end, against
the broker, is in ``tests/integration/test_integration_worker.py`` (both
``RISKGRAPH_CONSUME`` values).
"""

from __future__ import annotations

import asyncio
import warnings

import faust
import pytest
from mode import Service

from pathlib import Path

from riskgraph.streams.batching import CHECKED_VERSIONS, check_private_members
from riskgraph.streams.batching import BatchTopic, _fast_wait_first, _Resumed, install_fast_handoff, next_batch, set_fetch_max_wait


def run(coro):
    return asyncio.run(coro)


# -- next_batch -------------------------------------------------------------------------------


def test_next_batch_takes_at_most_max_and_keeps_order() -> None:
    async def main():
        q: asyncio.Queue = asyncio.Queue()
        for i in range(7):
            q.put_nowait(i)
        return [await next_batch(q, 3, within=0.01) for _ in range(3)]

    assert run(main()) == [[0, 1, 2], [3, 4, 5], [6]]


def test_next_batch_waits_within_the_window_for_late_items() -> None:
    async def main():
        q: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, q.put_nowait, "a")
        loop.call_later(0.03, q.put_nowait, "b")  # inside the window opened by "a"
        loop.call_later(0.5, q.put_nowait, "late")  # after it
        first = await next_batch(q, 10, within=0.15)
        second = await next_batch(q, 10, within=0.01)
        return first, second

    assert run(main()) == (["a", "b"], ["late"])


def test_next_batch_rejects_an_empty_batch_size() -> None:
    with pytest.raises(ValueError, match="max_"):
        run(next_batch(asyncio.Queue(), 0, within=0.01))


def test_next_batch_cancelled_while_idle_takes_nothing() -> None:
    async def main():
        q: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(next_batch(q, 5, within=0.01))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        q.put_nowait("x")
        return await next_batch(q, 5, within=0.01)

    assert run(main()) == ["x"]


# -- the fast hand-off ------------------------------------------------------------------------


class Consumerish(Service):
    """A real mode service with the one attribute the hand-off reads, like Faust's consumer."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def test_resumed_continues_a_coroutine_after_its_first_suspension() -> None:
    async def steps(ev: asyncio.Event) -> str:
        await ev.wait()
        return "done"

    async def main():
        ev = asyncio.Event()
        coro = steps(ev)
        first = coro.send(None)
        asyncio.get_running_loop().call_later(0.01, ev.set)
        return await _Resumed(coro, first)

    assert run(main()) == "done"


def test_resumed_passes_errors_and_cancellation_through() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    seen: list[str] = []

    async def blocks() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def main():
        c = fails()
        with pytest.raises(KeyError):
            await _Resumed(c, c.send(None))
        c2 = blocks()
        task = asyncio.ensure_future(_Resumed(c2, c2.send(None)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert seen == ["cancelled inside"]


def test_fast_wait_first_runs_a_callback_that_does_not_suspend_directly() -> None:
    async def callback() -> int:
        return 42

    async def main():
        svc = Consumerish()
        cb = callback()
        res = await _fast_wait_first(svc, cb, svc.suspend_flow.wait())
        return res.done == [cb], res.results, res.stopped

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unused suspend_flow.wait() must be closed, not leaked
        assert run(main()) == (True, [42], False)


def test_fast_wait_first_falls_back_when_the_callback_suspends() -> None:
    async def main():
        svc = Consumerish()
        ready = asyncio.Event()

        async def callback() -> str:
            await ready.wait()  # e.g. a full channel queue
            return "delivered"

        asyncio.get_running_loop().call_later(0.01, ready.set)
        res = await _fast_wait_first(svc, callback(), svc.suspend_flow.wait())
        return res.results

    assert run(main()) == ["delivered"]


def test_a_rebalance_still_interrupts_a_blocked_callback() -> None:
    async def main():
        svc = Consumerish()
        state = {"finished": False}

        async def callback() -> None:
            await asyncio.sleep(10)
            state["finished"] = True

        asyncio.get_running_loop().call_later(0.01, svc.suspend_flow.set)
        res = await _fast_wait_first(svc, callback(), svc.suspend_flow.wait())
        return len(res.done), state["finished"]

    assert run(main()) == (1, False)  # the suspend_flow wait won; the callback was cancelled


def test_fast_wait_first_leaves_other_calls_to_mode() -> None:
    async def main():
        svc = Consumerish()
        ev = asyncio.Event()
        ev.set()
        res = await _fast_wait_first(svc, ev, timeout=1.0)  # an Event, not a coroutine
        return res.done == [ev]

    assert run(main())


def test_a_callback_error_propagates_from_the_fast_path() -> None:
    async def callback() -> None:
        raise RuntimeError("decode failed")

    async def main():
        svc = Consumerish()
        await _fast_wait_first(svc, callback(), svc.suspend_flow.wait())

    with pytest.raises(RuntimeError, match="decode failed"):
        run(main())


# -- wiring on a real Faust app --------------------------------------------------------------


REPO = Path(__file__).resolve().parents[2]


def _app() -> faust.App:
    return faust.App("batching-test", broker="kafka://127.0.0.1:1", web_enabled=False, store="memory://")


def test_install_and_fetch_wait_on_a_faust_consumer() -> None:
    async def main():
        app = _app()
        consumer = app.consumer
        install_fast_handoff(consumer)
        set_fetch_max_wait(consumer, 20)
        kafka_consumer = consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer.wait_first.__func__ is _fast_wait_first, kafka_consumer._fetch_max_wait_ms
        finally:
            await kafka_consumer._client.close()

    assert run(main()) == (True, 20)


def test_wiring_refuses_what_is_not_a_faust_consumer() -> None:
    with pytest.raises(TypeError):
        install_fast_handoff(object())
    with pytest.raises(TypeError):
        set_fetch_max_wait(object(), 20)
    with pytest.raises(ValueError):
        set_fetch_max_wait(object(), -1)


def test_batch_topic_hands_over_the_raw_message() -> None:
    async def main():
        topic = BatchTopic(_app(), topics=["t"])
        sentinel = object()
        return await topic.decode(sentinel) is sentinel

    assert run(main())


def test_batch_topic_put_waits_for_room_instead_of_raising() -> None:
    """The conductor's path for a full channel queue: it must wait (back-pressure), not raise
    'Cannot put on Topic channel before aiter' and drop the record."""
    async def main():
        app = _app()
        app.flow_control.resume()  # as after a partition assignment
        topic = BatchTopic(app, topics=["t"], maxsize=2)
        queue = topic.queue
        queue.put_nowait("m0")
        queue.put_nowait("m1")
        assert queue.full()
        put = asyncio.ensure_future(topic.put("m2"))
        await asyncio.sleep(0.05)
        blocked = not put.done()
        got = [queue.get_nowait()]  # the engine takes one: room for the waiting record
        await asyncio.wait_for(put, 1.0)
        got += [queue.get_nowait(), queue.get_nowait()]
        return blocked, got

    assert run(main()) == (True, ["m0", "m1", "m2"])


def test_the_private_members_relied_on_are_there_in_the_checked_versions() -> None:
    """Fails loudly on a Faust, mode or aiokafka upgrade: re-check streams/batching.py against the
    new version (PRIVATE_MEMBERS says what each use is for), then update CHECKED_VERSIONS."""
    assert check_private_members() == []
    pinned = dict(line.strip().split("==") for line in open(REPO / "constraints.txt") if "==" in line)
    for dist, version in CHECKED_VERSIONS.items():
        assert pinned.get(dist) == version, f"constraints.txt pins {dist} {pinned.get(dist)}, checked {version}"
