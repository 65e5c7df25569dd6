"""Sessions: the analogue of a process. A session owns an fd table whose
entries are iommufd contexts, VFIO device fds and VFIO group fds (a legacy
container is an iommufd context).

Tokens are 256-bit secrets; the registry is keyed by token, so a call whose
token names no session can learn nothing about other sessions. Closing a
session closes every fd it holds, as process exit does. A session that stops
calling and holds no WatchSession stream is reaped once its lease runs out.

Concurrency: every mutation runs on the daemon's event loop thread, so the
registry and the fd tables need no locks. The native page tables carry their
own locks for the translate batches that run off the loop.

The fd table holds entries by the `FdEntry` protocol (their kind and their
release), so this module sits below device.py and vfio_compat.py, which
make those entries.
"""
from __future__ import annotations

import asyncio
import errno as E
import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol, cast

from iommud.context import IommufdContext
from iommud.errors import IommuError
from iommud.failnth import step
from iommud.ids import LowestFreeAllocator
from iommud.limits import FD_BYTES, OBJECT_BYTES, Accounting, Limits, enforced
from iommud.logsetup import get_logger
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from iommud.call import Call
    from iommud.device import DeviceFd
    from iommud.host import Host
    from iommud.vfio_group import GroupFd

log = get_logger("iommud.session")


class FdEntry(Protocol):
    """What a session's fd table holds: an open file of some kind."""

    #: "iommufd", "device" or "group" (a container is an "iommufd").
    kind: str

    def release(self) -> int:
        """close() of the last reference, as the kernel's file release:
        returns how many iommufd objects were destroyed right away."""
        ...


class LeaseClock:
    """The time leases are measured in: the monotonic clock, less every
    stretch in which the daemon itself could not serve (its event loop
    stalled, or the process was stopped), plus what the debug clock added.
    A client cannot renew while the daemon does not read, so that time
    never counts against its lease."""

    #: A reaper round later than its interval by more than this was a stall.
    SLACK = 0.5

    def __init__(self) -> None:
        self._paused = 0.0
        self._offset = 0.0
        self._last_tick = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._paused + self._offset

    def tick(self, interval: float) -> float:
        """The reaper's round, `interval` after the last: returns the stall
        it found (seconds beyond the interval), which no lease pays for."""
        real = time.monotonic()
        stall = real - self._last_tick - interval
        self._last_tick = real
        if stall > self.SLACK:
            self._paused += stall
            return stall
        return 0.0

    def advance(self, seconds: float) -> None:
        """The debug clock (tests): leases age by `seconds` at once."""
        self._offset += seconds


#: The first fd a session hands out, as a process's 0-2 are taken by stdio.
FIRST_FD = 3
FD_MAX = (1 << 31) - 1


