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
from collections.abc import Iterator

from iommud.context import IommufdContext
from iommud.errors import IommuError
from iommud.ids import LowestFreeAllocator

#: The first fd a session hands out, as a process's 0-2 are taken by stdio.
FIRST_FD = 3
FD_MAX = (1 << 31) - 1


class Session:
    def __init__(self, token: str, client_name: str, lease_seconds: int,
                 max_contexts: int, max_objects: int) -> None:
        self.token = token
        # Public id for logs: a digest prefix, so the log never holds the secret.
        self.session_id = "s-" + hashlib.sha256(token.encode()).hexdigest()[:12]
        self.client_name = client_name
        self.lease_seconds = lease_seconds
        self.last_seen = time.monotonic()
        self.streams = 0
        self.closed = False
        self._fds: dict[int, IommufdContext] = {}
        self._fd_numbers = LowestFreeAllocator(FIRST_FD, FD_MAX)
        self._max_contexts = max_contexts
        self._max_objects = max_objects

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def expired(self, now: float) -> bool:
        return self.streams == 0 and now - self.last_seen > self.lease_seconds

    def contexts(self) -> Iterator[tuple[int, IommufdContext]]:
        return iter(sorted(self._fds.items()))

    def open_context(self) -> int:
        """open("/dev/iommu"): the new context's fd number (lowest free from 3)."""
        if len(self._fds) >= self._max_contexts:
            raise IommuError(E.EMFILE, f"The session already has {len(self._fds)} open "
                             f"contexts, its limit.", limit=self._max_contexts)
        fd = self._fd_numbers.alloc()
        if fd is None:
            raise IommuError(E.EMFILE, "The session has no free fd number left.")
        self._fds[fd] = IommufdContext(self._max_objects)
        return fd

    def context(self, fd: int) -> IommufdContext:
        """The context behind `fd`; EBADF when the fd is not an open context."""
        ctx = self._fds.get(fd)
        if ctx is None:
            raise IommuError(E.EBADF, f"fd {fd} is not an open iommufd context of this session.",
                             iommufd=fd)
        return ctx

    def close_context(self, fd: int) -> int:
        ctx = self.context(fd)
        del self._fds[fd]
        self._fd_numbers.release(fd)
        return ctx.close()

    def close(self) -> int:
        """Close every fd; returns how many were closed."""
        fds = sorted(self._fds)
        for fd in fds:
            self.close_context(fd)
        self.closed = True
        return len(fds)


class SessionRegistry:
    def __init__(self, lease_default: int, lease_max: int, max_sessions: int,
                 max_contexts: int, max_objects: int) -> None:
        self.lease_default = lease_default
        self.lease_max = lease_max
        self.max_sessions = max_sessions
        self.max_contexts = max_contexts
        self.max_objects = max_objects
        self._by_token: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_token.values()))

    def open(self, client_name: str, lease_seconds: int) -> Session:
        if len(self._by_token) >= self.max_sessions:
            raise IommuError(E.ENOSPC, f"The daemon already serves {len(self._by_token)} "
                             f"sessions, its limit.", limit=self.max_sessions)
        lease = lease_seconds or self.lease_default
        lease = max(1, min(lease, self.lease_max))
        session = Session(secrets.token_urlsafe(32), client_name[:128], lease,
                          self.max_contexts, self.max_objects)
        self._by_token[session.token] = session
        return session

    def lookup(self, token: str | None) -> Session:
        """The live session for `token`, renewed; ESRCH for a missing or
        unknown token (the same answer either way)."""
        session = self._by_token.get(token) if token else None
        if session is None:
            raise IommuError(E.ESRCH, "No live session matches the request's token; open one "
                             "with OpenSession and send its token as 'iommud-session' metadata.")
        session.touch()
        return session

    def close(self, session: Session) -> int:
        self._by_token.pop(session.token, None)
        return session.close()

    def reap(self, now: float | None = None) -> list[Session]:
        """Close every session whose lease ran out; returns them."""
        now = time.monotonic() if now is None else now
        expired = [s for s in self._by_token.values() if s.expired(now)]
        for session in expired:
            self.close(session)
        return expired

    def close_all(self) -> None:
        for session in list(self._by_token.values()):
            self.close(session)
