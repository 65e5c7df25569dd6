"""What a handler is given: the per-call `Call`, and the daemon `Runtime` it
reaches through it.

Handlers live beside their objects (ioas.py, device.py, ...) and have the
signature `handler(call, request) -> reply`, where `request` and `reply` are
the operation's decoded messages. The dispatcher (dispatch.py) builds the
Call after the framing every operation shares: access checks, the session,
and the fd the operation acts on (`call.target`, by the op table's fd kind).
A second transport builds the same Call and calls the same handlers.

This module imports the object modules for type hints only, so that every
handler module can import it without a cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iommud.access import AccessPolicy, Caller
    from iommud.config import Config
    from iommud.context import IommufdContext
    from iommud.device import DeviceFd
    from iommud.host import Host
    from iommud.journal import Journal
    from iommud.session import Session, SessionRegistry
    from iommud.vfio_group import GroupFd


@dataclass(eq=False)
class Runtime:
    """The daemon's shared state, one per daemon. Every mutation runs on
    the event loop thread, so none of it needs a lock."""

    config: Config
    host: Host
    sessions: SessionRegistry
    access: AccessPolicy
    journal: Journal | None = None
    #: The UNIX socket's peer gate (rust_core), once the daemon listens.
    gate: Any = None
    #: Seconds added to the monotonic clock by the debug clock (tests only).
    clock_offset: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Call:
    """One call of one operation, as its handler sees it."""

    rt: Runtime
    caller: Caller
    #: The caller's session; None only for operations that need none.
    session: Session | None
    #: The fd object the operation acts on (its row's fd kind), or None.
    target: Any
    #: The operation's name (the RPC method, e.g. "IoasMap").
    method: str
    #: The token OpenSession must give its session: chosen by the dispatcher
    #: before the call (so the write-ahead journal row holds it), or the
    #: journaled one during replay.
    token: str | None = None
    #: True while the journal is replayed.
    replaying: bool = False

    @property
    def sess(self) -> Session:
        """The session, for operations whose row requires one."""
        assert self.session is not None, f"{self.method} runs without a session"
        return self.session

    @property
    def ctx(self) -> IommufdContext:
        """The iommufd context (or container) the call acts on."""
        return self.target  # type: ignore[no-any-return]

    @property
    def device(self) -> DeviceFd:
        """The VFIO device fd the call acts on."""
        return self.target  # type: ignore[no-any-return]

    @property
    def group(self) -> GroupFd:
        """The VFIO group fd the call acts on."""
        return self.target  # type: ignore[no-any-return]
