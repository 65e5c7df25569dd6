#!/usr/bin/env python3
"""How long a journal snapshot holds the event loop, at 1M live areas.

One session maps 2^20-1 areas into one IOAS (a VM's DMA map, written once),
then churns map/unmap pairs on a second, small IOAS, 16 calls in flight,
until the daemon has taken two snapshots on its own. Before the first, the
daemon encodes the big table in a worker thread (snapshot.prewarm) and the
snapshot reuses those bytes; the second finds it unchanged (its generation
has not moved) and reuses them again. The daemon logs each snapshot's time on
the loop (`loop_ms`, of which `dump_ms` is taking the state) and in all
(`seconds`, the files written off the loop): the two are compared in one run.

    python bench/snapshot_bench.py [--areas 1048575] [--json bench/results/snapshot-DATE.json]
"""
from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import grpc

from iommud_client import Client
from iommud_client.client import SESSION_METADATA_KEY
from iommud_wire import pb, pb_grpc

PAGE = 4096
BUF = 0x7F00_0000_0000


def snapshots(log_path: str) -> list[dict]:
    out = []
    with open(log_path) as fh:
        for line in fh:
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == "journal.snapshot" and "loop_ms" in record:
                    out.append(record)
    return out


async def churn(endpoint: str, token: str, iommufd: int, ioas: int, log_path: str,
                want: int, inflight: int = 16) -> int:
    """Map/unmap pairs until the daemon has logged `want` snapshots; returns
    the calls made."""
    calls = 0
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = pb_grpc.IommuServiceStub(channel)
        md = ((SESSION_METADATA_KEY, token),)

        done = False

        async def worker(k: int) -> None:
            nonlocal calls, done
            while not done:
                r = await stub.IoasMap(pb.IoasMapRequest(
                    iommufd=iommufd, ioas_id=ioas, user_va=BUF + k * PAGE, length=PAGE,
                    flags=6), metadata=md)
                await stub.IoasUnmap(pb.IoasUnmapRequest(
                    iommufd=iommufd, ioas_id=ioas, iova=r.iova, length=PAGE), metadata=md)
                calls += 2
                if calls % 2048 == 0:            # one worker looks at the log now and then
                    done = len(snapshots(log_path)) >= want
        await asyncio.gather(*(worker(k) for k in range(inflight)))
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=(1 << 20) - 1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sock, log_path = os.path.join(tmp, "iommud.sock"), os.path.join(tmp, "iommud.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "iommud", "--socket", sock, "--log-format", "json",
                 "--journal", os.path.join(tmp, "journal"),
                 "--max-memory-bytes-per-session", str(8 << 30)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        endpoint = f"unix:{sock}"
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(sock):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.05)
            with Client(endpoint, timeout=600) as c:
                s = c.open_session("snapshot-bench", lease_seconds=3600)
                ctx = s.open_context()
                big = ctx.ioas_alloc()
                for base in range(0, args.areas, 32768):
                    n = min(32768, args.areas - base)
                    ctx.ioas_map_batch(big, array.array("Q", (BUF + (base + k) * PAGE
                                                              for k in range(n))),
                                       array.array("Q", [PAGE] * n))
                small = ctx.ioas_alloc()
                started = time.perf_counter()
                calls = asyncio.run(churn(endpoint, s.token, ctx.iommufd, small, log_path, 2))
                took = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(60)
        first, second = snapshots(log_path)[:2]
    keys = ("loop_ms", "dump_ms", "seconds", "bytes")
    results = {"areas": args.areas, "churn_calls": calls, "churn_seconds": round(took, 1),
               "first_snapshot": {k: first[k] for k in keys},
               "second_snapshot_big_table_unchanged": {k: second[k] for k in keys},
               "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                          f"Python {platform.python_version()}",
               "date": time.strftime("%Y-%m-%d")}
    print(f"{args.areas} areas; {calls} churn calls in {took:.1f} s")
    print(f"first snapshot:  loop {first['loop_ms']:7.2f} ms (taking the state "
          f"{first['dump_ms']:.2f} ms), {first['seconds'] * 1e3:.0f} ms in all")
    print(f"second snapshot: loop {second['loop_ms']:7.2f} ms (taking the state "
          f"{second['dump_ms']:.2f} ms), {second['seconds'] * 1e3:.0f} ms in all")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
