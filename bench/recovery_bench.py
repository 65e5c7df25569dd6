#!/usr/bin/env python3
"""Recovery time from the durable journal after kill -9, at N mappings.

The journal is written the way the daemon writes it (one row per acknowledged
IoasMap, in the daemon's own Journal class), then a fresh daemon replays it;
the figure is the replay time and the rows per second, next to the time the
same maps take when a client sends them as unary RPCs (from the RPC bench) for
scale. The recovered state is checked: the area count and a sample of
translations. Usage:

    python bench/recovery_bench.py [--mappings 1000000] [--json bench/results/recovery.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import tempfile
import time

from iommud.config import Config
from iommud.ioas import Ioas, translate
from iommud.server import Daemon
from iommud_wire import pb

PAGE = 4096
TOKEN = "bench-token-" + "x" * 32


def write_journal(path: str, mappings: int) -> float:
    cfg = Config(socket="", journal=path)
    daemon = Daemon(cfg)            # binds the fingerprint exactly as a real start does
    journal = daemon.journal
    assert journal is not None
    started = time.perf_counter()
    journal.record(TOKEN, "OpenSession", pb.OpenSessionRequest(client_name="bench",
                                                               lease_seconds=3600).SerializeToString())
    journal.record(TOKEN, "OpenContext", pb.OpenContextRequest().SerializeToString())
    journal.record(TOKEN, "IoasAlloc", pb.IoasAllocRequest(iommufd=3).SerializeToString())
    flags = (pb.IOAS_MAP_FLAG_FIXED_IOVA | pb.IOAS_MAP_FLAG_READABLE
             | pb.IOAS_MAP_FLAG_WRITEABLE)
    for i in range(mappings):
        req = pb.IoasMapRequest(iommufd=3, ioas_id=1, flags=flags, user_va=0x7F00_0000_0000 + i * PAGE,
                                length=PAGE, iova=(1 << 32) + 2 * i * PAGE)
        journal.record(TOKEN, "IoasMap", req.SerializeToString())
    elapsed = time.perf_counter() - started
    journal.close()
    return elapsed


async def recover(path: str, mappings: int) -> dict:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    daemon = Daemon(Config(socket="", journal=path))
    started = time.perf_counter()
    rows = await daemon.dispatcher.replay()
    elapsed = time.perf_counter() - started
    sess = daemon.sessions.get(TOKEN)
    assert sess is not None
    ctx = sess.context(3)
    ioas = ctx.get(1, Ioas, "IOAS")
    assert ioas.num_areas == mappings, (ioas.num_areas, mappings)
    for i in (0, mappings // 2, mappings - 1):
        pa, _perm = translate(ctx, 1, (1 << 32) + 2 * i * PAGE + 7)
        assert pa == 0x7F00_0000_0000 + i * PAGE + 7
    return {"rows": rows, "seconds": round(elapsed, 3), "rows_per_second": round(rows / elapsed),
            "max_rss_mib_growth": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                         - rss_before) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mappings", type=int, default=1_000_000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "journal.db")
        write_s = write_journal(path, args.mappings)
        size = os.path.getsize(path) + (os.path.getsize(path + "-wal")
                                        if os.path.exists(path + "-wal") else 0)
        result = asyncio.run(recover(path, args.mappings))
    result.update(mappings=args.mappings, journal_bytes=size,
                  journal_write_seconds=round(write_s, 3),
                  journal_rows_written_per_second=round((args.mappings + 3) / write_s),
                  machine=f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
                  date=time.strftime("%Y-%m-%d"))
    print(f"recovered {result['rows']:,} rows ({args.mappings:,} mappings) in "
          f"{result['seconds']:.2f} s = {result['rows_per_second']:,} rows/s; journal "
          f"{size / 2**20:.1f} MiB, written at {result['journal_rows_written_per_second']:,} rows/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
