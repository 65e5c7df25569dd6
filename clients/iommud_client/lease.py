"""Keeping a session's lease alive in the background, as etcd's client does.

The daemon reaps a session whose lease ran out (default 30 s after its last
call) unless a `WatchSession` stream is open: while one is, the session is
never reaped, and its lease counts from the moment the stream ends. So a
client that holds a session keeps one such stream open, and reopens it when
it breaks:

- Transient failures are retried. A transport failure (UNAVAILABLE without
  the daemon's ErrorInfo: the daemon unreachable or restarting, a stream
  cut by a graceful stop, GOAWAY) is retried every `transport_retry`: while
  the channel cannot connect such a call fails locally without I/O, and
  gRPC's own reconnection (at most 1 s apart, see client.CHANNEL_OPTIONS)
  paces the real attempts, so the stream is back within about a second of
  the daemon. Anything else the daemon answers (ESHUTDOWN while it drains,
  EACCES, ...) and a stream that ends cleanly are retried with capped,
  jittered exponential backoff, the cap well inside the lease. A daemon
  restarted with `--journal` brings the session back with its token, and
  the next stream finds it.
- A stream that stops delivering heartbeats (a connection that died
  silently) is cancelled after `KeepalivePolicy.stall_after` and reopened.
- ESRCH is final: the session is gone (closed, reaped, or a daemon without
  the journal restarted) and nothing can bring it back.

`LeaseKeeper` (here) does this on a daemon thread for the synchronous client;
`iommud_client.aio.AsyncLeaseKeeper` does it on an asyncio task. Both keep
their counters in `_KeeperCore` and report a `KeepaliveStatus`.

Lifetime of the thread: it stops for good on ESRCH, on `Session.close()`, on
`Client.close()`, when the Session object is garbage collected (nobody holds
the session any more, so its lease may run out), and at interpreter exit
(an atexit hook cancels every stream; the thread is a daemon thread, so it
never holds up exit). It only ever uses the client's channel (grpc channels
are thread-safe) and its own state, under its own lock; it never touches the
Client's or Session's other attributes.

fork(): a child does not get the parent's threads, and a grpc channel must
not be used across fork. In the child every keeper is marked stopped
(`StopReason.FORK`) and its locks are renewed, so its status is truthful and
nothing waits on a lock a vanished thread held. The parent's keepers run on.
A child that wants to keep the session alive opens its own Client and calls
`attach_session(token)`.
"""
from __future__ import annotations

import atexit
import enum
import errno as E
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import grpc

from iommud_client.errors import IommudError
from iommud_wire import metadata, pb

if TYPE_CHECKING:
    from collections.abc import Callable


class StopReason(enum.StrEnum):
    """Why a keeper stopped for good."""

    #: Session.close() (or stop_keepalive()).
    CLOSED = "closed"
    #: Client.close() / AsyncClient.close().
    CLIENT_CLOSED = "client closed"
    #: The daemon answered ESRCH: the session no longer exists.
    SESSION_GONE = "session gone"
    #: Nobody holds the Session object any more (it was garbage collected).
    RELEASED = "released"
    #: The interpreter is exiting (or the asyncio loop running the task ended).
    EXIT = "exit"
    #: This is a child process forked from the one that ran the keeper.
    FORK = "fork"
    #: The keeper itself failed (a bug); last_error says how.
    FAILED = "failed"


@dataclass(frozen=True)
class KeepalivePolicy:
    """The keeper's timing, derived from the lease by `for_lease`.

    Attributes:
        interval: the heartbeat period asked of the daemon (WatchSession's
            interval_ms), seconds.
        stall_after: a stream with no heartbeat for this long is taken for
            dead, cancelled and reopened.
        backoff_initial, backoff_max: the delay before reopening a stream
            the daemon refused or ended doubles from `backoff_initial` up to
            `backoff_max` (each delay jittered down by up to half) and starts
            again after a stream that delivered a heartbeat.
        transport_retry: the delay (jittered alike) after a transport
            failure, which costs no I/O while the channel is down.
    """

    interval: float
    stall_after: float
    backoff_initial: float
    backoff_max: float
    transport_retry: float = 0.2

    @classmethod
    def for_lease(cls, lease_seconds: float) -> KeepalivePolicy:
        """Heartbeats 5 times a lease (0.1 s..10 s), a stall after 3 missed
        heartbeats (at least 1 s), and retries never further apart than a
        quarter of the lease (0.2 s..5 s), so a stream that broke is back
        well before the daemon could reap the session."""
        lease = max(float(lease_seconds), 0.5)
        interval = min(max(lease / 5, 0.1), 10.0)
        return cls(interval=interval, stall_after=max(3 * interval, 1.0),
                   backoff_initial=0.1, backoff_max=min(max(lease / 4, 0.2), 5.0),
                   transport_retry=0.2)


