"""The native module through Python: its stub matches it, buffers of every
kind are accepted without per-element objects, errors are OSError(errno)."""
from __future__ import annotations

import array
import ast
import errno
import pathlib
import threading

import numpy as np
import pytest

import iommud
from iommud import _core

STUB = pathlib.Path(iommud.__file__).with_name("_core.pyi")
RWF = _core.IOMMU_IOAS_MAP_READABLE | _core.IOMMU_IOAS_MAP_WRITEABLE | _core.IOMMU_IOAS_MAP_FIXED_IOVA


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    module, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            module.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            module.add(node.name)
        elif isinstance(node, ast.ClassDef):
            module.add(node.name)
            classes[node.name] = {n.name for n in node.body
                                  if isinstance(n, ast.FunctionDef)} - {"__init__", "__new__"}
    return module, classes


def test_stub_matches_the_built_module() -> None:
    assert STUB.exists(), "the .pyi ships beside the module"
    module, classes = _stub_names()
    public = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    assert module == public
    assert set(classes) == {"Domain", "IoPagetable", "PeerGate", "Type1Dma"}
    for name, methods in classes.items():
        assert methods == {n for n in dir(getattr(_core, name)) if not n.startswith("_")}, name


@pytest.mark.parametrize("make", [
    lambda v: array.array("Q", v).tobytes(),
    lambda v: bytearray(array.array("Q", v).tobytes()),
    lambda v: memoryview(array.array("Q", v).tobytes()),
    lambda v: array.array("Q", v),
    lambda v: np.array(v, dtype=np.uint64),
])
def test_translate_batch_accepts_buffers(make) -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0x9000_0000, 0x2000, 0x1000)
    pas, prots = t.translate_batch(make([0x1000, 0x2fff, 0x3000]))
    assert array.array("Q", pas).tolist() == [0x9000_0000, 0x9000_1FFF, 0]
    assert list(prots) == [6, 6, 0]


def test_translate_batch_rejects_ragged_and_non_buffers() -> None:
    t = _core.IoPagetable()
    with pytest.raises(ValueError):
        t.translate_batch(b"\0" * 9)
    with pytest.raises(TypeError):
        t.translate_batch([1, 2, 3])


def test_errors_are_oserror_with_errno() -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0, 0x1000, 0x1000)
    cases = [(lambda: t.map(RWF, 0, 0x1000, 0x1000), errno.EEXIST),
             (lambda: t.translate(0), errno.ENOENT),
             (lambda: t.unmap(0x1000, 0), errno.EINVAL),
             (lambda: _core.check_map_args(1 << 8, 0, 1), errno.EOPNOTSUPP),
             (lambda: t.add_reserved(0x1000, 0x1fff, 1), errno.EADDRINUSE)]
    for fn, want in cases:
        with pytest.raises(OSError) as info:
            fn()
        assert info.value.errno == want
        assert "0x" in info.value.strerror or want in (errno.EINVAL, errno.EOPNOTSUPP)


def test_large_batches_run_while_other_threads_map() -> None:
    t = _core.IoPagetable()
    for i in range(1000):
        t.map(RWF, i << 20, 0x1000, i << 16)
    addrs = np.arange(0, 1000 << 16, 0x100, dtype=np.uint64)
    stop = threading.Event()

    def churn() -> None:
        k = 0
        while not stop.is_set():
            iova = (2000 + k % 50) << 16
            t.map(RWF, 0, 0x1000, iova)
            t.unmap(iova, 0x1000)
            k += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(20):
            pas, prots = t.translate_batch(addrs)
            got = np.frombuffer(pas, np.uint64)
            mapped = np.frombuffer(prots, np.uint8) != 0
            assert mapped.sum() == 1000 * 16      # the churned range is never in `addrs`
            assert np.array_equal(got[mapped] >> 20, (addrs[mapped] >> 16))
    finally:
        stop.set()
        worker.join()


def test_copy_between_tables_and_within_one() -> None:
    a, b = _core.IoPagetable(), _core.IoPagetable()
    a.map(RWF, 0x5000_0000, 0x2000, 0x1000)
    assert _core.copy(b, a, RWF, 0x1000, 0x2000, 0x8000) == 0x8000
    assert b.translate(0x9fff) == (0x5000_1FFF, 6)
    at = _core.copy(a, a, RWF & ~_core.IOMMU_IOAS_MAP_FIXED_IOVA, 0x1000, 0x1000, 0)
    assert a.translate(at) == (0x5000_0000, 6)