class Session:
    #: The uid and pid of the process that opened the session (a UNIX
    #: caller); None over TCP and for sessions replayed from the journal.
    opener_uid: int | None = None
    opener_pid: int | None = None

    def __init__(self, token: str, client_name: str, lease_seconds: int,
                 limits: Limits, host: Host | None = None, identity: str = "",
                 clock: LeaseClock | None = None) -> None:
        self.token = token
        #: The mutual-TLS identity that opened the session ("" without one);
        #: only that identity may use the token.
        self.identity = identity
        # Public id for logs: a digest prefix, so the log never holds the secret.
        self.session_id = "s-" + hashlib.sha256(token.encode()).hexdigest()[:12]
        self.client_name = client_name
        self.lease_seconds = lease_seconds
        self.clock = clock or LeaseClock()
        self.last_seen = self.clock.now()
        self.streams = 0
        #: Serialises this session's calls while one of them runs work off
        #: the event loop (dispatch.py): calls of one session apply, and are
        #: journaled, in order, as a process's syscalls on one fd table.
        self.busy = asyncio.Lock()
        #: Calls holding `busy` (an offloaded call in flight keeps the
        #: session from being reaped under it).
        self.in_flight = 0
        self.closed = False
        self._fds: dict[int, FdEntry] = {}
        self._fd_numbers = LowestFreeAllocator(FIRST_FD, FD_MAX)
        self.limits = limits
        #: Bytes mapped across all of this session's IOASes, against its limit.
        self.account = Accounting(limits.max_mapped_bytes_per_session,
                                  limits.max_memory_bytes_per_session)
        self.account.extra = self._objects_bytes
        self.host = host

    def _objects_bytes(self) -> int:
        """The memory budget's estimate for the session's objects and fds."""
        objects = sum(len(e) for e in self._fds.values() if isinstance(e, IommufdContext))
        return objects * OBJECT_BYTES + len(self._fds) * FD_BYTES

    def touch(self) -> None:
        self.last_seen = self.clock.now()

    def __getstate__(self) -> dict[str, Any]:
        """For a snapshot: what the session owns, not what ties it to this
        daemon's loop (its lock, clock and streams)."""
        state = self.__dict__.copy()
        for name in ("busy", "clock", "last_seen", "streams", "in_flight"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.account.extra = self._objects_bytes
        self.busy = asyncio.Lock()
        self.clock = LeaseClock()
        self.last_seen = self.clock.now()
        self.streams = 0
        self.in_flight = 0

    def expired(self, now: float) -> bool:
        return (self.streams == 0 and self.in_flight == 0
                and now - self.last_seen > self.lease_seconds)

    def contexts(self) -> Iterator[tuple[int, IommufdContext]]:
        return iter([(fd, e) for fd, e in sorted(self._fds.items())
                     if isinstance(e, IommufdContext)])

    def fds(self) -> Iterator[tuple[int, FdEntry]]:
        return iter(sorted(self._fds.items()))

    def reachable_contexts(self) -> list[IommufdContext]:
        """Every context this session's fds keep alive: its iommufds, and
        those held by its bound device fds and legacy group fds."""
        seen: dict[int, IommufdContext] = {}
        for _fd, entry in self.fds():
            ctx = entry if isinstance(entry, IommufdContext) else getattr(entry, "ctx", None)
            bound = getattr(entry, "bound", None)
            if ctx is None and bound is not None and not isinstance(bound, dict):
                ctx = bound.ctx
            if isinstance(ctx, IommufdContext):
                seen[id(ctx)] = ctx
        return list(seen.values())

    def check_fd_room(self) -> None:
        """EMFILE when the session holds its limit of fds. Every open checks
        this before it has any effect, as the kernel reserves the fd number
        before the file's open runs."""
        if len(self._fds) >= self.limits.max_fds_per_session and enforced():
            raise IommuError(E.EMFILE, f"The session already has {len(self._fds):#x} open fds, "
                             f"its limit.", limit=self.limits.max_fds_per_session)
        step("fd")

    def _install(self, entry: FdEntry) -> int:
        fd = self._fd_numbers.alloc()
        if fd is None:
            raise IommuError(E.EMFILE, "The session has no free fd number left.")
        self._fds[fd] = entry
        return fd

    def open_context(self) -> int:
        """open("/dev/iommu"): the new context's fd number (lowest free from 3)."""
        self.check_fd_room()
        count = sum(1 for _ in self.contexts())
        if count >= self.limits.max_contexts_per_session and enforced():
            raise IommuError(E.EMFILE, f"The session already has {count:#x} open contexts, its "
                             f"limit.", limit=self.limits.max_contexts_per_session)
        return self._install(IommufdContext(self.limits, self.host, self.account))

    def install(self, entry: FdEntry) -> int:
        """Give an entry made by its open its fd number; the open checked
        check_fd_room() before it had any effect."""
        return self._install(entry)

    def group_fd(self, fd: int) -> GroupFd:
        entry = self._entry(fd)
        if entry.kind != "group":
            raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not a VFIO group fd.",
                             group_fd=fd)
        return cast("GroupFd", entry)

    def fd_entry(self, fd: int) -> FdEntry:
        """The entry behind `fd`, of any kind; EBADF when not open."""
        return self._entry(fd)

    def _entry(self, fd: int) -> FdEntry:
        entry = self._fds.get(fd)
        if entry is None:
            raise IommuError(E.EBADF, f"fd {fd} is not open in this session.", iommufd=fd)
        return entry

    def context(self, fd: int) -> IommufdContext:
        """The context behind `fd`: EBADF when not open, ENOTTY when the fd
        is not an iommufd (an iommufd ioctl issued on another kind of fd)."""
        entry = self._entry(fd)
        if not isinstance(entry, IommufdContext):
            raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not an iommufd.",
                             iommufd=fd)
        return entry

    def iommufd_arg(self, fd: int) -> IommufdContext:
        """An iommufd passed as an argument (bind): EBADF, or EBADFD when the
        fd is open but is not an iommufd."""
        entry = self._entry(fd)
        if not isinstance(entry, IommufdContext):
            raise IommuError(E.EBADFD, f"fd {fd} is a {entry.kind} fd, not an iommufd.",
                             iommufd=fd)
        return entry

    def device_fd(self, fd: int) -> DeviceFd:
        entry = self._entry(fd)
        if entry.kind != "device":
            raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not a VFIO device fd.",
                             device_fd=fd)
        return cast("DeviceFd", entry)

    def close_fd(self, fd: int) -> int:
        """close(fd); returns the objects destroyed right away."""
        entry = self._entry(fd)
        del self._fds[fd]
        self._fd_numbers.release(fd)
        return entry.release()

    def close_context(self, fd: int) -> int:
        self.context(fd)
        return self.close_fd(fd)

    def close(self) -> int:
        """Close every fd; returns how many were closed."""
        fds = sorted(self._fds)
        for fd in fds:
            self.close_fd(fd)
        self.closed = True
        return len(fds)


