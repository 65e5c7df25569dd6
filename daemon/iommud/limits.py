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

import errno as E
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iommud.errors import IommuError

if TYPE_CHECKING:
    from iommud.ioas import Ioas


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

    def track(self, ioas: Ioas) -> None:
        self._ioas.add(ioas)

    @property
    def mapped_bytes(self) -> int:
        return sum(ioas.mapped_bytes for ioas in self._ioas)

    def charge(self, length: int) -> None:
        """ENOMEM if mapping `length` more bytes would pass the limit.
        Checked before the area is made, so a refusal changes nothing."""
        now = self.mapped_bytes
        if now + length > self.max_mapped_bytes:
            raise IommuError(E.ENOMEM, f"The session maps {now:#x} bytes; {length:#x} more would "
                             f"pass its limit of {self.max_mapped_bytes:#x}.",
                             mapped_bytes=now, length=length, limit=self.max_mapped_bytes)