@dataclass(frozen=True)
class KeepaliveStatus:
    """A snapshot of a keeper.

    Attributes:
        running: the keeper has not stopped for good (it holds a stream
            open, or is about to reopen one).
        connected: a stream is open and has delivered a heartbeat.
        streams: WatchSession streams opened so far (1 + reopenings).
        heartbeats: heartbeats received over all streams.
        last_heartbeat: time.monotonic() of the last heartbeat, or None.
        last_error: the most recent failure, transient or final (kept after
            a successful reopen; `connected` tells whether all is well now).
        stop_reason: why the keeper stopped for good, or None while running.
    """

    running: bool
    connected: bool
    streams: int
    heartbeats: int
    last_heartbeat: float | None
    last_error: IommudError | None
    stop_reason: StopReason | None


class _KeeperCore:
    """The keeper's bookkeeping and decisions, shared by the thread and the
    asyncio task; the caller serialises access (a lock, or the event loop)."""

    def __init__(self, policy: KeepalivePolicy, rng: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rng = rng
        self._next_delay = policy.backoff_initial
        self.streams = 0
        self.heartbeats = 0
        self.beats_this_stream = 0
        self.last_heartbeat: float | None = None
        self.stream_started = 0.0
        self.last_error: IommudError | None = None
        self.stop_reason: StopReason | None = None

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def stream_opened(self, now: float) -> None:
        self.streams += 1
        self.beats_this_stream = 0
        self.stream_started = now

    def heartbeat(self, now: float) -> None:
        if self.beats_this_stream == 0:
            self._next_delay = self.policy.backoff_initial   # the daemon is back: start over
        self.beats_this_stream += 1
        self.heartbeats += 1
        self.last_heartbeat = now

    def silent_for(self, now: float) -> float:
        """How long the current stream has gone without a heartbeat."""
        last = self.last_heartbeat if self.beats_this_stream else None
        return now - (last if last is not None else self.stream_started)

    def stream_ended(self, error: IommudError | None) -> float | None:
        """The stream ended (cleanly when `error` is None): the delay before
        reopening it, or None when the keeper must stop for good (ESRCH)."""
        self.beats_this_stream = 0
        if error is not None:
            self.last_error = error
            if error.errno == E.ESRCH:
                self.stop(StopReason.SESSION_GONE)
                return None
            if is_transport_failure(error):
                return self.policy.transport_retry * (0.5 + 0.5 * self._rng())
        delay = self._next_delay
        self._next_delay = min(delay * 2, self.policy.backoff_max)
        return delay * (0.5 + 0.5 * self._rng())

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:        # the first reason is the one that counts
            self.stop_reason = reason

    def status(self, running: bool) -> KeepaliveStatus:
        return KeepaliveStatus(running=running and not self.stopped,
                               connected=self.beats_this_stream > 0 and not self.stopped,
                               streams=self.streams, heartbeats=self.heartbeats,
                               last_heartbeat=self.last_heartbeat, last_error=self.last_error,
                               stop_reason=self.stop_reason)


def is_transport_failure(error: IommudError) -> bool:
    """UNAVAILABLE with no iommud ErrorInfo: the channel, not the daemon, failed
    (IommudError.from_rpc_error reports those as EIO with no metadata)."""
    return (error.code is grpc.StatusCode.UNAVAILABLE and error.errno == E.EIO
            and not error.metadata)


def stall_error(seconds: float) -> IommudError:
    return IommudError(E.ETIMEDOUT, f"no heartbeat on the WatchSession stream for "
                       f"{seconds:.1f} s; reopening it", errno_name="ETIMEDOUT")


def watch_request(policy: KeepalivePolicy) -> pb.WatchSessionRequest:
    return pb.WatchSessionRequest(interval_ms=max(100, round(policy.interval * 1000)))


def session_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Only the token: never the client's extra metadata (a fail-nth header
    there is meant for the caller's own calls, not for the stream)."""
    return ((metadata.SESSION, token),)


# -- the threaded keeper ----------------------------------------------------------------------

class LeaseKeeper:
    """Holds a WatchSession stream open on a daemon thread (see the module doc).

    Made and started by the synchronous Session; `stub` is the client's
    IommuService stub. Every public method is safe from any thread.
    """

    def __init__(self, stub: Any, token: str, lease_seconds: float, *, session_id: str = "",
                 policy: KeepalivePolicy | None = None) -> None:
        self.policy = policy or KeepalivePolicy.for_lease(lease_seconds)
        self.session_id = session_id
        self._stub = stub
        self._metadata = session_metadata(token)
        self._request = watch_request(self.policy)
        self._cond = threading.Condition()
        self._core = _KeeperCore(self.policy)
        self._call: Any = None          # the open stream, while there is one
        self._stalled = False           # the watchdog cancelled the open stream
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> Self:
        with self._cond:
            if self._thread is not None or self._core.stopped:
                return self
            self._running = True
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"iommud-keepalive-{self.session_id or 'session'}")
        _register(self)
        self._thread.start()
        return self

    # -- state -------------------------------------------------------------------------------

    def status(self) -> KeepaliveStatus:
        with self._cond:
            return self._core.status(self._running)

    @property
    def alive(self) -> bool:
        """The keeper runs: it holds a stream open or is about to reopen one."""
        return self.status().running

    @property
    def last_error(self) -> IommudError | None:
        return self.status().last_error

    def wait(self, predicate: Callable[[KeepaliveStatus], bool],
             timeout: float | None = None) -> bool:
        """Block until `predicate(status)` holds (True) or `timeout` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._core.status(self._running)),
                                       timeout)

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, reason: StopReason = StopReason.CLOSED, timeout: float | None = 5.0) -> bool:
        """Stop for good: cancel the stream and, unless `timeout` is 0, wait
        up to `timeout` for the thread to end. True when it has ended."""
        with self._cond:
            self._core.stop(reason)
            call, timer, thread = self._call, self._timer, self._thread
            self._cond.notify_all()
        if timer is not None:
            timer.cancel()
        if call is not None:
            call.cancel()
        if thread is None or thread is threading.current_thread():
            return thread is None
        if timeout != 0:
            thread.join(timeout)
        return not thread.is_alive()

    def _release(self) -> None:
        """The Session was garbage collected: stop without waiting (this may
        run inside a collection, in whatever thread triggered it)."""
        self.stop(StopReason.RELEASED, timeout=0)

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition()
        self._core.stop(StopReason.FORK)
        self._call = self._timer = self._thread = None
        self._running = False

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            delay = 0.0
            while True:
                with self._cond:
                    if delay:
                        self._cond.wait_for(lambda: self._core.stopped, delay)
                    if self._core.stopped:
                        return
                    try:
                        call = self._stub.WatchSession(self._request, metadata=self._metadata)
                    except ValueError as exc:       # "Cannot invoke RPC on closed channel!"
                        self._core.last_error = IommudError(E.ESHUTDOWN, str(exc),
                                                            errno_name="ESHUTDOWN")
                        self._core.stop(StopReason.CLIENT_CLOSED)
                        return
                    self._call, self._stalled = call, False
                    self._core.stream_opened(time.monotonic())
                    self._arm_watchdog(call, self.policy.stall_after)
                    self._cond.notify_all()
                error = self._drain(call)
                with self._cond:
                    self._call = None
                    if self._timer is not None:
                        self._timer.cancel()
                        self._timer = None
                    if self._core.stopped:
                        return
                    if self._stalled:
                        error = stall_error(self.policy.stall_after)
                    next_delay = self._core.stream_ended(error)
                    self._cond.notify_all()
                    if next_delay is None:
                        return
                    delay = next_delay
        except BaseException as exc:   # a bug: say so in the status rather than die silently
            with self._cond:
                self._core.last_error = IommudError(E.EIO, f"keepalive failed: {exc!r}",
                                                    errno_name="EIO")
                self._core.stop(StopReason.FAILED)
            raise
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()

    def _drain(self, call: Any) -> IommudError | None:
        """Read heartbeats until the stream ends; its error, if any."""
        try:
            for _ in call:
                with self._cond:
                    self._core.heartbeat(time.monotonic())
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            return IommudError.from_rpc_error(exc)
        return None

    def _arm_watchdog(self, call: Any, after: float) -> None:
        """Check for a stall `after` seconds from now (called under the lock).
        One short-lived timer thread per stall period, not per heartbeat."""
        timer = threading.Timer(after, self._check_stall, (call,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _check_stall(self, call: Any) -> None:
        with self._cond:
            if self._call is not call or self._core.stopped:
                return
            silent = self._core.silent_for(time.monotonic())
            if silent < self.policy.stall_after:
                self._arm_watchdog(call, self.policy.stall_after - silent)
                return
            self._stalled = True
        call.cancel()


# -- every live keeper, for exit and fork -------------------------------------------------------

_live: weakref.WeakSet[Any] = weakref.WeakSet()
_live_lock = threading.Lock()


def _register(keeper: Any) -> None:
    with _live_lock:
        _live.add(keeper)


def _stop_all_at_exit() -> None:
    """Cancel every thread keeper's stream (without waiting for each in
    turn), then give them a moment together to end."""
    with _live_lock:
        keepers = [k for k in _live if isinstance(k, LeaseKeeper)]
    for keeper in keepers:
        keeper.stop(StopReason.EXIT, timeout=0)
    deadline = time.monotonic() + 1.0
    for keeper in keepers:
        thread = keeper._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for keeper in list(_live):
        keeper._after_fork_in_child()


# Registered after grpc's own hooks (grpc is imported above), so it runs
# before them: streams are cancelled while grpc still works.
atexit.register(_stop_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
