"""errno is the error currency of iommud; this module is the one place that
turns it into a gRPC status.

Inside the daemon every failure is an IommuError (or an OSError raised by the
native core, which carries the same errno). At the RPC boundary to_status()
picks the status code from ERRNO_STATUS and attaches a google.rpc.ErrorInfo:
reason = errno name, domain = "iommud.v1", metadata = the errno number plus the
ids (decimal) and addresses (0x-hex) involved. docs/errors.md is this table in
prose; tests/test_errors.py keeps the two in step.
"""
from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from iommud_wire.errnos import name_of as errno_name_of
from iommud_wire.metadata import ERROR_DOMAIN

if TYPE_CHECKING:
    from collections.abc import Mapping

#: errno -> gRPC status. Every errno iommud raises must be listed; an errno
#: missing here is a bug and is reported as INTERNAL so that tests catch it.
ERRNO_STATUS: dict[int, grpc.StatusCode] = {
    E.EPERM: grpc.StatusCode.PERMISSION_DENIED,
    E.ENOENT: grpc.StatusCode.NOT_FOUND,
    E.ESRCH: grpc.StatusCode.UNAUTHENTICATED,
    E.EIO: grpc.StatusCode.FAILED_PRECONDITION,
    E.E2BIG: grpc.StatusCode.INVALID_ARGUMENT,
    E.EBADF: grpc.StatusCode.NOT_FOUND,
    E.ENOMEM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.ENOBUFS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.EACCES: grpc.StatusCode.PERMISSION_DENIED,
    E.EFAULT: grpc.StatusCode.INVALID_ARGUMENT,
    E.EBUSY: grpc.StatusCode.FAILED_PRECONDITION,
    E.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
    E.ENODEV: grpc.StatusCode.NOT_FOUND,
    E.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
    E.EMFILE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.ENOTTY: grpc.StatusCode.UNIMPLEMENTED,
    E.ENOSPC: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.ESPIPE: grpc.StatusCode.INVALID_ARGUMENT,
    E.EDEADLK: grpc.StatusCode.ABORTED,
    E.EBADFD: grpc.StatusCode.INVALID_ARGUMENT,
    E.EMSGSIZE: grpc.StatusCode.OUT_OF_RANGE,
    E.EOPNOTSUPP: grpc.StatusCode.UNIMPLEMENTED,
    E.EADDRINUSE: grpc.StatusCode.FAILED_PRECONDITION,
    E.EOVERFLOW: grpc.StatusCode.OUT_OF_RANGE,
    E.ETIMEDOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    E.ESHUTDOWN: grpc.StatusCode.UNAVAILABLE,
    E.EBADE: grpc.StatusCode.FAILED_PRECONDITION,
}

#: ErrorInfo travels in the trailers, which gRPC bounds (8 KiB by default):
#: messages and metadata values are cut to these lengths, so that the
#: errno always reaches the client, whatever a request echoed.
MESSAGE_MAX = 1024
VALUE_MAX = 256


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."

#: Request fields reported in ErrorInfo metadata and logs: ids in decimal,
#: addresses and sizes in 0x-hex.
ID_FIELDS = ("iommufd", "id", "ioas_id", "dst_ioas_id", "src_ioas_id", "dev_id", "hwpt_id",
             "pt_id", "pasid", "flags")
ADDR_FIELDS = ("iova", "length", "user_va", "dst_iova", "src_iova")


class IommuError(Exception):
    """A failure with an errno, a sentence, and the ids/addresses involved.

    `details` values are rendered into ErrorInfo metadata: ints named like
    an address field are 0x-hex, other ints decimal, anything else str().
    """

    def __init__(self, errno_value: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.errno = errno_value
        self.message = message
        self.details = details

    @property
    def name(self) -> str:
        return errno_name_of(self.errno)

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    @classmethod
    def from_oserror(cls, exc: OSError) -> IommuError:
        """Adopt an OSError from the native core (errno, message)."""
        message = exc.strerror if exc.strerror else str(exc)
        return cls(exc.errno if exc.errno is not None else E.EIO, message)


def check_reserved(reserved: int) -> None:
    """A reserved field must be zero: EOPNOTSUPP otherwise, as the kernel's
    iommufd handlers answer a non-zero __reserved."""
    if reserved:
        raise IommuError(E.EOPNOTSUPP, f"The reserved field must be zero, not {reserved:#x}.",
                         reserved=reserved)


def render_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and key in ADDR_FIELDS:
        return hex(value)
    return str(value)


def request_details(request: Any) -> dict[str, str]:
    """The ids and addresses a request names, rendered for metadata/logs."""
    out: dict[str, str] = {}
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:
        return out
    for field in descriptor.fields:
        if field.name in ID_FIELDS or field.name in ADDR_FIELDS:
            value = getattr(request, field.name)
            if value or field.name in ("iova", "length"):
                out[field.name] = render_value(field.name, value)
    return out


def status_code(errno_value: int) -> grpc.StatusCode:
    return ERRNO_STATUS.get(errno_value, grpc.StatusCode.INTERNAL)


def to_status(err: IommuError, context_details: Mapping[str, str] | None = None) -> grpc.Status:
    """The gRPC status (with google.rpc.Status details) for an IommuError."""
    code = status_code(err.errno)
    metadata = dict(context_details or {})
    metadata.update({k: render_value(k, v) for k, v in err.details.items()})
    metadata = {_cut(k, 64): _cut(v, VALUE_MAX) for k, v in list(metadata.items())[:32]}
    metadata["errno"] = str(err.errno)
    info = error_details_pb2.ErrorInfo(reason=err.name, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name),
                               message=_cut(err.message, MESSAGE_MAX), details=[detail])
    return rpc_status.to_status(status)
