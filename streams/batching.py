"""Micro-batches straight from Faust's consumer: the ``events`` topic without per-record streams.

Faust delivers each Kafka record through its conductor into a channel queue, then a
``Stream`` iterates the queue one record at a time (an ``Event`` object, sensors, a
context variable, processors, an ack under a lock), and ``take_events`` buffers the
stream again behind two ``asyncio.Event``\\ s. Profiled on ``benchmarks/bench_kafka.py``,
that per-record path, not the scoring, set the worker's ceiling (the measurements are in
``benchmarks/README.md``).

:class:`BatchTopic` keeps everything Faust is good at -- consumer group membership,
fetching, back-pressure (the channel's ``FlowControlQueue`` pauses fetching of a
partition when it fills and clears on rebalance), offset commits from acknowledged
messages, the producer -- and replaces only the per-record consumption:

* ``decode`` hands the conductor the raw ``Message`` (the topic is bytes in, and the
  Engine decodes JSON in bulk);
* :func:`next_batch` drains the channel queue in bulk, up to ``max_`` messages or until
  ``within`` seconds after the first one (``take_events``'s contract);
* the caller acknowledges each message after its batch is committed
  (:func:`ack_all`), which is what Faust's commit of Kafka offsets follows.

Messages fetched before a rebalance (another consumer generation) are dropped
unacknowledged: Kafka delivers them again from the committed offset.

**Back-pressure.** The conductor puts a message into the channel queue without waiting
while the queue has room; when it is full (a scorer slower than the fetcher), it awaits
``Topic.put``, which Faust only allows on a topic that a ``Stream`` iterates and which
otherwise raises -- inside a task whose exception nobody reads, so the record was
dropped, later records of the partition moved the store's position past it, and a
restart skipped it. :meth:`BatchTopic.put` waits for room instead: the consumer's
hand-off blocks, the partition's fetching pauses, and nothing is dropped.

This module is the one place riskgraph uses members of Faust, mode and aiokafka that are
not their public API (:data:`PRIVATE_MEMBERS`). They were checked against the versions in
:data:`CHECKED_VERSIONS` (``constraints.txt``); ``tests/streams/test_streams_batching.py``
fails when an installed version differs or a member is gone, and the worker warns at start.

:func:`install_fast_handoff` removes the other per-record cost left: Faust's consumer
hands each record to the conductor through ``wait_first(callback(message),
suspend_flow.wait())`` -- four tasks and an ``asyncio.wait`` per record, so that a
rebalance can interrupt a callback blocked on a full queue. The callback almost never
blocks; the fast hand-off runs it directly and falls back to ``wait_first`` with the
*same* coroutine, resumed where it suspended, the moment it does.

>>> import asyncio
>>> q = asyncio.Queue()
>>> for i in range(5): q.put_nowait(i)
>>> asyncio.run(next_batch(q, 3, within=0.01))
[0, 1, 2]
>>> asyncio.run(next_batch(q, 3, within=0.01))  # a partial batch after the window
[3, 4]
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

import faust

from mode.services import Service, WaitResults

__all__ = ["BatchTopic", "CHECKED_VERSIONS", "PRIVATE_MEMBERS", "ack_all", "check_private_members",
           "install_fast_handoff", "next_batch", "set_fetch_max_wait"]

#: The versions this module's use of private members was checked against.
CHECKED_VERSIONS: dict[str, str] = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

#: What this module relies on that is not public API, and why.
PRIVATE_MEMBERS: tuple[tuple[str, str], ...] = (
    ("faust.Topic._compile_decode", "BatchTopic keeps its own decode (raw Message into the queue)"),
    ("faust.Topic.put", "the conductor awaits it when the channel queue is full: BatchTopic.put waits for room"),
    ("faust.transport.consumer.Consumer._drain_messages", "calls self.wait_first(callback(message), "
     "suspend_flow.wait()) per record: the fast hand-off replaces wait_first"),
    ("faust.transport.consumer.Consumer.suspend_flow", "set during a rebalance: the fast hand-off's guard"),
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer",
     "wrapped to set the fetch wait before the aiokafka consumer starts"),
    ("aiokafka.AIOKafkaConsumer._fetch_max_wait_ms", "the fetch wait the fetcher reads at start"),
)


def check_private_members() -> list[str]:
    """Problems with the private members and versions this module relies on (empty: none).

    >>> check_private_members()
    []
    """
    from importlib import metadata

    import aiokafka
    import faust.transport.consumer
    import faust.transport.drivers.aiokafka

    problems = []
    for dist, want in CHECKED_VERSIONS.items():
        try:
            have = metadata.version(dist)
        except metadata.PackageNotFoundError:
            have = "not installed"
        if have != want:
            problems.append(f"{dist} {have} (streams/batching.py was checked against {want})")
    checks = {
        "faust.Topic._compile_decode": hasattr(faust.Topic, "_compile_decode"),
        "faust.Topic.put": hasattr(faust.Topic, "put"),
        "faust.transport.consumer.Consumer._drain_messages":
            "self.wait_first(" in _source(faust.transport.consumer.Consumer, "_drain_messages"),
        "faust.transport.consumer.Consumer.suspend_flow":
            "suspend_flow" in _source(faust.transport.consumer.Consumer, "__init__"),
        "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer":
            hasattr(faust.transport.drivers.aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
        "aiokafka.AIOKafkaConsumer._fetch_max_wait_ms":
            "self._fetch_max_wait_ms" in _source(aiokafka.AIOKafkaConsumer, "__init__"),
    }
    problems.extend(f"{name} is gone or changed" for name, ok in checks.items() if not ok)
    return problems


def _source(cls: type, name: str) -> str:
    import inspect

    try:
        return inspect.getsource(getattr(cls, name))
    except (AttributeError, OSError, TypeError):
        return ""


class BatchTopic(faust.Topic):
    """A Faust topic whose channel queue holds raw ``Message`` objects, not ``Event``\\ s."""

    def _compile_decode(self) -> None:
        # faust.Topic binds a schema-compiled ``decode`` on the instance here; keep ours
        pass

    async def decode(self, message: Any, *, propagate: bool = False) -> Any:  # noqa: D102
        return message

    async def put(self, event: Any) -> None:
        """Wait for room in the channel queue, then enqueue (the conductor's full-queue path)."""
        await self.queue.put(event)


async def next_batch(queue: asyncio.Queue, max_: int, *, within: float) -> list[Any]:
    """Wait for one item, then take up to ``max_`` items within ``within`` seconds of it.

    Items already queued are taken without waiting; the first item is awaited without
    a deadline (an idle topic costs nothing). If cancelled while waiting for more, the
    items taken so far go with the cancelled call: in the worker they were never
    acknowledged, so Kafka delivers them again after the restart.
    """
    if max_ < 1:
        raise ValueError(f"max_ must be >= 1, got {max_}")
    loop = asyncio.get_running_loop()
    batch = [await queue.get()]
    deadline = loop.time() + within
    get_nowait, empty = queue.get_nowait, queue.empty
    while len(batch) < max_:
        if not empty():
            batch.append(get_nowait())
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except asyncio.TimeoutError:
            break
    return batch


def ack_all(messages: Iterable[Any], consumer: Any) -> None:
    """Acknowledge messages to Faust's consumer: their offsets become committable."""
    for m in messages:
        m.ack(consumer)


class _Resumed:
    """Awaitable that continues a coroutine already driven to its first suspension.

    >>> import asyncio
    >>> async def two_steps():
    ...     await asyncio.sleep(0)
    ...     return "done"
    >>> async def main():
    ...     coro = two_steps()
    ...     first = coro.send(None)  # suspended at the sleep
    ...     return await _Resumed(coro, first)
    >>> asyncio.run(main())
    'done'
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Any:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and errors go to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _fast_wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
    """``Service.wait_first`` with a direct path for the consumer's per-record hand-off."""
    if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
            and asyncio.iscoroutine(coros[1]) and not self.suspend_flow.is_set()):
        coro, suspended = coros
        try:
            first = coro.send(None)
        except StopIteration as stop:  # finished without suspending: the common case
            suspended.close()
            return WaitResults([coro], [stop.value], False)
        except BaseException:
            suspended.close()
            raise
        return await Service.wait_first(self, _Resumed(coro, first), suspended)
    return await Service.wait_first(self, *coros, timeout=timeout)


