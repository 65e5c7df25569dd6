#!/usr/bin/env python3
"""Batched IOVA -> PA translation, side by side in one run:

  rust_core   iommud._core.IoPagetable.translate_batch (the daemon's path: new
              result bytes, every core) and translate_into (caller buffers,
              reused; on one core and on every core)
  numpy       sorted arrays + np.searchsorted, the best a vectorised Python model does
  bisect      pure Python, bisect per address (on a smaller sample; it is slow)

Every engine translates the same addresses over the same areas, and the
results are checked equal before any figure is printed. Usage:

    python bench/translate_bench.py [--areas 65536 1048576 16777216] [--queries 1000000]
                                    [--json bench/results/translate.json]
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import statistics
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from iommud import _core

if TYPE_CHECKING:
    from collections.abc import Callable

READ_WRITE = _core.IOMMU_IOAS_MAP_READABLE | _core.IOMMU_IOAS_MAP_WRITEABLE
FIXED = _core.IOMMU_IOAS_MAP_FIXED_IOVA
PAGE = 4096


def build_areas(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n disjoint areas of 1-16 pages separated by 1-16 page gaps."""
    lengths = rng.integers(1, 17, n, dtype=np.uint64) * PAGE
    gaps = rng.integers(1, 17, n, dtype=np.uint64) * PAGE
    starts = np.cumsum(lengths + gaps) - lengths + np.uint64(1 << 32)
    pas = rng.integers(1 << 20, 1 << 36, n, dtype=np.uint64) * PAGE
    return starts.astype(np.uint64), lengths, pas


