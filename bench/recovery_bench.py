#!/usr/bin/env python3
"""Recovery from the durable journal: how long a daemon killed with -9 takes
to serve again, at 1M live mappings and after 1M rows of churn.

Each journal is made the way a serving daemon makes it: an in-process daemon
runs every call through its dispatcher (the journal row written ahead, the
handler, the snapshots the daemon takes on its own as rows pile up), one
unary IoasMap/IoasUnmap per row, and is then dropped without a stop, as
kill -9 would. A fresh `python -m iommud` process then starts on that journal;
the figures are its own recovery time (the `journal.recovered` event: loading
the snapshot and replaying the rows after it) and the wall time from exec to
health SERVING. Side by side, on the same machine and in the same run:

- baseline: the same process starting on an empty journal (what every start
  costs: interpreter, imports, sockets);
- history: the 1M-mapping journal written as rows only, with no snapshot
  (what recovery cost before snapshots: proportional to the history).

The recovered state is checked: the area count and translations. Usage:

    python bench/recovery_bench.py [--mappings 1000000] [--churn 1000000]
                                   [--json bench/results/recovery-DATE.json]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from iommud.access import Caller
from iommud.config import Config
from iommud.ops import TABLE
from iommud.server import Daemon
from iommud_client import Client
from iommud_wire import pb

PAGE = 4096
FLAGS = pb.IOAS_MAP_FLAG_FIXED_IOVA | pb.IOAS_MAP_FLAG_READABLE | pb.IOAS_MAP_FLAG_WRITEABLE
VA = 0x7F00_0000_0000
CALLER = Caller(uid=os.getuid(), gid=os.getgid(), pid=os.getpid())


def iova_of(i: int) -> int:
    return (1 << 32) + 2 * i * PAGE


class Served:
    """An in-process daemon on a journal, driven through its dispatcher."""

    def __init__(self, path: str) -> None:
        self.daemon = Daemon(Config(socket="", journal=path, lease_seconds=3600))
        self.disp = self.daemon.dispatcher
        self.token = ""
        self.fd = 0
        self.ioas = 0

    async def call(self, name: str, req: object) -> object:
        reply = await self.disp.call(TABLE[name], req, CALLER, self.token or None)
        await asyncio.sleep(0)          # the loop's turn between calls, as a server gives it
        return reply

    async def setup(self) -> None:
        opened = await self.call("OpenSession", pb.OpenSessionRequest(client_name="bench",
                                                                       lease_seconds=3600))
        self.token = opened.token  # type: ignore[attr-defined]
        self.fd = (await self.call("OpenContext", pb.OpenContextRequest())).iommufd  # type: ignore[attr-defined]
        self.ioas = (await self.call("IoasAlloc", pb.IoasAllocRequest(iommufd=self.fd))).out_ioas_id  # type: ignore[attr-defined]

    async def map(self, i: int) -> None:
        await self.call("IoasMap", pb.IoasMapRequest(iommufd=self.fd, ioas_id=self.ioas,
                                                     flags=FLAGS, user_va=VA + i * PAGE,
                                                     length=PAGE, iova=iova_of(i)))

    async def unmap(self, i: int) -> None:
        await self.call("IoasUnmap", pb.IoasUnmapRequest(iommufd=self.fd, ioas_id=self.ioas,
                                                         iova=iova_of(i), length=PAGE))

    async def kill(self) -> None:
        """What kill -9 leaves: the files as they are (a snapshot being
        written is let finish, as it would have been by the time of a kill)."""
        task = self.daemon._snapshot_task
        if task is not None:
            await task
        assert self.daemon.journal is not None
        self.daemon.journal.close()


async def build_live(path: str, mappings: int) -> dict:
    s = Served(path)
    await s.setup()
    started = time.perf_counter()
    for i in range(mappings):
        await s.map(i)
    elapsed = time.perf_counter() - started
    await s.kill()
    return {"token": s.token, "fd": s.fd, "ioas": s.ioas, "serve_seconds": round(elapsed, 1)}


async def build_churn(path: str, live: int, rows: int) -> dict:
    s = Served(path)
    await s.setup()
    for i in range(live):
        await s.map(i)
    started = time.perf_counter()
    for k in range(rows // 2):
        await s.map(live + k % 64)
        await s.unmap(live + k % 64)
    elapsed = time.perf_counter() - started
    await s.kill()
    return {"token": s.token, "fd": s.fd, "ioas": s.ioas, "serve_seconds": round(elapsed, 1)}


def build_history(path: str, mappings: int) -> dict:
    """Rows only: written through the daemon's Journal, never compacted."""
    daemon = Daemon(Config(socket="", journal=path, lease_seconds=3600))
    journal = daemon.journal
    assert journal is not None
    token = "bench-history-" + "x" * 29
    journal.record(token, "OpenSession", pb.OpenSessionRequest(
        client_name="bench", lease_seconds=3600).SerializeToString())
    journal.record(token, "OpenContext", pb.OpenContextRequest().SerializeToString())
    journal.record(token, "IoasAlloc", pb.IoasAllocRequest(iommufd=3).SerializeToString())
    for i in range(mappings):
        journal.record(token, "IoasMap", pb.IoasMapRequest(
            iommufd=3, ioas_id=1, flags=FLAGS, user_va=VA + i * PAGE, length=PAGE,
            iova=iova_of(i)).SerializeToString())
    journal.close()
    return {"token": token, "fd": 3, "ioas": 1}


