"""Sessions: the analogue of a process. A session owns an fd table whose
entries are iommufd contexts (and, later, device, group and container fds).

Tokens are 256-bit secrets; the registry is keyed by token, so a call whose
token names no session can learn nothing about other sessions. Closing a
session closes every fd it holds, as process exit does. A session that stops
calling and holds no WatchSession stream is reaped once its lease runs out.

Concurrency: every mutation runs on the daemon's event loop thread, so the
registry and the fd tables need no locks. The native page tables carry their
own locks for the translate batches that run off the loop.
"""
from __future__ import annotations

import errno as E
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator

from iommud.context import IommufdContext
from iommud.device import DeviceFd, open_device, unbind
from iommud.errors import IommuError
from iommud.host import Host
from iommud.failnth import step
from iommud.ids import LowestFreeAllocator
from iommud.limits import Accounting, Limits
from iommud.vfio_compat import GroupFd, close_group, open_group

FdEntry = IommufdContext | DeviceFd | GroupFd

#: The first fd a session hands out, as a process's 0-2 are taken by stdio.
FIRST_FD = 3
FD_MAX = (1 << 31) - 1


class Session:
    def __init__(self, token: str, client_name: str, lease_seconds: int,
                 limits: Limits, host: Host | None = None, identity: str = "") -> None:
        self.token = token
        #: The mutual-TLS identity that opened the session ("" without one);
        #: only that identity may use the token.
        self.identity = identity
        # Public id for logs: a digest prefix, so the log never holds the secret.
        self.session_id = "s-" + hashlib.sha256(token.encode()).hexdigest()[:12]
        self.client_name = client_name
        self.lease_seconds = lease_seconds
        self.last_seen = time.monotonic()
        self.streams = 0
        self.closed = False
        self._fds: dict[int, FdEntry] = {}
        self._fd_numbers = LowestFreeAllocator(FIRST_FD, FD_MAX)
        self.limits = limits
        #: Bytes mapped across all of this session's IOASes, against its limit.
        self.account = Accounting(limits.max_mapped_bytes_per_session)
        self.host = host

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def expired(self, now: float) -> bool:
        return self.streams == 0 and now - self.last_seen > self.lease_seconds

    def contexts(self) -> Iterator[tuple[int, IommufdContext]]:
        return iter([(fd, e) for fd, e in sorted(self._fds.items())
                     if isinstance(e, IommufdContext)])

    def fds(self) -> Iterator[tuple[int, FdEntry]]:
        return iter(sorted(self._fds.items()))

    def check_fd_room(self) -> None:
        """EMFILE when the session holds its limit of fds. Every open checks
        this before it has any effect, as the kernel reserves the fd number
        before the file's open runs."""
        if len(self._fds) >= self.limits.max_fds_per_session:
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
        if count >= self.limits.max_contexts_per_session:
            raise IommuError(E.EMFILE, f"The session already has {count:#x} open contexts, its "
                             f"limit.", limit=self.limits.max_contexts_per_session)
        return self._install(IommufdContext(self.limits, self.host, self.account))

    def open_device(self, name: str) -> int:
        """open("/dev/vfio/devices/vfioN") for the host device `name`."""
        if self.host is None:
            raise IommuError(E.ENODEV, "This daemon models no host devices.")
        self.check_fd_room()
        return self._install(open_device(self.host, name))

    def install_device_fd(self, devfd: DeviceFd) -> int:
        """A device fd made elsewhere (VFIO_GROUP_GET_DEVICE_FD)."""
        return self._install(devfd)

    def open_group(self, group: int) -> int:
        """open("/dev/vfio/<group>")."""
        if self.host is None:
            raise IommuError(E.ENODEV, "This daemon models no host devices.")
        self.check_fd_room()
        return self._install(open_group(self.host, group))

    def group_fd(self, fd: int) -> GroupFd:
        entry = self._entry(fd)
        if not isinstance(entry, GroupFd):
            raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not a VFIO group fd.",
                             group_fd=fd)
        return entry

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
        if not isinstance(entry, DeviceFd):
            raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not a VFIO device fd.",
                             device_fd=fd)
        return entry

    def close_fd(self, fd: int) -> int:
        """close(fd); returns the objects destroyed right away."""
        entry = self._entry(fd)
        del self._fds[fd]
        self._fd_numbers.release(fd)
        if isinstance(entry, IommufdContext):
            return entry.release_fd()
        if isinstance(entry, GroupFd):
            close_group(entry)
            return 0
        ctx = entry.bound.ctx if entry.bound else None
        before = len(ctx) if ctx is not None else 0
        unbind(entry)
        entry.closed = True
        for callback in entry.on_close:
            callback(entry)
        return before - (len(ctx) if ctx is not None else 0)

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
        #: Called with each session that closes for good (not at daemon stop).
        self.on_forget: list[Callable[[Session], None]] = []

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_token.values()))

    def open(self, client_name: str, lease_seconds: int, identity: str = "",
             token: str | None = None) -> Session:
        """A new session; `token` is given only when the journal replays one."""
        if len(self._by_token) >= self.max_sessions:
            raise IommuError(E.ENOSPC, f"The daemon already serves {len(self._by_token)} "
                             f"sessions, its limit.", limit=self.max_sessions)
        step("session")
        lease = lease_seconds or self.lease_default
        lease = max(1, min(lease, self.lease_max))
        session = Session(token or secrets.token_urlsafe(32), client_name[:128], lease,
                          self.limits, self.host, identity)
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
        now = time.monotonic() if now is None else now
        expired = [s for s in self._by_token.values() if s.expired(now)]
        for session in expired:
            self.close(session)
        return expired

    def close_all(self) -> None:
        """Daemon stop: every session ends, none is forgotten by the journal."""
        for session in list(self._by_token.values()):
            self.close(session, forget=False)
