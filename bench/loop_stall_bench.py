#!/usr/bin/env python3
"""How long one large request keeps the daemon's event loop from serving others.

A probe thread sends Echo on its own channel back to back while the main
thread issues the largest legal request of each RPC (at the daemon's default
limits, or the largest one the scenario names). The loop stall of a request
is the longest Echo round trip the probe saw while it ran, less the probe's
median round trip when the daemon is idle: a request that keeps the loop busy
for 200 ms makes one Echo wait about 200 ms. Target: at most 10 ms each.

    python bench/loop_stall_bench.py [--areas 1048576] [--json bench/results/loop-stall-DATE.json]
"""
from __future__ import annotations

import argparse
import array
import json
import multiprocessing
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from iommud_client import Client
from iommud_client.client import SESSION_METADATA_KEY
from iommud_wire import SERVICE_NAME, pb, pb_grpc

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

PAGE = 4096
DMA_N = int(os.environ.get("DMA_N", 65536))
RW = 4 | 2
BUF = 0x7F00_0000_0000


def _probe_main(endpoint: str, conn: Connection, stop: Event) -> None:
    """The probe process: Echo back to back, each (start, round trip) sent
    to the parent as it lands. A process of its own, so that the bench's
    own work on a large request (building it, reading the reply) never
    holds the probe's GIL: only the daemon can delay an Echo."""
    with grpc.insecure_channel(endpoint) as channel:
        stub = pb_grpc.IommuServiceStub(channel)
        req = pb.EchoRequest(payload=b"p")
        while not stop.is_set():
            start = time.perf_counter()         # CLOCK_MONOTONIC: shared with the parent
            stub.Echo(req, timeout=120)
            conn.send_bytes(_SAMPLE.pack(start, time.perf_counter() - start))
    conn.close()


_SAMPLE = struct.Struct("<dd")


