"""Per-session limits and the session's mapped-bytes account.

Every limit has a safe default, is configurable, and is reported by GetInfo.
Going over one fails with the kernel's errno for that resource and changes
nothing: fds (contexts, device, group and container fds) EMFILE as
RLIMIT_NOFILE; objects per context and areas per IOAS ENOSPC, as type1's
dma_entry_limit; mapped bytes per session ENOMEM, the analogue of the
RLIMIT_MEMLOCK accounting of pinned pages (iommufd charges pages when it pins
them; iommud never pins, so it charges the bytes an area maps, at map time).
"""
from __future__ import annotations

import contextlib
import errno as E
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iommud.errors import IommuError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from iommud.ioas import Ioas


#: Journal replay applies what was acknowledged under the limits of its day:
#: a restart with lowered limits keeps every object (as a kernel rlimit
#: lowered under a running process does) and applies them to new requests.
_suspended = 0


def enforced() -> bool:
    return not _suspended


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Limits are not checked inside (journal replay only)."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


@dataclass(frozen=True)
class Limits:
    max_contexts_per_session: int = 64
    max_fds_per_session: int = 1024
    max_objects_per_context: int = 65536
    max_areas_per_ioas: int = 1 << 20
    max_mapped_bytes_per_session: int = 1 << 40
    max_memory_bytes_per_session: int = 256 << 20


#: What the memory budget charges ahead for one new area: its place in the
#: area map, its dirty bits' share, and its entry in one attached domain
#: (measured: about 35 + 8 + 90 bytes; rust_core's memory_bytes is the truth
#: once the area exists).
AREA_BYTES = 160
#: For one object (an IOAS, HWPT, device binding, ...) and for one open fd:
#: the Python objects behind it, generously.
OBJECT_BYTES = 4096
FD_BYTES = 1024


class Accounting:
    """The bytes mapped by every IOAS of one session. IOASes register at
    creation; a destroyed IOAS has unmapped everything and drops out when
    freed, so the sum is always the session's live mappings."""

    def __init__(self, max_mapped_bytes: int, max_memory: int = Limits.max_memory_bytes_per_session
                 ) -> None:
        self.max_mapped_bytes = max_mapped_bytes
        self.max_memory = max_memory
        self._ioas: weakref.WeakSet[Ioas] = weakref.WeakSet()
        #: The rest of the session's memory (objects, fds), from its owner.
        self.extra: Callable[[], int] | None = None

    def __getstate__(self) -> dict[str, object]:
        """For a snapshot: the IOASes themselves (a WeakSet does not pickle);
        the owner wires `extra` again."""
        return {"max_mapped_bytes": self.max_mapped_bytes, "max_memory": self.max_memory,
                "ioas": list(self._ioas)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_mapped_bytes = state["max_mapped_bytes"]
        self.max_memory = state["max_memory"]
        self._ioas = weakref.WeakSet(state["ioas"])
        self.extra = None

    def track(self, ioas: Ioas) -> None:
        self._ioas.add(ioas)

    @property
    def num_areas(self) -> int:
        return sum(ioas.num_areas for ioas in self._ioas)

    @property
    def mapped_bytes(self) -> int:
        return sum(ioas.mapped_bytes for ioas in self._ioas)

    @property
    def memory_bytes(self) -> int:
        """The daemon memory the session holds: its tables with their
        domains and dirty state (rust_core's count), its objects and fds."""
        return (sum(ioas.iopt.memory_bytes for ioas in self._ioas)
                + (self.extra() if self.extra is not None else 0))

    def charge(self, length: int, areas: int = 1) -> None:
        """ENOMEM if mapping `length` more bytes would pass the mapped-bytes
        limit, or `areas` more areas the memory budget. Checked before the
        areas are made, so a refusal changes nothing."""
        if not enforced():
            return
        now = self.mapped_bytes
        if now + length > self.max_mapped_bytes:
            raise IommuError(E.ENOMEM, f"The session maps {now:#x} bytes; {length:#x} more would "
                             f"pass its limit of {self.max_mapped_bytes:#x}.",
                             mapped_bytes=now, length=length, limit=self.max_mapped_bytes)
        self.charge_memory(areas * AREA_BYTES, f"{areas:#x} more areas")

    def charge_memory(self, need: int, what: str) -> None:
        """ENOMEM if `need` more bytes of state would pass the session's
        memory budget (the kernel's answer when an allocation fails)."""
        if not enforced():
            return
        held = self.memory_bytes
        if held + need > self.max_memory:
            raise IommuError(E.ENOMEM, f"The session holds about {held:#x} bytes of daemon "
                             f"memory; {what} would pass its budget of {self.max_memory:#x}.",
                             memory_bytes=held, limit=self.max_memory)
