#!/usr/bin/env python3
"""gRPC throughput of iommud next to a bare grpc.aio server, in one run.

The baseline is a bare `grpc.aio` server in its own process (this script
with --serve-bare), serving IommuService.Echo with an empty handler on a
UNIX socket: what Python gRPC costs with no framing at all. One run measures
it, then starts a daemon (`python -m iommud`, UNIX socket behind its peer
gate, JSON logs to a file, default log level) and measures, in this order:

- Echo: the baseline, a call that does nothing but pass the same path every
  call takes (token check, logging, error mapping, gRPC, protobuf);
- IoasMap: unary FIXED_IOVA maps of one page, each acknowledged;
- TranslateBatch: addresses translated per second in batches of --batch
  random IOVAs over the mapped areas;
- IoasMapBatch: maps acknowledged per second, 4,096 allocated maps a call
  (each batch then unmapped by one IoasUnmap of the whole space).

Unary calls are measured with one caller in flight and with --inflight
concurrent callers (grpc.aio), since a VMM that pipelines its maps sees the
second figure. The ratio Map/Echo says how much of a Map's cost is the work
rather than the RPC. The whole set runs twice: without and with the durable
journal (`--journal`, synchronous=NORMAL), so its cost is visible.

    python bench/rpc_bench.py [--seconds 3] [--json bench/results/rpc-DATE.json]
"""
from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

import grpc

from iommud_client.client import SESSION_METADATA_KEY
from iommud_wire import pb, pb_grpc

PAGE = 4096
MAP_FLAGS = pb.IOAS_MAP_FLAG_FIXED_IOVA | pb.IOAS_MAP_FLAG_READABLE | pb.IOAS_MAP_FLAG_WRITEABLE


async def serve_bare(sock: str) -> None:
    """The baseline: Echo with an empty handler, no interceptors, no checks."""
    async def echo(request: pb.EchoRequest, context: grpc.aio.ServicerContext) -> pb.EchoResponse:
        return pb.EchoResponse()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=pb.EchoRequest.FromString,
        response_serializer=pb.EchoResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "iommud.v1.IommuService", {"Echo": handler}),))
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    await server.wait_for_termination()


def start_bare(tmp: str) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(tmp, "bare.sock")
    proc = subprocess.Popen([sys.executable, __file__, "--serve-bare", sock])
    return proc, f"unix:{sock}"


async def measure_bare(endpoint: str, seconds: float, inflight: int) -> dict:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = pb_grpc.IommuServiceStub(channel)
        await wait_ready(stub)
        req = pb.EchoRequest(payload=b"x" * 48)

        async def echo(_i: int) -> None:
            await stub.Echo(req)

        await rate(echo, 1.0, inflight)
        return {"serial_rps": await rate(echo, seconds, 1),
                f"inflight{inflight}_rps": await rate(echo, seconds, inflight)}


