"""The one exception type of the client library.

The daemon attaches a google.rpc.ErrorInfo to every error: reason is the errno
name, metadata["errno"] the number, and the other metadata keys name the ids
and 0x-hex addresses involved. IommudError exposes them as attributes so that
callers branch on `.errno`, exactly as they would on an ioctl's OSError.
"""
from __future__ import annotations

import errno as _errno
from typing import TYPE_CHECKING, cast

from google.rpc import error_details_pb2, status_pb2

from iommud_wire import errnos, metadata

if TYPE_CHECKING:
    from collections.abc import Iterable

    import grpc

#: The ErrorInfo domain of every iommud error.
ERROR_DOMAIN = metadata.ERROR_DOMAIN

_STATUS_DETAILS_KEY = metadata.STATUS_DETAILS

#: The errno's name, spelled as the kernel's iommufd and VFIO code spell it.
errno_name_of = errnos.name_of


class IommudError(OSError):
    """A failed iommud call.

    Attributes:
        errno: the errno number (for example 17).
        errno_name: the errno name (for example "EEXIST").
        code: the gRPC status code of the reply.
        message: the daemon's sentence describing the failure.
        metadata: the ErrorInfo metadata (ids and hex addresses involved).
    """

    def __init__(
        self,
        errno_value: int,
        message: str,
        *,
        errno_name: str | None = None,
        code: grpc.StatusCode | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(errno_value, message)
        self.errno_name: str = errno_name or errno_name_of(errno_value)
        self.code = code
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        return f"{self.errno_name}: {self.message}"

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError) -> IommudError:
        """Build the error from a failed call, reading its ErrorInfo detail.

        A status without ErrorInfo (a transport failure, or a server that is
        not iommud) is reported as EIO so that callers still get one type.
        """
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        for key, value in cast("Iterable[tuple[str, bytes]]", trailers or ()):
            if key != _STATUS_DETAILS_KEY:
                continue
            status = status_pb2.Status.FromString(value)
            for any_detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if any_detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                    meta = dict(info.metadata)
                    number = int(meta.get("errno", _errno.__dict__.get(info.reason, _errno.EIO)))
                    return cls(number, status.message or details or "", errno_name=info.reason,
                               code=code, metadata=meta)
        name = code.name if code is not None else "UNKNOWN"
        return cls(_errno.EIO, f"transport error {name}: {details}", errno_name="EIO", code=code)
