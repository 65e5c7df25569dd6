"""errno names as the kernel's iommufd and VFIO code spell them.

Every iommud error carries its errno name as the ErrorInfo reason; daemon and
clients derive it here so that both spell it the same way.
"""
from __future__ import annotations

import errno as _errno

# Linux has two names for these numbers; the kernel sources use these.
_PREFERRED = {_errno.EOPNOTSUPP: "EOPNOTSUPP", _errno.EDEADLK: "EDEADLK"}


def name_of(number: int) -> str:
    """The errno's name, e.g. 17 -> "EEXIST"; unknown numbers read "E<n>"."""
    return _PREFERRED.get(number) or _errno.errorcode.get(number, f"E{number}")


def number_of(name: str) -> int | None:
    """The errno number for a name, or None if Python's errno has no such name."""
    value = getattr(_errno, name, None)
    return value if isinstance(value, int) else None