def test_dirty_tracking_through_dma() -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0x10_0000, 0x4000, 0x0)
    t.set_dirty_tracking(True)
    assert t.dma(0x1000, 8, True) == 0x10_1000
    bitmap = t.read_dirty_bitmap(0, 0x4000, 0x1000, True)
    assert int.from_bytes(bitmap, "little") == 0b10
    assert int.from_bytes(t.read_dirty_bitmap(0, 0x4000, 0x1000, False), "little") == 0


def test_translate_batch_reads_misaligned_buffers_too() -> None:
    """Aligned buffers are read in place; a misaligned one takes the copying path."""
    t = _core.IoPagetable()
    t.map(RWF, 0x9000_0000, 0x2000, 0x1000)
    raw = bytearray(1 + 8 * 3)
    raw[1:] = array.array("Q", [0x1000, 0x2FFF, 0x3000]).tobytes()
    pas, prots = t.translate_batch(memoryview(raw)[1:])
    assert array.array("Q", pas).tolist() == [0x9000_0000, 0x9000_1FFF, 0]
    assert list(prots) == [6, 6, 0]


def test_translate_into_fills_caller_buffers_like_translate_batch() -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0x9000_0000, 0x2000, 0x1000)
    t.map(RWF & ~_core.IOMMU_IOAS_MAP_WRITEABLE, 0x7000_0000, 0x1000, 0x8000)
    rng = np.random.default_rng(7)
    iovas = rng.integers(0, 0xA000, 3 * _core.BATCH_RELEASE_GIL, dtype=np.uint64)
    want_pas, want_prots = t.translate_batch(iovas)
    pas = np.full(len(iovas), 0xDEAD, dtype=np.uint64)
    prots = bytearray(b"\xff" * len(iovas))
    for threads in (1, 2, None):
        mapped = t.translate_into(iovas, pas, prots, threads=threads)
        assert pas.tobytes() == want_pas and bytes(prots) == want_prots
        assert mapped == sum(1 for p in want_prots if p)
    assert {0, 4, 6} == set(want_prots)
    # In place: the IOVA buffer receives its own PAs.
    inplace = iovas.copy()
    t.translate_into(inplace, inplace, prots)
    assert inplace.tobytes() == want_pas


def test_translate_into_rejects_bad_buffers_and_writes_nothing() -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0x9000_0000, 0x2000, 0x1000)
    iovas = np.array([0x1000, 0x1008], dtype=np.uint64)
    pas, prots = np.zeros(2, dtype=np.uint64), bytearray(2)
    with pytest.raises(ValueError, match="0x10 bytes for pas and 0x2"):
        t.translate_into(iovas, np.zeros(3, dtype=np.uint64), prots)
    with pytest.raises(ValueError, match="0x10 bytes for pas and 0x2"):
        t.translate_into(iovas, pas, bytearray(1))
    with pytest.raises(BufferError):
        t.translate_into(iovas, bytes(16), prots)        # read-only
    shared = bytearray(18)
    with pytest.raises(ValueError, match="shares memory"):
        t.translate_into(iovas, memoryview(shared)[:16], memoryview(shared)[15:17])
    with pytest.raises(ValueError, match="at least 1"):
        t.translate_into(iovas, pas, prots, threads=0)
    assert not pas.any() and prots == bytearray(2) and shared == bytearray(18)


def test_map_batch_takes_buffers_and_rolls_back_on_failure() -> None:
    t = _core.IoPagetable()
    t.map(RWF, 0x9000, 0x1000, 0x5000)
    q = lambda *v: array.array("Q", v)  # noqa: E731
    with pytest.raises(OSError) as info:
        t.map_batch(RWF, q(0xA000, 0xC000), q(0x1000, 0x1000), q(0x1000, 0x5000))
    assert info.value.errno == errno.EEXIST and "Request 0x1" in info.value.strerror
    assert t.num_areas == 1
    iovas = array.array("Q", t.map_batch(RWF & ~_core.IOMMU_IOAS_MAP_FIXED_IOVA, q(0x1000, 0x2000),
                                         q(0x1000, 0x1000),
                                         q(0, 0)))
    assert t.translate(iovas[1] + 5) == (0x2005, 6)
    assert t.unmap_batch(iovas, q(0x1000, 0x1000)) == 0x2000
    with pytest.raises(ValueError):
        t.map_batch(RWF, q(1), q(0x1000, 0x1000), q(0))
    assert t.num_areas == 1