class Probe:
    """Echo back to back from another process; records each round trip."""

    def __init__(self, endpoint: str) -> None:
        mp = multiprocessing.get_context("spawn")      # no fork of gRPC's threads
        self._conn, child = mp.Pipe(duplex=False)
        self._stop = mp.Event()
        self._proc = mp.Process(target=_probe_main, args=(endpoint, child, self._stop),
                                daemon=True)
        self._child = child
        self.samples: list[tuple[float, float]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            while True:
                start, took = _SAMPLE.unpack(self._conn.recv_bytes())
                self.samples.append((start, took))
        except EOFError:
            return

    def __enter__(self) -> Probe:
        self._proc.start()
        self._child.close()
        self._reader.start()
        while len(self.samples) < 50:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(60)
        self._reader.join(60)

    def after(self, t: float) -> None:
        """Wait until a probe round trip that started after `t` has landed."""
        while not any(start > t for start, _ in self.samples[-8:]):
            time.sleep(0.001)

    def worst_since(self, t0: float) -> float:
        """The longest round trip that overlapped the window since t0."""
        return max((d for s, d in self.samples if s + d >= t0), default=0.0)


def start_daemon(tmp: str, args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    sock = os.path.join(tmp, "iommud.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    with open(os.path.join(tmp, "iommud.log"), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iommud", "--socket", sock,
                                 "--log-format", "json", *args],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"unix:{sock}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(endpoint, timeout=2) as c:
                c.echo(b"")
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def measure(probe: Probe, baseline: float, fn: Callable[[], object]) -> tuple[float, float]:
    """(request seconds, loop stall seconds) of one run of fn."""
    probe.after(time.perf_counter())     # no round trip still waiting on the set-up's calls
    t0 = time.perf_counter()
    fn()
    took = time.perf_counter() - t0
    probe.after(time.perf_counter())                # let the probe's last call land
    return took, max(0.0, probe.worst_since(t0) - baseline)


def fill(ctx, ioas: int, areas: int, length: int = PAGE) -> None:
    """`areas` allocated areas of `length`, in batches the daemon accepts."""
    step = 32768
    for base in range(0, areas, step):
        n = min(step, areas - base)
        ctx.ioas_map_batch(ioas, array.array("Q", (BUF + (base + k) * length
                                                   for k in range(n))),
                           array.array("Q", [length] * n))


#: A scenario: `prepare()` sets up (not measured) and returns the request to run.
Scenario = Callable[[], Callable[[], object]]


def scenarios(c: Client, areas: int) -> dict[str, Scenario]:
    s = c.open_session("stall", lease_seconds=3600)
    ctx = s.open_context()
    lim = c.info().limits
    big = ctx.ioas_alloc()
    fill(ctx, big, areas)                          # one contiguous run from `first`
    # `attachable` fills while the device is attached, so that the allocator
    # keeps its areas out of the device's reserved regions (the MSI window
    # at 0xfee00000): attaching to it later is then legal, as it is for a
    # VMM that attached before mapping.
    dev = s.open_device("0000:04:10.0")            # stays open for the session's life
    dev_id = dev.bind(ctx)
    attachable = ctx.ioas_alloc()
    dev.attach(attachable)
    fill(ctx, attachable, areas)
    dev.detach()
    first = ctx.list_areas_page(big, 0, 1).areas[0].iova
    n_batch = 32768
    out: dict[str, Scenario] = {}

    def fresh_ioas() -> int:
        return ctx.ioas_alloc()

    out[f"IoasMapBatch x{n_batch} page maps"] = lambda: (lambda i: lambda: ctx.ioas_map_batch(
        i, array.array("Q", (BUF + k * PAGE for k in range(n_batch))),
        array.array("Q", [PAGE] * n_batch)))(fresh_ioas())
    out[f"IoasMapBatch x{n_batch} sub-page maps"] = lambda: (lambda i: lambda: ctx.ioas_map_batch(
        i, array.array("Q", (BUF + k * 0x1000 for k in range(n_batch))),
        array.array("Q", [0x800] * n_batch)))(fresh_ioas())
    iovas = array.array("Q", (BUF + (k % areas) * PAGE for k in range(lim.max_translate_batch)))
    out[f"TranslateBatch x{lim.max_translate_batch:#x}"] = lambda: (
        lambda: ctx.translate_batch(big, iovas))
    out["ListAreas page of 4096"] = lambda: (lambda: ctx.list_areas_page(big, first))
    out["ListObjects"] = lambda: (lambda: ctx.list_objects())
    out["GetInfo"] = lambda: (lambda: c.info(s.token))
    out[f"IoasCopy of {areas} areas"] = lambda: (lambda i: lambda: ctx.ioas_copy(
        i, big, first, areas * PAGE))(fresh_ioas())
    out["IoasAllowIovas x4096"] = lambda: (lambda i: lambda: ctx.ioas_allow_iovas(
        i, [(k << 24, (k << 24) + 0xFFFF) for k in range(1, 4097)]))(fresh_ioas())
    dma_ioas = ctx.ioas_alloc()
    dev.attach(dma_ioas)
    dma_iova = ctx.ioas_map(dma_ioas, BUF, 1 << 20)
    # The request is built, and its reply read, as bytes: turning 65536
    # accesses into Python objects takes this process 100 ms of CPU that,
    # on two cores, competes with the daemon and the probe, not the loop.
    dma_req = pb.DeviceDmaRequest(device_fd=dev.device_fd, accesses=[
        pb.DmaAccess(iova=dma_iova + (k % 256) * PAGE, length=8, write=True)
        for k in range(DMA_N)]).SerializeToString()
    dma_call = c.channel.unary_unary(f"/{SERVICE_NAME}/DeviceDma")
    out[f"DeviceDma x{DMA_N}"] = lambda: (lambda: dma_call(
        dma_req, metadata=((SESSION_METADATA_KEY, s.token),), timeout=600))
    out[f"HwptAlloc on an IOAS of {areas} areas (fills a domain)"] = lambda: (
        lambda: ctx.hwpt_alloc(dev_id, big))
    out[f"DeviceAttach to an IOAS of {areas} areas"] = lambda: (
        dev.detach(), lambda: dev.attach(attachable))[1]
    out[f"DeviceDetach from an IOAS of {areas} areas"] = lambda: (
        dev.detach(), dev.attach(attachable), lambda: dev.detach())[2]

    def close_attached() -> Callable[[], object]:
        other = s.open_device("0000:04:10.1")
        other.bind(ctx)
        other.attach(attachable)
        return lambda: other.close()
    out[f"CloseDevice attached to an IOAS of {areas} areas"] = close_attached

    def destroy_hwpt() -> Callable[[], object]:
        hwpt = ctx.hwpt_alloc(dev_id, attachable)
        return lambda: ctx.destroy(hwpt)
    out[f"Destroy of a HWPT filled with {areas} areas"] = destroy_hwpt

    def unmap_all() -> Callable[[], object]:
        victim = ctx.ioas_alloc()
        fill(ctx, victim, areas)
        return lambda: ctx.ioas_unmap_all(victim)
    out[f"IoasUnmap of {areas} areas"] = unmap_all

    def destroy() -> Callable[[], object]:
        victim = ctx.ioas_alloc()
        fill(ctx, victim, areas)
        return lambda: ctx.destroy(victim)
    out[f"Destroy of an IOAS with {areas} areas"] = destroy

    def close_session() -> Callable[[], object]:
        s2 = c.open_session("stall2", keepalive=False)
        ctx2 = s2.open_context()
        fill(ctx2, ctx2.ioas_alloc(), areas)
        return lambda: s2.close()
    out[f"CloseSession with {areas} areas"] = close_session

    held: list = []

    def many_sessions() -> Callable[[], object]:
        for x in held:                   # the previous run's, closed outside the window
            x.close()
        held[:] = [c.open_session(f"s{k}", keepalive=False) for k in range(1000)]
        for x in held:
            x.open_context().ioas_alloc()
        return lambda: c.info()
    out["GetInfo with 1000 sessions"] = many_sessions
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=(1 << 20) - 1)
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each request; the least stall is the figure (a loaded "
                         "machine only ever adds to it)")
    ap.add_argument("--only", default="", help="run the scenarios whose name has this text")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = start_daemon(tmp, ["--max-memory-bytes-per-session", str(8 << 30)])
        try:
            with Client(endpoint, timeout=600) as c, Probe(endpoint) as probe:
                base = statistics.median(d for _, d in probe.samples[-40:])
                plan = scenarios(c, args.areas)
                for name, prepare in plan.items():
                    if args.only not in name:
                        continue
                    runs = [measure(probe, base, prepare()) for _ in range(args.runs)]
                    stall = min(r[1] for r in runs)
                    took = statistics.median(r[0] for r in runs)
                    results[name] = {"request_ms": round(took * 1e3, 2),
                                     "loop_stall_ms": round(stall * 1e3, 2),
                                     "loop_stall_ms_runs": [round(r[1] * 1e3, 2) for r in runs]}
                    print(f"{name:55s} request {took * 1e3:9.1f} ms   loop stall "
                          f"{stall * 1e3:8.1f} ms  (runs: "
                          f"{', '.join(f'{r[1] * 1e3:.1f}' for r in runs)})", flush=True)
                results["probe_median_ms"] = round(base * 1e3, 3)
        finally:
            proc.terminate()
            proc.wait(30)
    results.update(machine=f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"Python {platform.python_version()}", date=time.strftime("%Y-%m-%d"),
                   areas=args.areas)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