class SessionRegistry:
    def __init__(self, lease_default: int, lease_max: int, max_sessions: int,
                 limits: Limits, host: Host | None = None) -> None:
        self.host = host
        self.lease_default = lease_default
        self.lease_max = lease_max
        self.max_sessions = max_sessions
        self.limits = limits
        self._by_token: dict[str, Session] = {}
        #: What leases are measured in (see LeaseClock).
        self.clock = LeaseClock()
        #: Called with each session that closes for good (not at daemon stop).
        self.on_forget: list[Callable[[Session], None]] = []

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_token.values()))

    def open(self, client_name: str, lease_seconds: int, identity: str = "",
             token: str | None = None) -> Session:
        """A new session; `token` is given only when the journal replays one."""
        if len(self._by_token) >= self.max_sessions and enforced():
            raise IommuError(E.ENOSPC, f"The daemon already serves {len(self._by_token)} "
                             f"sessions, its limit.", limit=self.max_sessions)
        step("session")
        lease = lease_seconds or self.lease_default
        lease = max(1, min(lease, self.lease_max))
        session = Session(token or secrets.token_urlsafe(32), client_name[:128], lease,
                          self.limits, self.host, identity, self.clock)
        self._by_token[session.token] = session
        return session

    def lookup(self, token: str | None, identity: str = "") -> Session:
        """The live session for `token`, renewed; ESRCH for a missing or
        unknown token, or one opened by another TLS identity (the same
        answer in every case)."""
        session = self._by_token.get(token) if token else None
        if session is None or (session.identity and session.identity != identity):
            raise IommuError(E.ESRCH, "No live session matches the request's token; open one "
                             "with OpenSession and send its token as 'iommud-session' metadata.")
        session.touch()
        return session

    def get(self, token: str) -> Session | None:
        return self._by_token.get(token)

    def close(self, session: Session, forget: bool = True) -> int:
        """Close `session`'s fds. forget=False at daemon stop: the session
        ends here but stays in the journal, to come back on restart."""
        self._by_token.pop(session.token, None)
        closed = session.close()
        if forget:
            for callback in self.on_forget:
                callback(session)
        return closed

    def reap(self, now: float | None = None) -> list[Session]:
        """Close every session whose lease ran out; returns them."""
        now = self.clock.now() if now is None else now
        expired = [s for s in self._by_token.values() if s.expired(now)]
        for session in expired:
            self.close(session)
        return expired

    def adopt(self, session: Session) -> None:
        """A session from a snapshot: this registry's clock (its lease starts
        now, as after a replay) and this daemon's limits for new requests."""
        session.clock = self.clock
        session.touch()
        session.limits = self.limits
        session.account.max_mapped_bytes = self.limits.max_mapped_bytes_per_session
        session.account.max_memory = self.limits.max_memory_bytes_per_session
        for ctx in session.reachable_contexts():
            ctx.limits = self.limits
            ctx.set_max_objects(self.limits.max_objects_per_context)
        self._by_token[session.token] = session

    def apply_limits(self) -> None:
        """After journal replay, which ran with limits suspended: every IOAS
        takes the configured areas limit again. Objects already over a limit
        stay; new requests meet it."""
        for sess in self._by_token.values():
            for ctx in sess.reachable_contexts():
                for obj in ctx.objects():
                    iopt = getattr(obj, "iopt", None)
                    if iopt is not None:
                        iopt.set_max_areas(getattr(obj, "max_areas", None))

    def close_all(self) -> None:
        """Daemon stop: every session ends, none is forgotten by the journal."""
        for session in list(self._by_token.values()):
            self.close(session, forget=False)


