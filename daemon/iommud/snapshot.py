"""Snapshots of the whole daemon state, for the journal: what makes a
restart's cost follow the live state instead of the history.

A snapshot is the object graph every session reaches (fd tables, contexts,
IOAS, HWPTs and their domains, devices, containers, groups, accesses, mock
devices) and the host (drivers, groups, ownership), pickled, plus the
counters that keep replay deterministic. rust_core's tables, domains and
type1 state pickle as their own compact state (copyreg reductions below); a
table's domains are attached again after loading, from the HWPTs that hold
them, without refilling (their entries and dirty state are in the snapshot).

Loading trusts no class the daemon does not own: the unpickler resolves
only iommud's classes and a few plain builtins, so a tampered file cannot
name arbitrary code (it still fails its checksum first, journal.py).
"""
from __future__ import annotations

import copyreg
import io
import pickle
from typing import TYPE_CHECKING, Any

from iommud import _core, files, hw_pagetable, selftest
from iommud.hw_pagetable import HwptPaging
from iommud.journal import JournalError

if TYPE_CHECKING:
    from iommud.call import Runtime

VERSION = 1

copyreg.pickle(_core.IoPagetable,
               lambda t: (_core.iopt_from_state, (_core.iopt_state(t),)))
copyreg.pickle(_core.Domain,
               lambda d: (_core.domain_from_state, (_core.domain_state(d),)))
copyreg.pickle(_core.Type1Dma,
               lambda t: (_core.type1_from_state, (_core.type1_state(t),)))

_BUILTINS = {"set", "frozenset", "bytearray", "bytes", "dict", "list", "tuple", "int", "str",
             "float", "bool", "complex", "slice", "range"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module in ("iommud", "copyreg") or module.startswith("iommud."):
            if module == "copyreg" and name not in ("_reconstructor", "__newobj__"):
                raise pickle.UnpicklingError(f"refusing copyreg.{name}")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a snapshot may not name {module}.{name}")


def dump(rt: Runtime) -> bytes:
    """The whole state as bytes (protocol 5)."""
    state = {
        "version": VERSION,
        "host": rt.host,
        "sessions": list(rt.sessions),
        "counters": {"resv_owner": hw_pagetable.resv_owner_next(),
                     "mock_name": selftest.mock_name_next(),
                     "file_slots": files.grpc_slots_state()},
    }
    return pickle.dumps(state, protocol=5)


def load(rt: Runtime, data: bytes) -> int:
    """Make the snapshot's host and sessions the runtime's; returns how many
    sessions came back. Runs before the daemon serves, so nothing holds the
    host the runtime started with."""
    try:
        state = _Unpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise JournalError(f"the snapshot does not load: {exc}") from exc
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise JournalError("the snapshot was written by another iommud version")
    rt.host = rt.sessions.host = state["host"]
    registry = rt.sessions
    for sess in state["sessions"]:
        registry.adopt(sess)
        for ctx in sess.reachable_contexts():
            for obj in ctx.objects():
                if isinstance(obj, HwptPaging) and obj.added:
                    _core.iopt_attach_filled(obj.ioas.iopt, obj.domain)
    hw_pagetable.resv_owner_continue(state["counters"]["resv_owner"])
    selftest.mock_name_continue(state["counters"]["mock_name"])
    files.grpc_slots_continue(state["counters"].get("file_slots"))
    return len(state["sessions"])