def start_daemon(tmp: str, journal: bool) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(tmp, "iommud.sock")
    args = [sys.executable, "-m", "iommud", "--socket", sock, "--log-format", "json",
            "--dma-entry-limit", str(1 << 30)]
    if journal:
        args += ["--journal", os.path.join(tmp, "journal.db")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    with open(os.path.join(tmp, "iommud.log"), "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, f"unix:{sock}"


async def wait_ready(stub: pb_grpc.IommuServiceStub) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await stub.Echo(pb.EchoRequest(), timeout=1, wait_for_ready=True)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise


async def rate(call, seconds: float, inflight: int) -> float:
    """Completed calls per second, with `inflight` callers looping for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < deadline:
            await call(i)
            i += inflight
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(inflight)))
    return done / (time.perf_counter() - started)


async def measure(endpoint: str, seconds: float, inflight: int, batch: int,
                  areas: int) -> dict:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = pb_grpc.IommuServiceStub(channel)
        await wait_ready(stub)
        token = (await stub.OpenSession(pb.OpenSessionRequest(client_name="bench"))).token
        md = ((SESSION_METADATA_KEY, token),)
        fd = (await stub.OpenContext(pb.OpenContextRequest(), metadata=md)).iommufd
        ioas = (await stub.IoasAlloc(pb.IoasAllocRequest(iommufd=fd), metadata=md)).out_ioas_id
        echo_req = pb.EchoRequest(payload=b"x" * 48)

        async def echo(_i: int) -> None:
            await stub.Echo(echo_req, metadata=md)

        base = 1 << 32
        next_iova = [base]

        async def ioas_map(_i: int) -> None:
            iova = next_iova[0]
            next_iova[0] += 2 * PAGE
            await stub.IoasMap(pb.IoasMapRequest(iommufd=fd, ioas_id=ioas, flags=MAP_FLAGS,
                                                 user_va=0x7F00_0000_0000 + iova, length=PAGE,
                                                 iova=iova), metadata=md)

        out: dict = {}
        await rate(echo, 1.0, inflight)          # warm up channel, server and caches
        for label, n in (("serial", 1), (f"inflight{inflight}", inflight)):
            out[f"echo_{label}_rps"] = await rate(echo, seconds, n)
            out[f"map_{label}_rps"] = await rate(ioas_map, seconds, n)
            out[f"map_over_echo_{label}"] = out[f"map_{label}_rps"] / out[f"echo_{label}_rps"]
        mapped = (next_iova[0] - base) // (2 * PAGE)
        # Top up to `areas` areas so the batch translates over a realistic tree.
        while mapped < areas:
            await asyncio.gather(*(ioas_map(0) for _ in range(min(256, areas - mapped))))
            mapped = (next_iova[0] - base) // (2 * PAGE)
        rng = random.Random(1)
        iovas = array.array("Q", (base + 2 * PAGE * rng.randrange(mapped) + rng.randrange(PAGE)
                                  for _ in range(batch)))
        req = pb.TranslateBatchRequest(iommufd=fd, ioas_id=ioas, iovas=iovas.tobytes())
        first = await stub.TranslateBatch(req, metadata=md)
        assert first.mapped_count == batch, "every benchmarked IOVA is mapped"

        async def translate(_i: int) -> None:
            await stub.TranslateBatch(req, metadata=md)

        calls = await rate(translate, seconds, 1)
        out["translate_batch_calls_per_s"] = calls
        out["translated_addresses_per_s"] = calls * batch
        calls = await rate(translate, seconds, inflight)
        out[f"translated_addresses_per_s_inflight{inflight}"] = calls * batch
        out["areas"] = mapped
        # IoasMapBatch: 4,096 allocated one-page maps per call, then one
        # IoasUnmap of everything; maps acknowledged per second.
        ioas_b = (await stub.IoasAlloc(pb.IoasAllocRequest(iommufd=fd), metadata=md)).out_ioas_id
        count = 4096
        breq = pb.IoasMapBatchRequest(
            iommufd=fd, ioas_id=ioas_b, flags=MAP_FLAGS & ~pb.IOAS_MAP_FLAG_FIXED_IOVA,
            user_vas=array.array("Q", (0x7F00_0000_0000 + k * PAGE for k in range(count))).tobytes(),
            lengths=array.array("Q", [PAGE] * count).tobytes())
        ureq = pb.IoasUnmapRequest(iommufd=fd, ioas_id=ioas_b, iova=0, length=(1 << 64) - 1)

        async def map_batch(_i: int) -> None:
            await stub.IoasMapBatch(breq, metadata=md)
            await stub.IoasUnmap(ureq, metadata=md)

        out["map_batch_maps_per_s"] = await rate(map_batch, seconds, 1) * count
        await stub.CloseSession(pb.CloseSessionRequest(), metadata=md)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--areas", type=int, default=65536)
    ap.add_argument("--json", default="")
    ap.add_argument("--serve-bare", metavar="SOCK", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        asyncio.run(serve_bare(args.serve_bare))
        return
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = start_bare(tmp)
        try:
            results["bare"] = asyncio.run(measure_bare(endpoint, args.seconds, args.inflight))
        finally:
            proc.terminate()
            proc.wait(30)
    for journal in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            proc, endpoint = start_daemon(tmp, journal)
            try:
                results["journal" if journal else "no_journal"] = asyncio.run(
                    measure(endpoint, args.seconds, args.inflight, args.batch, args.areas))
            finally:
                proc.terminate()
                proc.wait(30)
    results.update(seconds_per_figure=args.seconds, inflight=args.inflight, batch=args.batch,
                   machine=f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"Python {platform.python_version()}, grpcio {grpc.__version__}",
                   date=time.strftime("%Y-%m-%d"))
    bare = results["bare"]
    print("[bare grpc.aio server, empty Echo handler]")
    for label in ("serial", f"inflight{args.inflight}"):
        print(f"  {label:>10}: Echo {bare[f'{label}_rps']:8,.0f}/s")
    for mode in ("no_journal", "journal"):
        r = results[mode]
        print(f"[{mode}]")
        for label in ("serial", f"inflight{args.inflight}"):
            base = bare[f"{label}_rps"]
            r[f"echo_over_bare_{label}"] = r[f"echo_{label}_rps"] / base
            r[f"map_over_bare_{label}"] = r[f"map_{label}_rps"] / base
            print(f"  {label:>10}: Echo {r[f'echo_{label}_rps']:8,.0f}/s ({r[f'echo_over_bare_{label}']:.2f}"
                  f" of bare)  IoasMap {r[f'map_{label}_rps']:8,.0f}/s "
                  f"({r[f'map_over_bare_{label}']:.2f} of bare)")
        print(f"  TranslateBatch x{args.batch}: {r['translated_addresses_per_s'] / 1e6:.1f} M "
              f"addresses/s serial, {r[f'translated_addresses_per_s_inflight{args.inflight}'] / 1e6:.1f}"
              f" M/s with {args.inflight} in flight ({r['areas']:,} areas)")
        print(f"  IoasMapBatch x4096 (+ one unmap-all): {r['map_batch_maps_per_s']:,.0f} maps/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=lambda v: round(v, 3))
            fh.write("\n")


if __name__ == "__main__":
    main()
