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
    from collections.abc import Iterator

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


class Accounting:
    """The bytes mapped by every IOAS of one session. IOASes register at
    creation; a destroyed IOAS has unmapped everything and drops out when
    freed, so the sum is always the session's live mappings."""

    def __init__(self, max_mapped_bytes: int) -> None:
        self.max_mapped_bytes = max_mapped_bytes
        self._ioas: weakref.WeakSet[Ioas] = weakref.WeakSet()

    def __getstate__(self) -> dict[str, object]:
        """For a snapshot: the IOASes themselves (a WeakSet does not pickle)."""
        return {"max_mapped_bytes": self.max_mapped_bytes, "ioas": list(self._ioas)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_mapped_bytes = state["max_mapped_bytes"]
        self._ioas = weakref.WeakSet(state["ioas"])

    def track(self, ioas: Ioas) -> None:
        self._ioas.add(ioas)

    @property
    def num_areas(self) -> int:
        return sum(ioas.num_areas for ioas in self._ioas)

    @property
    def mapped_bytes(self) -> int:
        return sum(ioas.mapped_bytes for ioas in self._ioas)

    def charge(self, length: int) -> None:
        """ENOMEM if mapping `length` more bytes would pass the limit.
        Checked before the area is made, so a refusal changes nothing."""
        if not enforced():
            return
        now = self.mapped_bytes
        if now + length > self.max_mapped_bytes:
            raise IommuError(E.ENOMEM, f"The session maps {now:#x} bytes; {length:#x} more would "
                             f"pass its limit of {self.max_mapped_bytes:#x}.",
                             mapped_bytes=now, length=length, limit=self.max_mapped_bytes)
