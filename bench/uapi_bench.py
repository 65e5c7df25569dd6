#!/usr/bin/env python3
"""Serial ioctls per second over iommud's raw uAPI socket, next to gRPC unary
calls and a bare socket echo, in one run.

One run starts two processes and keeps them up for every figure:

- a bare SOCK_SEQPACKET echo server (this script with --serve-echo): an
  asyncio loop, non-blocking sockets, loop.add_reader and recvmsg_into /
  sendmsg, exactly the raw transport's style, returning every record as it
  came. It is the floor: what a Python event loop and a UNIX socket round
  trip cost with no protocol at all;
- a daemon (`python -m iommud`, JSON logs to a file, default log level).

Then, with one caller and one request in flight:

- raw: IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP pairs of one FIXED_IOVA page (each
  ioctl counted), the struct's write-back applied to the caller's memory;
  IOMMU_IOAS_IOVA_RANGES with room for 4 ranges (the ranges and the struct
  written back); VFIO_GET_API_VERSION on the iommufd: no struct, a trivial
  operation through the same dispatcher (the transport's own floor);
- gRPC on the same daemon: unary IoasMap then IoasUnmap of the same page (each
  call counted), and Echo;
- the echo: a record of IOAS_MAP's size, sent and received back.

The machine this runs on is shared, so every figure is measured in short
slices, interleaved round after round, and reported as the median slice (and
the best): a load that comes and goes biases none of the figures against the
others.

The client is Python, like the server: it builds each record with struct,
sends it, receives the REPLY and applies its WRITE items to a bytearray
standing for the caller's memory, which is what the C shim does for these
ioctls (none of them needs a NEED round trip). A C client costs less per
call; the figures are the daemon's rate with a Python caller.

    python bench/uapi_bench.py [--rounds 9] [--seconds 0.5] [--json bench/results/uapi-DATE.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import grpc

from iommud_client.client import SESSION_METADATA_KEY
from iommud_wire import pb, pb_grpc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

HDR = struct.Struct("<IHHIIQQQIi")
MAGIC = 0x31415549
OPEN, IOCTL, REPLY = 1, 2, 5
S_MAP = struct.Struct("<IIIIQQQ")
S_UNMAP = struct.Struct("<IIQQ")
S_ALLOC = struct.Struct("<III")
S_RANGES = struct.Struct("<IIIIQQ")
S_WRITE = struct.Struct("<IIQ")
IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP = (
    0x3B81, 0x3B84, 0x3B85, 0x3B86)
VFIO_GET_API_VERSION = 0x3B64
PAGE = 4096
FLAGS = 7   # FIXED_IOVA | WRITEABLE | READABLE
UVA = 0x7F00_0000_0000


# -- the bare echo server ---------------------------------------------------------------------------

def serve_echo(path: str) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
        listener.bind(path)
        listener.listen(16)
        buf = bytearray(HDR.size + (64 << 10))
        view = memoryview(buf)
        cloexec, nosignal = int(socket.MSG_CMSG_CLOEXEC), int(socket.MSG_NOSIGNAL)

        def readable(conn: socket.socket) -> None:
            try:
                n, _, _, _ = conn.recvmsg_into([buf], socket.CMSG_SPACE(64), cloexec)
            except BlockingIOError:
                return
            if n == 0:
                loop.remove_reader(conn.fileno())
                conn.close()
                return
            conn.sendmsg([view[:n]], [], nosignal)

        def accept() -> None:
            conn, _ = listener.accept()
            conn.setblocking(False)
            loop.add_reader(conn.fileno(), readable, conn)

        loop.add_reader(listener.fileno(), accept)
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- clients --------------------------------------------------------------------------------------

class Raw:
    """One emulated file, driven as the shim drives it for fixed-size ioctls."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        self.pid = os.getpid()
        self.seq = 0
        self.rbuf = bytearray(HDR.size + (64 << 10))
        #: The caller's memory: structs at "addresses" 0x1000.., arrays at 0x10000..
        self.mem = bytearray(1 << 17)

    def exchange(self, kind: int, cmd: int, arg: int, body: bytes) -> int:
        self.seq += 1
        self.sock.sendmsg([HDR.pack(MAGIC, kind, 0, self.pid, self.pid, self.seq, cmd, arg,
                                    len(body), 0), body])
        n = self.sock.recv_into(self.rbuf)
        _, rkind, _, _, _, seq, _, _, blen, result = HDR.unpack_from(self.rbuf)
        assert rkind == REPLY and seq == self.seq and n == HDR.size + blen
        if blen and kind == IOCTL:   # apply the WRITE items, in order
            (count,) = struct.unpack_from("<I", self.rbuf, HDR.size)
            off = HDR.size + 4
            mem = self.mem
            for _ in range(count):
                _, length, addr = S_WRITE.unpack_from(self.rbuf, off)
                off += 16
                mem[addr:addr + length] = self.rbuf[off:off + length]
                off += length
        return int(result)

    def ioctl(self, cmd: int, arg: int, size: int) -> int:
        """A struct ioctl: the size word, then the struct, from memory at `arg`."""
        return self.exchange(IOCTL, cmd, arg, self.mem[arg:arg + 4] + self.mem[arg:arg + size])

    def open_iommu(self) -> None:
        assert self.exchange(OPEN, 1, 0, struct.pack("<I", 2)) == 0


