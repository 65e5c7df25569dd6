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

The event loop takes a snapshot (server.Daemon.maybe_snapshot) and must not
stall on it. Two things keep it short. A native state is the bytes the last
snapshot wrote for that table or domain when its generation (the write
locks taken on it, rust_core) has not moved since: a VM's 1M-area map,
written once, costs later snapshots nothing. And native states travel out
of band (pickle protocol 5 buffers), so the pickle does not copy them: the
body is a frame of the pickle and the buffers, which the journal writes
and checksums off the loop. Measured at 1M areas, the loop's share fell
from 55.6 ms to the pickle of the object graph.

Body layout: b"ISN2", u32 buffer count, u64 pickle length, u64 length per
buffer, then the pickle and the buffers. A body without the magic is one
plain pickle, as iommud wrote them before, and still loads.
"""
from __future__ import annotations

import copyreg
import io
import pickle
import struct
import weakref
from typing import TYPE_CHECKING, Any

from iommud import _core, files, hw_pagetable, selftest
from iommud.hw_pagetable import HwptPaging
from iommud.ioas import Ioas
from iommud.journal import JournalError

if TYPE_CHECKING:
    from collections.abc import Callable

    from iommud.call import Runtime

VERSION = 1

#: The native states the last snapshot wrote, by object id: (a weak
#: reference to the object, which tells a reused id apart without keeping a
#: destroyed table alive, its generation then, its state). The states are
#: held until the next snapshot: memory the size of the last one's native
#: part, which buys a static table's snapshot for nothing.
_written: dict[int, tuple[weakref.ref[Any], int, bytes]] = {}
#: Those the snapshot being taken writes; the next snapshot's _written.
_taking: dict[int, tuple[weakref.ref[Any], int, bytes]] | None = None


#: States encoded ahead of a snapshot, off the loop (`prewarm`), in the
#: same form: each is the object's state at the generation it names.
_prewarmed: dict[int, tuple[weakref.ref[Any], int, bytes]] = {}
#: Native objects at least this large are encoded ahead (server.py).
PREWARM_ENTRIES = 1 << 14


def _cached(obj: Any, generation: int) -> tuple[weakref.ref[Any], bytes] | None:
    for cache in (_written, _prewarmed):
        hit = cache.get(id(obj))
        if hit is not None and hit[0]() is obj and hit[1] == generation:
            return hit[0], hit[2]
    return None


def _state_of(obj: Any, encode: Callable[[Any], bytes]) -> pickle.PickleBuffer:
    """`obj`'s state: the last snapshot's (or a prewarm's) bytes while its
    generation has not moved, else encoded now."""
    generation = obj.generation
    hit = _cached(obj, generation)
    if hit is not None:
        ref, state = hit
    else:
        ref, state = weakref.ref(obj), encode(obj)
    if _taking is not None:
        _taking[id(obj)] = (ref, generation, state)
    return pickle.PickleBuffer(state)


copyreg.pickle(_core.IoPagetable,
               lambda t: (_core.iopt_from_state, (_state_of(t, _core.iopt_state),)))
copyreg.pickle(_core.Domain,
               lambda d: (_core.domain_from_state, (_state_of(d, _core.domain_state),)))
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


def stale(rt: Runtime) -> list[tuple[Any, int]]:
    """The large native tables and domains the next snapshot would have to
    encode (their generation moved since they were last encoded), each
    with its generation now."""
    out: list[tuple[Any, int]] = []
    for sess in rt.sessions:
        for ctx in sess.reachable_contexts():
            for obj in ctx.object_list():
                native: _core.IoPagetable | _core.Domain
                if isinstance(obj, Ioas):
                    native, size = obj.iopt, obj.iopt.num_areas
                elif isinstance(obj, HwptPaging):
                    native, size = obj.domain, obj.domain.num_entries
                else:
                    continue
                generation = native.generation
                if size >= PREWARM_ENTRIES and _cached(native, generation) is None:
                    out.append((native, generation))
    return out


def prewarm(items: list[tuple[Any, int]]) -> int:
    """Encode tables and domains for the next snapshot; runs off the loop,
    while calls go on. Each comes with the generation `stale` saw, and its
    state is kept only when the generation is that one before and after
    encoding: no write lock was taken since, and the encoding ran under the
    read lock, so the bytes are the state at that generation (a generation
    moves when a write lock is taken, before the change). Returns how many
    were kept."""
    kept = 0
    for obj, generation in items:
        if obj.generation != generation:
            continue
        encode = _core.iopt_state if isinstance(obj, _core.IoPagetable) else _core.domain_state
        state = encode(obj)
        if obj.generation == generation:
            _prewarmed[id(obj)] = (weakref.ref(obj), generation, state)
            kept += 1
    return kept


_MAGIC = b"ISN2"
_HEAD = struct.Struct("<4sIQ")
_LEN = struct.Struct("<Q")


def dump(rt: Runtime) -> list[bytes | memoryview]:
    """The whole state as the parts of one body (protocol 5; the layout is
    in the module's docstring). The parts are immutable bytes, so that the
    journal may write them off the loop while the state moves on."""
    global _written, _taking
    state = {
        "version": VERSION,
        "host": rt.host,
        "sessions": list(rt.sessions),
        "counters": {"resv_owner": hw_pagetable.resv_owner_next(),
                     "mock_name": selftest.mock_name_next(),
                     "file_slots": files.grpc_slots_state()},
    }
    buffers: list[pickle.PickleBuffer] = []
    _taking = {}
    try:
        main = pickle.dumps(state, protocol=5, buffer_callback=buffers.append)
        taken = _taking
    finally:
        _taking = None
    _written = taken            # what the next snapshot may reuse; the rest goes
    _prewarmed.clear()
    views = [buf.raw() for buf in buffers]
    head = _HEAD.pack(_MAGIC, len(views), len(main)) + b"".join(
        _LEN.pack(len(view)) for view in views)
    return [head, main, *views]


def _split(data: bytes) -> tuple[bytes | memoryview, list[bytes] | None]:
    """The pickle and its buffers of a body; a body without the magic is a
    plain pickle (as iommud wrote them before)."""
    if data[:4] != _MAGIC:
        return data, None
    view = memoryview(data)
    try:
        _, count, main_len = _HEAD.unpack_from(view)
        at = _HEAD.size
        lengths = [_LEN.unpack_from(view, at + 8 * k)[0] for k in range(count)]
    except struct.error as exc:
        raise JournalError(f"the snapshot's frame is cut short ({exc})") from exc
    at += 8 * count
    if at + main_len + sum(lengths) != len(data):
        raise JournalError(f"the snapshot's frame names {at + main_len + sum(lengths):#x} bytes, "
                           f"the body has {len(data):#x}")
    main = view[at:at + main_len]
    at += main_len
    buffers = []
    for length in lengths:
        buffers.append(bytes(view[at:at + length]))     # the core's from_state takes bytes
        at += length
    return main, buffers


def load(rt: Runtime, data: bytes) -> int:
    """Make the snapshot's host and sessions the runtime's; returns how many
    sessions came back. Runs before the daemon serves, so nothing holds the
    host the runtime started with."""
    try:
        main, buffers = _split(data)
        state = _Unpickler(io.BytesIO(main), buffers=buffers).load()
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
