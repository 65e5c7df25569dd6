"""Types that survive `with`: mypy, with the project's configuration, sees the
concrete classes through chained `with` and `async with` blocks, and the
exact signatures of the operations bound from `_ops`."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent("""
    from iommud_client import Client
    from iommud_client.aio import AsyncClient

    with Client() as c, c.open_session("vmm") as s, s.open_context() as ctx:
        reveal_type(c)
        reveal_type(s)
        reveal_type(ctx)
        reveal_type(ctx.ioas_map(1, user_va=0x1000, length=0x1000))
        reveal_type(ctx.translate(1, 0x1000))
        reveal_type(s.lease_keeper)
        with s.open_container() as cont, s.open_group(12) as grp, \\
                grp.get_device_fd("0000:03:00.0") as dev, ctx.create_access(1) as acc:
            reveal_type(cont)
            reveal_type(grp)
            reveal_type(dev)
            reveal_type(acc)
            reveal_type(dev.attach)

    async def main() -> None:
        async with AsyncClient() as ac, await ac.open_session("vmm") as as_, \\
                await as_.open_context() as actx:
            reveal_type(ac)
            reveal_type(as_)
            reveal_type(actx)
            reveal_type(await actx.ioas_map(1, user_va=0x1000, length=0x1000))
            reveal_type(as_.lease_keeper)
            async with await as_.open_container() as acont, await as_.open_device("x") as adev:
                reveal_type(acont)
                reveal_type(adev)
""")

EXPECTED = [
    "iommud_client.client.Client",
    "iommud_client.client.Session",
    "iommud_client.client.Context",
    "int",
    "iommud_client._ops.Translation",
    "iommud_client.lease.LeaseKeeper | None",
    "iommud_client.client.Container",
    "iommud_client.client.Group",
    "iommud_client.client.DeviceFd",
    "iommud_client.client.Access",
    "def (pt_id: int, pasid: int | None =, *, flags: int | None =)"
    " -> int",
    "iommud_client.aio.AsyncClient",
    "iommud_client.aio.AsyncSession",
    "iommud_client.aio.AsyncContext",
    "int",
    "iommud_client.aio.AsyncLeaseKeeper | None",
    "iommud_client.aio.AsyncContainer",
    "iommud_client.aio.AsyncDeviceFd",
]


def test_with_blocks_reveal_the_concrete_classes(tmp_path: pathlib.Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    # The editable install is an import hook mypy cannot follow: point it at the sources.
    env = {**os.environ, "MYPYPATH": os.pathsep.join([str(ROOT / "clients"),
                                                      str(ROOT / "proto" / "python")])}
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--show-traceback", "--no-pretty",
         "--no-error-summary", str(snippet)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    revealed = [m.group(1) for m in re.finditer(r'Revealed type is "(.*)"', out.stdout)]
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert errors == [], out.stdout
    assert revealed == EXPECTED, out.stdout
