"""What fault queues and vEVENTQs share, as eventq.c's struct iommufd_eventq
is shared: an object whose records its fd reads, the fd that holds the
queue and its context while open (iommufd_eventq_init,
iommufd_eventq_fops_release), and a gRPC stream that reads the fd as the
records come. The queues themselves (what a record is, how a read takes
them) are fault.py's and viommu.py's.

Listeners are how a transport or a stream learns that a record came or the
queue changed: they are never part of a snapshot.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from iommud.objects import IommufdObject

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from iommud.call import Call
    from iommud.context import IommufdContext


class Eventq(IommufdObject):
    """struct iommufd_eventq: a queue of records with listeners."""

    def __init__(self, obj_id: int) -> None:
        super().__init__(obj_id)
        self._listeners: list[Callable[[], None]] = []

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot: neither listeners nor the queued records (`deliver`,
        every queue's): events are not durable, and a restarted daemon's
        queues start empty as a rebooted kernel's do. The records go as a
        plain list, since a snapshot names only builtins and iommud's classes."""
        state = self.__dict__.copy()
        state["_listeners"] = []
        state["deliver"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.deliver: deque[Any] = deque()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` when a record is queued, or the queue changes or
        goes; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    def notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def pop(self) -> Any:
        """The first record, read as a stream reads it, or None."""
        raise NotImplementedError


class EventqFd:
    """The queue's fd: it holds the queue (users) and its context while
    open (iommufd_eventq_init)."""

    kind: str

    def __init__(self, queue: Eventq, ctx: IommufdContext) -> None:
        self.queue = queue
        self.ctx = ctx
        self.closed = False

    def release(self) -> int:
        """iommufd_eventq_fops_release."""
        self.closed = True
        self.queue.users -= 1
        self.queue.notify()
        ctx = self.ctx
        ctx.holders -= 1
        return ctx.maybe_release()


async def watch(call: Call, message: Callable[[Any], Any]) -> AsyncGenerator[Any, None]:
    """The call's queue fd read as a stream: each record as it is queued,
    read as it is sent (`message` makes the reply of one); the stream ends
    when the fd or the session closes."""
    fd: EventqFd = call.target
    sess = call.sess
    queue = fd.queue
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def listener() -> None:
        loop.call_soon_threadsafe(wake.set)

    unsubscribe = queue.subscribe(listener)
    sess.streams += 1
    try:
        while not fd.closed and not sess.closed:
            record = queue.pop()
            if record is None:
                wake.clear()
                await wake.wait()
                continue
            yield message(record)
    finally:
        unsubscribe()
        sess.streams -= 1
        sess.touch()
