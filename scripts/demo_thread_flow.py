#!/usr/bin/env python3
"""Replay the 2021 design thread's device-centric flow against a running
iommud on its default topology:

  open a device fd -> bind it to an iommufd (claims the group, DMA blocked)
  -> attach to an IOAS (automatic HWPT, MSI window reserved) -> map -> DMA
  -> a non-IOMMU-safe driver tries to probe a sibling and is refused (EBUSY)
  -> close the device fd (unbind) -> the group is released and the probe works.

Usage: python scripts/demo_thread_flow.py [--endpoint unix:/path.sock]
Exits non-zero if any step does not behave as the thread and the kernel say.
"""
from __future__ import annotations

import argparse
import sys

from iommud_client import Client, DmaAccess, IommudError

#: The default topology's two-function card behind a bridge without ACS.
DEVICE = "0000:05:00.0"
SIBLING = "0000:05:00.1"


def step(msg: str) -> None:
    print(f"== {msg}")


def expect_errno(fn, name: str) -> IommudError:
    try:
        fn()
    except IommudError as err:
        if err.errno_name != name:
            raise SystemExit(f"expected {name}, got {err}") from err
        print(f"   refused as expected: {err}")
        return err
    raise SystemExit(f"expected {name}, but the call succeeded")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint")
    args = ap.parse_args()
    with Client(args.endpoint) as client, client.open_session("thread-demo") as s:
        group = next(d.group for d in s.list_devices() if d.name == DEVICE)
        step(f"open {DEVICE} (IOMMU group {group}, shared with {SIBLING})")
        dev = s.open_device(DEVICE)
        expect_errno(lambda: dev.attach(1), "EINVAL")  # limited access until bound

        step("open /dev/iommu and bind the device fd to it")
        ctx = s.open_context()
        dev_id = dev.bind(ctx, cookie=0xC0FFEE)
        g = s.group(group)
        print(f"   dev_id={dev_id}; group owner={g.owner}, domain={g.domain}")
        assert g.domain == "blocking", g

        step("allocate an IOAS and attach: an automatic HWPT is created")
        ioas = ctx.ioas_alloc()
        hwpt = dev.attach(ioas)
        ranges, align = ctx.ioas_iova_ranges(ioas)
        print(f"   hwpt_id={hwpt}; usable IOVA ranges {[(hex(r.start), hex(r.last)) for r in ranges]}"
              f"; alignment {align:#x}")
        assert hwpt != ioas and align == 0x1000

        step("map 2 MiB and let the device DMA into it")
        iova = ctx.ioas_map(ioas, user_va=0x7F00_0000_0000, length=0x20_0000, iova=0x10_0000)
        result = dev.dma([DmaAccess(iova + 0x1234, 8, write=True), DmaAccess(0x9000_0000, 4)])
        print(f"   write -> pa {result.results[0].pa:#x}; read of an unmapped IOVA faults "
              f"(cookie {result.faults[0].cookie:#x})")
        assert result.results[0].ok and result.results[0].pa == 0x7F00_0000_1234
        assert not result.results[1].ok and result.faults[0].cookie == 0xC0FFEE

        step(f"a DMA-API driver tries to probe {SIBLING}: denied instead of BUG_ON")
        s.unbind_host_driver(SIBLING)
        expect_errno(lambda: s.bind_host_driver(SIBLING, "e1000e"), "EBUSY")

        step("close the device fd: unbind, detach, release the group")
        dev.close()
        expect_errno(lambda: dev.info(), "EBADF")
        g = s.group(group)
        print(f"   group owner={g.owner}, domain={g.domain}")
        assert g.domain == "default"
        s.bind_host_driver(SIBLING, "e1000e")
        print(f"   {SIBLING} now probes e1000e; restoring vfio-pci")
        s.unbind_host_driver(SIBLING)
        s.bind_host_driver(SIBLING, "vfio-pci")
        ctx.close()
    print("demo complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