# -- handlers -------------------------------------------------------------------------------

def open_session(call: Call, req: pb.OpenSessionRequest) -> pb.OpenSessionResponse:
    """A new session for the caller's identity (on replay: the journaled one,
    with its journaled token)."""
    sess = call.rt.sessions.open(req.client_name, req.lease_seconds, call.caller.identity,
                                 token=call.token)
    if not call.replaying:
        sess.opener_uid, sess.opener_pid = call.caller.uid, call.caller.pid
        log.info("session.open", session=sess.session_id, client_name=sess.client_name,
                 lease_seconds=sess.lease_seconds, identity=call.caller.identity or None,
                 pid=call.caller.pid)
    return pb.OpenSessionResponse(token=sess.token, session_id=sess.session_id,
                                  lease_seconds=sess.lease_seconds)


def close_session(call: Call, req: pb.CloseSessionRequest) -> pb.CloseSessionResponse:
    return pb.CloseSessionResponse(closed_fds=call.rt.sessions.close(call.sess))


def close_fd(call: Call, req: pb.CloseFdRequest) -> pb.CloseFdResponse:
    """close(fd) of any kind of fd: the file's release."""
    return pb.CloseFdResponse(destroyed_objects=call.sess.close_fd(req.fd))


def debug_advance_clock(call: Call, req: pb.DebugAdvanceClockRequest
                        ) -> pb.DebugAdvanceClockResponse:
    """Age every lease by `seconds` and reap at once (debug_clock)."""
    if not 0 <= req.seconds <= 1e9:
        raise IommuError(E.EINVAL, "seconds must be within 0..1e9.")
    registry = call.rt.sessions
    registry.clock.advance(req.seconds)
    reaped = registry.reap()
    for sess in reaped:
        log.info("session.reaped", session=sess.session_id, lease_seconds=sess.lease_seconds)
    return pb.DebugAdvanceClockResponse(reaped=len(reaped))


def keep_alive(call: Call, req: pb.KeepAliveRequest) -> pb.KeepAliveResponse:
    return pb.KeepAliveResponse(lease_seconds=call.sess.lease_seconds)


async def watch_session(call: Call,
                        req: pb.WatchSessionRequest) -> AsyncIterator[pb.WatchSessionResponse]:
    """Heartbeats for as long as the client reads them; the session's lease
    does not run while a stream is open."""
    sess = call.sess
    interval = min(max((req.interval_ms or 1000) / 1000.0, 0.1), 60.0)
    sess.streams += 1
    log.info("session.watch", session=sess.session_id, streams=sess.streams)
    try:
        sequence = 0
        while not sess.closed:
            sequence += 1
            yield pb.WatchSessionResponse(session_id=sess.session_id, sequence=sequence)
            await asyncio.sleep(interval)
    finally:
        sess.streams -= 1
        sess.touch()  # the lease counts from the moment the stream ended