def queries(starts: np.ndarray, lengths: np.ndarray, count: int,
            rng: np.random.Generator) -> np.ndarray:
    """90% of addresses inside a random area, 10% in the gaps after them."""
    idx = rng.integers(0, len(starts), count)
    inside = rng.random(count) < 0.9
    offset = (rng.random(count) * lengths[idx]).astype(np.uint64)
    addr = np.where(inside, starts[idx] + offset, starts[idx] + lengths[idx] + np.uint64(7))
    return addr.astype(np.uint64)


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def numpy_translate(starts: np.ndarray, lengths: np.ndarray, pas: np.ndarray,
                    q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(starts, q, side="right").astype(np.int64) - 1
    safe = np.maximum(idx, 0)
    hit = (idx >= 0) & (q - starts[safe] < lengths[safe])
    out = np.where(hit, pas[safe] + (q - starts[safe]), np.uint64(0))
    return out, hit


def bisect_translate(starts: list[int], lengths: list[int], pas: list[int],
                     q: list[int]) -> list[int]:
    out = []
    for a in q:
        i = bisect.bisect_right(starts, a) - 1
        out.append(pas[i] + a - starts[i] if i >= 0 and a - starts[i] < lengths[i] else 0)
    return out


def run(n_areas: int, n_queries: int, repeat: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    starts, lengths, pas = build_areas(n_areas, rng)
    iopt = _core.IoPagetable()
    t0 = time.perf_counter()
    for s, ln, p in zip(starts.tolist(), lengths.tolist(), pas.tolist(), strict=True):
        iopt.map(FIXED | READ_WRITE, p, ln, s)
    build_s = time.perf_counter() - t0
    q = queries(starts, lengths, n_queries, rng)
    qbytes = q.astype("<u8").tobytes()

    rust_s, (rust_pas, rust_prots) = best_of(lambda: iopt.translate_batch(qbytes), repeat)
    out_pas = np.empty(n_queries, dtype=np.uint64)
    out_prots = np.empty(n_queries, dtype=np.uint8)
    into = lambda addrs, threads: iopt.translate_into(addrs, out_pas, out_prots,  # noqa: E731
                                                      threads=threads)
    one_s, _ = best_of(lambda: into(q, 1), repeat)
    all_s, _ = best_of(lambda: into(q, None), repeat)
    assert out_pas.tobytes() == rust_pas and out_prots.tobytes() == rust_prots
    sorted_q = np.sort(q)
    rust_sorted_one_s, _ = best_of(lambda: into(sorted_q, 1), repeat)
    rust_sorted_s, _ = best_of(lambda: into(sorted_q, None), repeat)
    # Bytes per area of the table as built (radix directory included), before
    # the churn below leaves free slots in its leaf pool.
    heap_bytes = iopt.area_heap_bytes
    np_sorted_s, _ = best_of(lambda: numpy_translate(starts, lengths, pas, sorted_q), repeat)
    np_s, (np_pas, np_hit) = best_of(lambda: numpy_translate(starts, lengths, pas, q), repeat)
    rust_arr = np.frombuffer(rust_pas, dtype="<u8")
    assert np.array_equal(rust_arr, np_pas), "rust_core and numpy disagree"
    assert np.array_equal(np.frombuffer(rust_prots, np.uint8) != 0, np_hit)

    # The pure-Python model holds every area as Python ints (~100 B each):
    # above 4M areas it is left out rather than swap the machine.
    bis_s = None
    sample = min(n_queries, 200_000)
    if n_areas <= 4 << 20:
        ls, ll, lp, lq = starts.tolist(), lengths.tolist(), pas.tolist(), q[:sample].tolist()
        bis_s, bis_out = best_of(lambda: bisect_translate(ls, ll, lp, lq), 1)
        assert bis_out == rust_arr[:sample].tolist(), "rust_core and bisect disagree"
        del ls, ll, lp, lq

    # Translations interleaved with maps, as a live VM's DMA meets a VMM's
    # hot-plugged memory: each round maps one area then translates 64 IOVAs.
    # numpy must re-sort (np.insert) its arrays; rust_core reads the live map.
    rounds = 2_000
    top = int(starts[-1] + lengths[-1]) + (1 << 30)
    probe64 = q[:64].astype("<u8").tobytes()
    t0 = time.perf_counter()
    for k in range(rounds):
        iopt.map(FIXED | READ_WRITE, 0x1000, 0x1000, top + k * 0x2000)
        iopt.translate_batch(probe64)
    mixed_rust_s = time.perf_counter() - t0
    iopt.unmap(top, rounds * 0x2000)
    np_starts, np_lengths, np_pas = starts.copy(), lengths.copy(), pas.copy()
    mixed_rounds_np = max(20, rounds // 20)       # numpy's rounds are slow at 1M areas
    t0 = time.perf_counter()
    for k in range(mixed_rounds_np):
        at = len(np_starts)
        np_starts = np.insert(np_starts, at, np.uint64(top + k * 0x2000))
        np_lengths = np.insert(np_lengths, at, np.uint64(0x1000))
        np_pas = np.insert(np_pas, at, np.uint64(0x1000))
        numpy_translate(np_starts, np_lengths, np_pas, q[:64])
    mixed_np_s = (time.perf_counter() - t0) * rounds / mixed_rounds_np
    del np_starts, np_lengths, np_pas

    # Allocation in a packed IOAS: every area abuts the next, so a first-fit
    # walk over areas would visit all of them; the gap index skips to the end.
    dense_pairs_s = None
    if n_areas <= 1 << 20:
        dense = _core.IoPagetable()
        for k in range(n_areas):
            dense.map(FIXED | READ_WRITE, 0x1000, 0x1000, 0x1000 + k * 0x1000)
        t0 = time.perf_counter()
        for _ in range(2_000):
            iova = dense.map(READ_WRITE, 0x1000, 0x1000, 0)
            dense.unmap(iova, 0x1000)
        dense_pairs_s = (time.perf_counter() - t0) / 2_000
        assert iova == 0x1000 + n_areas * 0x1000
        del dense

    # Sparse unmap: 1,000 areas spread over 1 TiB in a fresh table; the cost
    # must follow the areas, not the bytes of the range.
    sparse = _core.IoPagetable()
    times = []
    for _ in range(repeat):
        for k in range(1000):
            sparse.map(FIXED | READ_WRITE, 0x1000, 0x1000, k << 30)
        t0 = time.perf_counter()
        sparse.unmap(0, 1 << 40)
        times.append(time.perf_counter() - t0)
    sparse_unmap_us = min(times) * 1e6

    # map+unmap pairs with automatic IOVA allocation among the live areas.
    pairs = 20_000
    t0 = time.perf_counter()
    for k in range(pairs):
        iova = iopt.map(READ_WRITE, (k & 0xFFFF) << 12, 0x1000, 0)
        iopt.unmap(iova, 0x1000)
    pair_s = time.perf_counter() - t0

    # The same through the batched entry points, 4,096 maps then their unmaps a call.
    batch = 4_096
    vas = np.arange(batch, dtype=np.uint64) * np.uint64(0x1000)
    ones = np.full(batch, 0x1000, dtype=np.uint64)
    zeros = np.zeros(batch, dtype=np.uint64)
    t0 = time.perf_counter()
    rounds_b = 10
    for _ in range(rounds_b):
        got = iopt.map_batch(READ_WRITE, vas, ones, zeros)
        iopt.unmap_batch(got, ones)
    batch_ops_s = 2 * batch * rounds_b / (time.perf_counter() - t0)

    # Single calls from Python, on mapped addresses: each sample is the mean
    # of a loop of 100 calls, so the timer's own cost (~2 perf_counter_ns
    # calls, as much as the call itself) does not swamp the figure.
    mapped_probe = [int(a) for a, hit in zip(q[:40_000], np_hit[:40_000], strict=False) if hit][:20_000]
    translate = iopt.translate

    def per_call_ns(addrs: list[int]) -> list[float]:
        samples = []
        for i in range(0, len(addrs) - 100, 100):
            chunk = addrs[i:i + 100]
            t = time.perf_counter_ns()
            for a in chunk:
                translate(a)
            samples.append((time.perf_counter_ns() - t) / 100)
        return sorted(samples)
    # Warm up first, as a VMM translating steadily would be: the batches
    # above ended with maps and unmaps, and the table builds its radix
    # directory again only after a sixteenth of its key count of lookups.
    per_call_ns(mapped_probe)
    single = per_call_ns(mapped_probe)
    # The same address over and over, as a device re-using a buffer: the
    # call's own cost without the table's cache misses.
    hot = per_call_ns(mapped_probe[:1] * len(mapped_probe))

    rate = lambda secs, count: count / secs / 1e6  # noqa: E731
    return {
        "areas": n_areas,
        "queries": n_queries,
        "build_seconds_single_maps": round(build_s, 3),
        "rust_core_Maddr_per_s": round(rate(rust_s, n_queries), 2),
        "rust_into_1core_Maddr_per_s": round(rate(one_s, n_queries), 2),
        "rust_into_Maddr_per_s": round(rate(all_s, n_queries), 2),
        "rust_1core_vs_numpy": round(np_s / one_s, 2),
        "numpy_Maddr_per_s": round(rate(np_s, n_queries), 2),
        "bisect_Maddr_per_s": round(rate(bis_s, sample), 3) if bis_s else None,
        "rust_vs_numpy": round(np_s / rust_s, 2),
        "rust_sorted_1core_Maddr_per_s": round(rate(rust_sorted_one_s, n_queries), 2),
        "rust_sorted_Maddr_per_s": round(rate(rust_sorted_s, n_queries), 2),
        "numpy_sorted_Maddr_per_s": round(rate(np_sorted_s, n_queries), 2),
        "map_unmap_pairs_per_s": round(pairs / pair_s),
        "batched_map_unmap_ops_per_s": round(batch_ops_s),
        "rust_vs_bisect": round((bis_s / sample) / (rust_s / n_queries), 1) if bis_s else None,
        "single_translate_p50_ns": round(single[len(single) // 2]),
        "single_translate_p99_ns": round(single[int(len(single) * 0.99)]),
        "single_translate_hot_p50_ns": round(hot[len(hot) // 2]),
        "area_heap_bytes_per_area": round(heap_bytes / n_areas, 1),
        "map_then_translate64_rounds_per_s": round(rounds / mixed_rust_s),
        "numpy_map_then_translate64_rounds_per_s": round(rounds / mixed_np_s),
        "sparse_unmap_1000_areas_over_1TiB_us": round(sparse_unmap_us, 1),
        "packed_ioas_alloc_map_unmap_pairs_per_s": round(1 / dense_pairs_s) if dense_pairs_s else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, nargs="+", default=[65536, 1 << 20, 1 << 24])
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    rows = [run(n, args.queries, args.repeat, args.seed) for n in args.areas]
    cols = ["areas", "rust_core_Maddr_per_s", "rust_into_1core_Maddr_per_s",
            "rust_into_Maddr_per_s", "numpy_Maddr_per_s", "bisect_Maddr_per_s",
            "rust_vs_numpy", "rust_1core_vs_numpy", "rust_vs_bisect",
            "rust_sorted_1core_Maddr_per_s", "rust_sorted_Maddr_per_s",
            "numpy_sorted_Maddr_per_s", "single_translate_p50_ns", "single_translate_p99_ns",
            "single_translate_hot_p50_ns",
            "map_unmap_pairs_per_s", "batched_map_unmap_ops_per_s", "area_heap_bytes_per_area",
            "map_then_translate64_rounds_per_s", "numpy_map_then_translate64_rounds_per_s",
            "sparse_unmap_1000_areas_over_1TiB_us", "packed_ioas_alloc_map_unmap_pairs_per_s"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=False)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths, strict=False)))
    report = {
        "benchmark": "translate_batch",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "python": sys.version.split()[0],
                    "numpy": np.__version__, "core": _core.__version__},
        "results": rows,
        "median_rust_vs_numpy": statistics.median(r["rust_vs_numpy"] for r in rows),
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
