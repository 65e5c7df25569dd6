"""Snapshots that cost the event loop little (snapshot.py, journal.py): a
native table or domain whose generation has not moved is not encoded again,
native states travel out of band in a framed body, the body of an earlier
iommud still loads, and the files a snapshot replaces are released by a
thread of their own."""
from __future__ import annotations

import array
import io
import os
import pickle
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from iommud import _core, snapshot
from iommud.journal import Journal, JournalError

if TYPE_CHECKING:
    import pathlib

PAGE = 4096
RW = _core.IOMMU_IOAS_MAP_READABLE | _core.IOMMU_IOAS_MAP_WRITEABLE
UVA = 0x7F00_0000_0000


def table(areas: int) -> _core.IoPagetable:
    t = _core.IoPagetable()
    uvas = array.array("Q", (UVA + k * 2 * PAGE for k in range(areas)))
    t.map_batch(RW, uvas, array.array("Q", [PAGE] * areas), array.array("Q", [0] * areas))
    return t


def runtime(host: object, *sessions: object) -> SimpleNamespace:
    """What snapshot.dump reads of a runtime: the host and the sessions."""
    return SimpleNamespace(host=host, sessions=list(sessions))


def loads(body: bytes) -> dict:
    main, buffers = snapshot._split(body)
    return snapshot._Unpickler(io.BytesIO(main), buffers=buffers).load()


def test_generation_moves_with_every_change_and_only_then() -> None:
    t = table(4)
    g = t.generation
    t.translate(t.areas()[0][0])
    _core.iopt_state(t)
    assert (t.num_areas, t.generation) == (4, g)            # reads change nothing
    iova = t.map(RW, UVA + 0x100000, PAGE, 0)
    assert t.generation > g
    g = t.generation
    t.unmap(iova, PAGE)
    assert t.generation > g
    d = _core.Domain(PAGE, 0, (1 << 48) - 1)
    dg = d.generation
    assert (d.num_entries, d.generation) == (0, dg)
    t.add_domain(d)                                          # fills it: a change
    assert d.num_entries == 4 and d.generation > dg


def test_an_unchanged_table_is_not_encoded_again_and_a_changed_one_is() -> None:
    big, small = table(2048), table(3)
    first = snapshot.dump(runtime(big, small))
    again = snapshot.dump(runtime(big, small))
    # [frame, pickle, big's state, small's state]: the same bytes objects,
    # not new encodings of the same state.
    assert len(first) == len(again) == 4
    assert again[2].obj is first[2].obj and again[3].obj is first[3].obj
    small.map(RW, UVA + 0x1000_0000, PAGE, 0)
    moved = snapshot.dump(runtime(big, small))
    assert moved[2].obj is first[2].obj
    assert moved[3].obj is not first[3].obj
    state = loads(b"".join(moved))
    assert state["host"].areas() == big.areas()
    assert state["sessions"][0].areas() == small.areas()
    assert state["version"] == snapshot.VERSION


def test_the_cache_keeps_no_table_alive_and_forgets_it_at_the_next_snapshot() -> None:
    t = table(8)
    snapshot.dump(runtime(t))
    [(ref, _, _)] = snapshot._written.values()
    assert ref() is t
    del t
    assert ref() is None                     # a destroyed table is freed at once
    snapshot.dump(runtime(None))
    assert snapshot._written == {}


def test_a_plain_pickle_from_an_earlier_iommud_still_loads() -> None:
    t = table(5)
    # What dump wrote before the framed body: one pickle, states in band.
    body = pickle.dumps({"version": snapshot.VERSION, "host": t, "sessions": []}, protocol=5)
    assert body[:4] != b"ISN2"
    assert loads(body)["host"].areas() == t.areas()


@pytest.mark.parametrize("keep", [-1, -9, 12])
def test_a_frame_that_does_not_add_up_is_refused(keep: int) -> None:
    """A body short of its last byte, of nine, or cut inside its frame."""
    body = b"".join(snapshot.dump(runtime(table(3))))
    with pytest.raises(JournalError, match="the snapshot's frame"):
        snapshot._split(body[:keep])


def _deleted_fds() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.endswith(" (deleted)"):
            out.append(target)
    return out


def test_the_files_a_snapshot_replaces_are_released(tmp_path: pathlib.Path) -> None:
    """finish_snapshot hands the replaced snapshot and log to a closing
    thread: once it is done, no fd of this process holds a deleted file,
    and the journal reads back what the parts said."""
    path = str(tmp_path / "j")
    j = Journal(path)
    j.bind(Journal.fingerprint(topology="default"))
    before = _deleted_fds()
    for n in range(2):
        j.record("tok", "IoasMap", bytes([n]))
        pending = j.begin_snapshot([b"head-", memoryview(b"state-%d" % n)])
        assert pending.size == len(b"head-state-0")
        pending.write()
        j.finish_snapshot(pending)
    for thread in threading.enumerate():
        if thread.name == "iommud-journal-close":
            thread.join()
    assert _deleted_fds() == before
    assert j.load_snapshot() == b"head-state-1"
    j.close()



def test_a_prewarmed_state_is_what_the_snapshot_writes_while_it_is_current() -> None:
    """prewarm encodes off the loop; the snapshot then takes those very
    bytes, unless the table changed since, when it encodes it again."""
    kept_table, moved_table = table(64), table(64)
    items = [(kept_table, kept_table.generation), (moved_table, moved_table.generation)]
    assert snapshot.prewarm(items) == 2
    kept_state = snapshot._prewarmed[id(kept_table)][2]
    stale_state = snapshot._prewarmed[id(moved_table)][2]
    moved_table.map(RW, UVA + 0x1000_0000, PAGE, 0)          # after its prewarm
    parts = snapshot.dump(runtime(kept_table, moved_table))
    assert parts[2].obj is kept_state
    assert parts[3].obj is not stale_state
    state = loads(b"".join(parts))
    assert state["host"].areas() == kept_table.areas()
    assert state["sessions"][0].areas() == moved_table.areas()   # the new area is there
    assert snapshot._prewarmed == {}                             # used up by the snapshot


def test_a_table_changed_after_the_check_is_not_prewarmed() -> None:
    """The generation read on the loop is the one the state must have: a
    call that changed the table before the worker encoded it (or while it
    did) leaves nothing behind for the snapshot to reuse."""
    t = table(8)
    seen = t.generation
    t.map(RW, UVA + 0x2000_0000, PAGE, 0)
    assert snapshot.prewarm([(t, seen)]) == 0
    assert id(t) not in snapshot._prewarmed
    d = _core.Domain(PAGE, 0, (1 << 48) - 1)
    assert snapshot.prewarm([(d, d.generation)]) == 1            # a domain too
    snapshot._prewarmed.clear()
