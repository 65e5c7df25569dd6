"""The op table is the one list of operations: every RPC of the proto is
exactly one row, and each row's attributes agree with its messages."""
from __future__ import annotations

import pathlib

from iommud.ops import ROWS, TABLE, Fd, Needs
from iommud_wire import pb

SERVICE = pb.DESCRIPTOR.services_by_name["IommuService"]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_rpc_is_exactly_one_row() -> None:
    names = [op.name for op in ROWS]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(m.name for m in SERVICE.methods)


def test_rows_name_their_messages_and_stream_kind() -> None:
    for method in SERVICE.methods:
        op = TABLE[method.name]
        assert op.request.DESCRIPTOR is method.input_type, op.name
        assert op.reply.DESCRIPTOR is method.output_type, op.name
        assert op.stream == method.server_streaming, op.name


def test_fd_rows_carry_their_fd_field() -> None:
    for op in ROWS:
        if op.fd is not Fd.NONE:
            assert op.fd.value in op.request.DESCRIPTOR.fields_by_name, op.name
            assert op.needs is Needs.SESSION, op.name


def test_only_host_changing_rows_and_the_admin_view_need_an_admin() -> None:
    admin = {op.name for op in ROWS if op.admin}
    assert admin == {"BindHostDriver", "UnbindHostDriver", "HotAddDevice", "HotRemoveDevice",
                     "DebugAdvanceClock", "AdminListSessions"}


def test_debug_rows_name_a_config_switch() -> None:
    from iommud.config import Config

    for op in ROWS:
        if op.debug:
            assert getattr(Config(), op.debug) == 0, op.name     # off by default
    assert {op.name for op in ROWS if op.debug == "debug_selftest"} == {
        op.name for op in ROWS if op.name.startswith("Test")}


def test_queries_and_streams_are_not_journaled() -> None:
    for op in ROWS:
        if op.stream or op.name.startswith(("List", "Get", "Translate", "Watch")):
            assert not op.journal, op.name


def test_the_docs_list_every_operation() -> None:
    text = (ROOT / "docs" / "object-model.md").read_text()
    cells = {cell.strip() for line in text.splitlines() if line.startswith("| ")
             for cell in line.split("|")[1].split(" / ")}
    missing = [op.name for op in ROWS if op.name not in cells]
    assert missing == []
