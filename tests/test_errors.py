"""The errno -> gRPC status table in docs/errors.md is the one in the code,
and the mapping function attaches the ErrorInfo the brief promises."""
from __future__ import annotations

import errno as E
import pathlib
import re

import grpc
from google.rpc import error_details_pb2, status_pb2

from iommud.errors import ERRNO_STATUS, IommuError, status_code, to_status
from iommud_client.errors import ERROR_DOMAIN, IommudError, errno_name_of

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def _doc_rows() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*(E[A-Z0-9]+)\s*\|\s*(\d+)\s*\|\s*([A-Z_]+)\s*\|", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def test_docs_table_matches_code() -> None:
    rows = _doc_rows()
    code = {errno_name_of(n): (n, s.name) for n, s in ERRNO_STATUS.items()}
    assert rows == code


def test_kernel_spelling_of_errno_names() -> None:
    assert errno_name_of(E.EOPNOTSUPP) == "EOPNOTSUPP"
    assert errno_name_of(E.EDEADLK) == "EDEADLK"
    assert errno_name_of(E.EEXIST) == "EEXIST"


def test_unlisted_errno_is_internal_so_tests_notice() -> None:
    assert status_code(E.EXDEV) is grpc.StatusCode.INTERNAL


def test_to_status_carries_error_info_with_hex_addresses() -> None:
    err = IommuError(E.EEXIST, "The range overlaps an area.", iova=0x1000, length=0x2000)
    status = to_status(err, {"ioas_id": "1"})
    assert status.code is grpc.StatusCode.ALREADY_EXISTS
    (_key, blob), = [(k, v) for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    proto = status_pb2.Status.FromString(blob)
    info = error_details_pb2.ErrorInfo()
    assert proto.details[0].Unpack(info)
    assert info.reason == "EEXIST" and info.domain == ERROR_DOMAIN
    assert dict(info.metadata) == {"errno": "17", "iova": "0x1000", "length": "0x2000",
                                   "ioas_id": "1"}
    assert proto.message == "The range overlaps an area."


def test_oserror_from_core_keeps_errno() -> None:
    err = IommuError.from_oserror(OSError(E.ENOENT, "No area maps IOVA 0x1000."))
    assert err.errno == E.ENOENT and err.name == "ENOENT"
    assert err.message == "No area maps IOVA 0x1000."


def test_client_error_without_error_info_is_eio() -> None:
    class FakeRpcError(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection refused"

        def trailing_metadata(self):
            return ()

    err = IommudError.from_rpc_error(FakeRpcError())
    assert err.errno == E.EIO and err.errno_name == "EIO"
    assert err.code is grpc.StatusCode.UNAVAILABLE