def cold_start(workdir: str, journal: str) -> dict:
    """Exec a daemon on the journal; the time until its health is SERVING,
    and its own recovery event."""
    sock = os.path.join(workdir, f"d{time.monotonic_ns()}.sock")
    log_path = sock + ".log"
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iommud", "--socket", sock,
                                 "--uapi-socket", "", "--log-format", "json",
                                 "--journal", journal], stdout=log, stderr=subprocess.STDOUT)
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for resp in stub.Watch(health_pb2.HealthCheckRequest(service="iommud.v1.IommuService"),
                               wait_for_ready=True, timeout=600):
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                break
    recovered: dict = {}
    serving = -1.0
    with open(log_path) as fh:
        for line in fh:
            if '"journal.recovered"' in line:
                recovered = json.loads(line)
            if '"event": "serving"' in line:        # its own clock: no client retry delays
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                serving = datetime.datetime.fromisoformat(stamp).timestamp() - started
    return {"proc": proc, "endpoint": f"unix:{sock}", "to_serving_seconds": round(serving, 3),
            "recovery_seconds": recovered.get("seconds"),
            "snapshot_sessions": recovered.get("snapshot_sessions"),
            "rows_replayed": recovered.get("rows")}


def check(started: dict, built: dict, live: list[int]) -> None:
    """The recovered daemon holds exactly the live areas, and they translate."""
    with Client(started["endpoint"], timeout=120) as c:
        ctx = c.attach_session(built["token"], keepalive=False).context(built["fd"])
        [obj] = [o for o in ctx.list_objects() if o.id == built["ioas"]]
        assert obj.areas == len(live), (obj.areas, len(live))
        for i in (live[0], live[len(live) // 2], live[-1]):
            assert ctx.translate(built["ioas"], iova_of(i) + 9).pa == VA + i * PAGE + 9


def stop(started: dict) -> None:
    proc = started.pop("proc")
    proc.terminate()
    proc.wait(120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mappings", type=int, default=1_000_000)
    ap.add_argument("--churn", type=int, default=1_000_000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out: dict = {"mappings": args.mappings, "churn_rows": args.churn,
                 "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                            f"{platform.python_version()}",
                 "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        runs = {
            "baseline_empty": (lambda p: {}, []),
            "live_1m": (lambda p: asyncio.run(build_live(p, args.mappings)),
                        list(range(args.mappings))),
            "churn_1m": (lambda p: asyncio.run(build_churn(p, 10, args.churn)), list(range(10))),
            "history_rows_only": (lambda p: build_history(p, args.mappings),
                                  list(range(args.mappings))),
        }
        for name, (build, live) in runs.items():
            path = os.path.join(tmp, name)
            t = time.perf_counter()
            built = build(path)
            made = time.perf_counter() - t
            files = {os.path.basename(f): os.path.getsize(f)
                     for f in (path, path + ".snap") if os.path.exists(f)}
            started = cold_start(tmp, path)
            if live:
                check(started, built, live)
            stop(started)
            started.update(build_seconds=round(made, 1),
                           serve_seconds=built.get("serve_seconds"), journal_bytes=files)
            out[name] = started
            print(f"{name:18s} serving after {started['to_serving_seconds']:7.3f} s "
                  f"(recovery {started['recovery_seconds']} s, snapshot sessions "
                  f"{started['snapshot_sessions']}, rows replayed {started['rows_replayed']}); "
                  f"files {started['journal_bytes']}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