def install_fast_handoff(consumer: Any) -> None:
    """Give one Faust consumer the fast per-record hand-off (see the module docstring).

    Only ``Consumer._drain_messages`` calls ``wait_first`` on a consumer (faust-streaming
    0.15, pinned); anything else that did would take the unchanged path unless it passed
    exactly two bare coroutines.
    """
    if not hasattr(consumer, "suspend_flow"):
        raise TypeError(f"{type(consumer).__name__} is not a Faust consumer with suspend_flow")
    consumer.wait_first = _fast_wait_first.__get__(consumer)


def set_fetch_max_wait(consumer: Any, ms: int) -> None:
    """Make the broker hold this consumer's fetch requests at most ``ms`` milliseconds.

    faust-streaming 0.15 hard-codes 1,500 ms. aiokafka keeps one fetch in flight per
    broker and leaves a partition out of the request while records of it are still
    buffered, so a request that happens to cover only idle partitions (``feedback``,
    Faust's leader topic) parks the busy ``events`` partition for the full wait
    (measured: ``benchmarks/README.md``). The value is set
    on the aiokafka consumer before it starts (its fetcher reads it there).
    """
    if ms < 0:
        raise ValueError(f"fetch max wait must be >= 0 ms, got {ms}")
    thread = getattr(consumer, "_thread", None)
    create = getattr(thread, "_create_worker_consumer", None)
    if create is None:
        raise TypeError(f"{type(consumer).__name__} is not a Faust aiokafka consumer")

    def _create(transport: Any) -> Any:
        kafka_consumer = create(transport)
        kafka_consumer._fetch_max_wait_ms = int(ms)
        return kafka_consumer

    thread._create_worker_consumer = _create