def echo_client(path: str) -> Callable[[], int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    # A record of IOAS_MAP's size: header, size word and struct.
    record = HDR.pack(MAGIC, IOCTL, 0, 1, 1, 1, IOMMU_IOAS_MAP, 0x1000, 44, 0) + bytes(44)
    buf = bytearray(4096)

    def once() -> int:
        sock.send(record)
        sock.recv_into(buf)
        return 1

    return once


def raw_clients(path: str) -> dict[str, Callable[[], int]]:
    c = Raw(path)
    c.open_iommu()
    c.mem[0x1000:0x1000 + 12] = S_ALLOC.pack(12, 0, 0)
    assert c.ioctl(IOMMU_IOAS_ALLOC, 0x1000, 12) == 0
    ioas = S_ALLOC.unpack_from(c.mem, 0x1000)[2]
    mem = c.mem
    state = {"iova": 1 << 32}

    def map_unmap() -> int:
        iova = state["iova"]
        state["iova"] = iova + 2 * PAGE
        S_MAP.pack_into(mem, 0x2000, 40, FLAGS, ioas, 0, UVA + iova, PAGE, iova)
        assert c.ioctl(IOMMU_IOAS_MAP, 0x2000, 40) == 0
        S_UNMAP.pack_into(mem, 0x3000, 24, ioas, iova, PAGE)
        assert c.ioctl(IOMMU_IOAS_UNMAP, 0x3000, 24) == 0
        assert S_UNMAP.unpack_from(mem, 0x3000)[3] == PAGE
        return 2

    def ranges() -> int:
        S_RANGES.pack_into(mem, 0x4000, 32, ioas, 4, 0, 0x10000, 0)
        assert c.ioctl(IOMMU_IOAS_IOVA_RANGES, 0x4000, 32) == 0
        return 1

    def version() -> int:
        assert c.exchange(IOCTL, VFIO_GET_API_VERSION, 0, b"") == 0
        return 1

    return {"raw_map_unmap_ioctls": map_unmap, "raw_iova_ranges": ranges,
            "raw_get_api_version": version}


async def grpc_clients(stub: pb_grpc.IommuServiceStub
                       ) -> dict[str, Callable[[], Awaitable[int]]]:
    token = (await stub.OpenSession(pb.OpenSessionRequest(client_name="bench"))).token
    md = ((SESSION_METADATA_KEY, token),)
    fd = (await stub.OpenContext(pb.OpenContextRequest(), metadata=md)).iommufd
    ioas = (await stub.IoasAlloc(pb.IoasAllocRequest(iommufd=fd), metadata=md)).out_ioas_id
    iova = [1 << 32]

    async def map_unmap() -> int:
        at = iova[0]
        iova[0] += 2 * PAGE
        await stub.IoasMap(pb.IoasMapRequest(iommufd=fd, ioas_id=ioas, flags=FLAGS,
                                             user_va=UVA + at, length=PAGE, iova=at), metadata=md)
        await stub.IoasUnmap(pb.IoasUnmapRequest(iommufd=fd, ioas_id=ioas, iova=at, length=PAGE),
                             metadata=md)
        return 2

    echo_req = pb.EchoRequest(payload=b"x" * 48)

    async def echo() -> int:
        await stub.Echo(echo_req, metadata=md)
        return 1

    return {"grpc_map_unmap_calls": map_unmap, "grpc_echo": echo}


# -- measuring ----------------------------------------------------------------------------------

def rate(fn: Callable[[], int], seconds: float) -> float:
    """Operations per second of fn() (which returns how many it did)."""
    deadline = time.perf_counter() + seconds
    done = 0
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(50):
            done += fn()
    return done / (time.perf_counter() - started)


async def arate(fn: Callable[[], Awaitable[int]], seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        done += await fn()
    return done / (time.perf_counter() - started)


async def measure(echo_path: str, uapi_path: str, grpc_path: str, rounds: int,
                  seconds: float) -> dict[str, dict[str, float]]:
    """Every figure in `rounds` slices of `seconds`, interleaved; the median
    and the best slice of each."""
    sync = {"echo": echo_client(echo_path), **raw_clients(uapi_path)}
    async with grpc.aio.insecure_channel(f"unix:{grpc_path}") as channel:
        stub = pb_grpc.IommuServiceStub(channel)
        aio = await grpc_clients(stub)
        for fn in sync.values():
            rate(fn, 0.2)   # warm up caches and allocators
        for afn in aio.values():
            await arate(afn, 0.2)
        slices: dict[str, list[float]] = {name: [] for name in (*sync, *aio)}
        for _ in range(rounds):
            for name, fn in sync.items():
                slices[name].append(rate(fn, seconds))
            for name, afn in aio.items():
                slices[name].append(await arate(afn, seconds))
    out: dict[str, dict[str, float]] = {}
    for name, values in slices.items():
        values.sort()
        out[name] = {"median_per_s": values[len(values) // 2], "best_per_s": values[-1]}
    return out


def wait_for(path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.02)


LABELS = {
    "echo": "bare SEQPACKET echo (asyncio add_reader server)",
    "raw_map_unmap_ioctls": "raw: IOAS_MAP + IOAS_UNMAP, ioctls",
    "raw_iova_ranges": "raw: IOAS_IOVA_RANGES",
    "raw_get_api_version": "raw: VFIO_GET_API_VERSION",
    "grpc_map_unmap_calls": "gRPC: IoasMap + IoasUnmap, calls",
    "grpc_echo": "gRPC: Echo",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--json", default="")
    ap.add_argument("--serve-echo", metavar="SOCK", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        echo_sock = os.path.join(tmp, "echo.sock")
        grpc_sock = os.path.join(tmp, "iommud.sock")
        uapi_sock = os.path.join(tmp, "iommud.uapi.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
        echo = subprocess.Popen([sys.executable, __file__, "--serve-echo", echo_sock])
        with open(os.path.join(tmp, "iommud.log"), "w") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "iommud", "--socket", grpc_sock,
                                       "--log-format", "json"], stdout=log,
                                      stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(echo_sock, echo)
            wait_for(uapi_sock, daemon)   # listening after the gRPC socket
            results["figures"] = asyncio.run(measure(echo_sock, uapi_sock, grpc_sock,
                                                     args.rounds, args.seconds))
        finally:
            for proc in (echo, daemon):
                proc.terminate()
                proc.wait(30)
    med = {name: v["median_per_s"] for name, v in results["figures"].items()}
    results["ratios"] = {
        "raw_map_unmap_over_grpc_map_unmap": med["raw_map_unmap_ioctls"]
        / med["grpc_map_unmap_calls"],
        "raw_map_unmap_over_echo": med["raw_map_unmap_ioctls"] / med["echo"],
        "raw_get_api_version_over_echo": med["raw_get_api_version"] / med["echo"],
    }
    results.update(rounds=args.rounds, seconds_per_slice=args.seconds,
                   machine=f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"Python {platform.python_version()}, grpcio {grpc.__version__}",
                   load_after=os.getloadavg(), date=time.strftime("%Y-%m-%d"))
    print(f"serial, one caller: median (best) of {args.rounds} slices of {args.seconds} s")
    for name, label in LABELS.items():
        v = results["figures"][name]
        print(f"  {label:<48} {v['median_per_s']:9,.0f}/s ({v['best_per_s']:9,.0f})  "
              f"{1e6 / v['median_per_s']:7.1f} us")
    r = results["ratios"]
    print(f"  raw MAP/UNMAP over gRPC unary: {r['raw_map_unmap_over_grpc_map_unmap']:.1f}x; "
          f"over the bare echo: {r['raw_map_unmap_over_echo']:.2f}; "
          f"GET_API_VERSION over the echo: {r['raw_get_api_version_over_echo']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=lambda v: round(v, 3))
            fh.write("\n")


if __name__ == "__main__":
    main()
