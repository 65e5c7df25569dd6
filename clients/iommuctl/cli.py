"""iommuctl: drive an iommud daemon by hand.

Each run is a process, but iommud objects live in a session; iommuctl keeps a
session token and a default iommufd per endpoint in a small state file and
re-creates them when the daemon no longer knows them (ESRCH, EBADF).
"""
from __future__ import annotations

import errno as E
import hashlib
import json
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click
import grpc

from iommud_client import Client, Container, Context, Group, IommudError, Session
from iommud_wire import pb
from iommud_wire.uapi import U64_MAX

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
_TRANSPORT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_SIZE = re.compile(r"(?i)^\s*(0x[0-9a-f]+|\d+)\s*([kmgtp]?)i?b?\s*$")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}

EPILOG = """\b
Exit codes:
  0  success
  1  the daemon refused the call (the errno is printed on stderr)
  2  usage error
  3  the daemon cannot be reached
Numbers accept hex (0x1000), decimal and size suffixes (4K, 2M, 1G, 1T)."""


def parse_number(text: str) -> int:
    """Hex, decimal, or a size with a K/M/G/T/P suffix (powers of 1024)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a number (hex, decimal or a size like 4K, 2M, 1G)")
    value = int(m.group(1), 0) << _SHIFT[m.group(2).lower()]
    if value > U64_MAX:
        raise ValueError(f"{text!r} does not fit in 64 bits")
    return value


class Number(click.ParamType):  # type: ignore[type-arg]
    name = "NUMBER"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_number(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class RangeArg(click.ParamType):  # type: ignore[type-arg]
    name = "START-LAST"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        start, sep, last = str(value).partition("-")
        try:
            if not sep:
                raise ValueError("missing '-'")
            return parse_number(start), parse_number(last)
        except ValueError as exc:
            self.fail(f"{value!r} is not START-LAST: {exc}", param, ctx)


NUMBER = Number()


# -- state and output ---------------------------------------------------------

def state_dir() -> pathlib.Path:
    explicit = os.environ.get("IOMMUCTL_STATE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return pathlib.Path(base) / "iommuctl"


class App:
    def __init__(self, endpoint: str | None, output: str, timeout: float,
                 token: str | None, iommufd: int | None,
                 tls: tuple[str | None, str | None, str | None] = (None, None, None)) -> None:
        self.client = Client(endpoint, timeout=timeout, tls_ca=tls[0], tls_cert=tls[1],
                             tls_key=tls[2])
        self.output = output
        self.explicit_token = token
        self.explicit_fd = iommufd
        key = hashlib.sha256(self.client.endpoint.encode()).hexdigest()[:16]
        self.state_path = state_dir() / f"{key}.json"

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a secret
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        tmp.replace(self.state_path)

    def session(self) -> Session:
        """The session to act in: explicit, remembered, or a new one."""
        if self.explicit_token:
            return self.client.attach_session(self.explicit_token)
        state = self._load()
        if state.get("token"):
            try:
                return self.client.attach_session(state["token"])
            except IommudError as err:
                if err.errno != E.ESRCH:
                    raise
        sess = self.client.open_session("iommuctl", lease_seconds=3600)
        self._save({"token": sess.token, "session_id": sess.session_id})
        return sess

    def context(self) -> Context:
        """The iommufd to act on: explicit, remembered, or a new one."""
        sess = self.session()
        if self.explicit_fd is not None:
            return sess.context(self.explicit_fd)
        state = self._load()
        fd = state.get("iommufd")
        if fd is not None and state.get("token") == sess.token:
            ctx = sess.context(fd)
            try:
                ctx.list_objects()
                return ctx
            except IommudError as err:
                if err.errno not in (E.EBADF, E.ENOTTY):
                    raise
        ctx = sess.open_context()
        if not self.explicit_token:
            state = self._load()
            state["iommufd"] = ctx.iommufd
            self._save(state)
        return ctx

    def forget(self) -> None:
        self.state_path.unlink(missing_ok=True)

    def emit(self, data: Any, table: Callable[[], None] | None = None) -> None:
        if self.output == "json":
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif table is not None:
            table()
        else:
            click.echo(data if not isinstance(data, dict) else
                       "\n".join(f"{k}: {v}" for k, v in data.items()))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def perms(prot: int) -> str:
    return ("r" if prot & 4 else "-") + ("w" if prot & 2 else "-")


def fail(err: IommudError) -> NoReturn:
    click.echo(f"iommuctl: {err.errno_name}: {err.message}", err=True)
    if err.code in _TRANSPORT_CODES and err.errno_name == "EIO":
        sys.exit(EXIT_UNREACHABLE)
    sys.exit(EXIT_REFUSED)


class ErrnoGroup(click.Group):
    """Turns every IommudError into one stderr line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IommudError as err:
            fail(err)


# -- commands ------------------------------------------------------------------

@click.group(cls=ErrnoGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoint", envvar="IOMMUD_ENDPOINT", default=None,
              help="Daemon endpoint: unix:/path, a socket path, or host:port "
                   "[env IOMMUD_ENDPOINT; default: the daemon's default socket].")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Per-call deadline in seconds.")
@click.option("--session", "token", envvar="IOMMUD_SESSION", default=None,
              help="Session token to act in [env IOMMUD_SESSION].")
@click.option("--iommufd", type=int, envvar="IOMMUD_IOMMUFD", default=None,
              help="Context fd to act on [env IOMMUD_IOMMUFD].")
@click.option("--tls-ca", envvar="IOMMUD_TLS_CA", default=None,
              help="CA bundle to verify a TLS daemon [env IOMMUD_TLS_CA].")
@click.option("--tls-cert", envvar="IOMMUD_TLS_CERT", default=None,
              help="Client certificate for mutual TLS [env IOMMUD_TLS_CERT].")
@click.option("--tls-key", envvar="IOMMUD_TLS_KEY", default=None,
              help="Client key for mutual TLS [env IOMMUD_TLS_KEY].")
@click.pass_context
def cli(ctx: click.Context, endpoint: str | None, output: str, timeout: float,
        token: str | None, iommufd: int | None, tls_ca: str | None, tls_cert: str | None,
        tls_key: str | None) -> None:
    """Drive iommud, the userspace /dev/iommu (iommufd) control plane."""
    ctx.obj = App(endpoint, output, timeout, token, iommufd, (tls_ca, tls_cert, tls_key))


@cli.command()
@click.pass_obj
def health(app: App) -> None:
    """Ask the gRPC health service; exit 0 only when SERVING."""
    status = app.client.health()
    app.emit({"status": status}, lambda: click.echo(status))
    if status != "SERVING":
        sys.exit(EXIT_REFUSED)


@cli.command()
@click.pass_obj
def info(app: App) -> None:
    """Daemon version, page size, limits and object counts."""
    resp = app.session().info()
    fields = ("sessions", "contexts", "objects", "ioas", "hwpts", "devices", "device_fds",
              "areas", "mapped_bytes")
    data: dict[str, Any] = {"version": resp.version, "core_version": resp.core_version,
            "page_size": resp.page_size, "group_stage": resp.group_stage,
            "topology": resp.topology_source, "session_id": resp.session_id,
            "limits": {f.name: getattr(resp.limits, f.name) for f in resp.limits.DESCRIPTOR.fields},
            "daemon": {f: getattr(resp.daemon, f) for f in fields},
            "session": {f: getattr(resp.session, f) for f in fields}}

    def table() -> None:
        click.echo(f"iommud {resp.version} (core {resp.core_version}), page size "
                   f"{resp.page_size:#x}, group stage {resp.group_stage}, topology "
                   f"{resp.topology_source}")
        print_table(["counter", "daemon", "session"],
                    [(f, data["daemon"][f], data["session"][f]) for f in fields])
        print_table(["limit", "value"], list(data["limits"].items()))

    app.emit(data, table)


@cli.group()
def session() -> None:
    """Sessions: open one to share across commands, or close it."""


@session.command("open")
@click.option("--name", default="iommuctl")
@click.option("--lease", type=int, default=3600, show_default=True, help="Lease in seconds.")
@click.pass_obj
def session_open(app: App, name: str, lease: int) -> None:
    """Open a session; prints its token (export it as IOMMUD_SESSION)."""
    sess = app.client.open_session(name, lease_seconds=lease)
    app.emit({"token": sess.token, "session_id": sess.session_id, "lease_seconds": sess.lease_seconds},
             lambda: click.echo(f"export IOMMUD_SESSION={sess.token}  # {sess.session_id}, "
                                f"lease {sess.lease_seconds}s"))


@session.command("close")
@click.pass_obj
def session_close(app: App) -> None:
    """Close the session: every context and device fd in it is closed."""
    closed = app.session().close()
    if not app.explicit_token:
        app.forget()
    app.emit({"closed_fds": closed}, lambda: click.echo(f"closed {closed} fd(s)"))


@cli.group()
def context() -> None:
    """iommufd contexts (open fds of /dev/iommu)."""


@context.command("open")
@click.pass_obj
def context_open(app: App) -> None:
    """Open a new context and print its fd."""
    ctx = app.session().open_context()
    app.emit({"iommufd": ctx.iommufd}, lambda: click.echo(ctx.iommufd))


@context.command("close")
@click.argument("iommufd", type=int)
@click.pass_obj
def context_close(app: App, iommufd: int) -> None:
    """Close a context: every object in it is destroyed."""
    n = app.session().context(iommufd).close()
    app.emit({"destroyed_objects": n}, lambda: click.echo(f"destroyed {n} object(s)"))


@cli.group()
def ioas() -> None:
    """I/O address spaces."""


@ioas.command("create")
@click.pass_obj
def ioas_create(app: App) -> None:
    """IOMMU_IOAS_ALLOC; prints the new ioas_id."""
    ctx = app.context()
    ioas_id = ctx.ioas_alloc()
    app.emit({"ioas_id": ioas_id, "iommufd": ctx.iommufd}, lambda: click.echo(ioas_id))


@ioas.command("list")
@click.pass_obj
def ioas_list(app: App) -> None:
    """The IOAS objects of the context."""
    objs = [o for o in app.context().list_objects() if o.type == pb.OBJECT_TYPE_IOAS]
    app.emit([{"ioas_id": o.id, "areas": o.areas, "mapped_bytes": o.mapped_bytes, "users": o.users}
              for o in objs],
             lambda: print_table(["IOAS", "AREAS", "MAPPED", "USERS"],
                                 [(o.id, o.areas, hex(o.mapped_bytes), o.users) for o in objs]))


@ioas.command("show")
@click.argument("ioas_id", type=int)
@click.pass_obj
def ioas_show(app: App, ioas_id: int) -> None:
    """One IOAS: its areas, usable IOVA ranges and alignment."""
    ctx = app.context()
    areas = ctx.list_areas(ioas_id)
    ranges, align = ctx.ioas_iova_ranges(ioas_id)
    data = {"ioas_id": ioas_id, "iova_alignment": align,
            "iova_ranges": [{"start": r.start, "last": r.last} for r in ranges],
            "areas": [{"iova": a.iova, "length": a.length, "user_va": a.user_va, "prot": a.prot}
                      for a in areas]}

    def table() -> None:
        click.echo(f"IOAS {ioas_id}: alignment {align:#x}; usable ranges "
                   + ", ".join(f"{r.start:#x}-{r.last:#x}" for r in ranges))
        print_table(["IOVA", "LAST", "LENGTH", "USER_VA", "PERM"],
                    [(hex(a.iova), hex(a.iova + a.length - 1), hex(a.length), hex(a.user_va),
                      perms(a.prot)) for a in areas])

    app.emit(data, table)


@ioas.command("destroy")
@click.argument("object_id", type=int)
@click.pass_obj
def ioas_destroy(app: App, object_id: int) -> None:
    """IOMMU_DESTROY of an IOAS (or any object id)."""
    app.context().destroy(object_id)
    app.emit({"destroyed": object_id}, lambda: click.echo(f"destroyed {object_id}"))


@ioas.command("map")
@click.argument("ioas_id", type=int)
@click.option("--length", type=NUMBER, required=True)
@click.option("--iova", type=NUMBER, default=None, help="FIXED_IOVA; omit to let the daemon pick.")
@click.option("--user-va", "--pa", "user_va", type=NUMBER, default=0,
              help="The physical or user address to map.")
@click.option("--readonly", is_flag=True, help="READABLE only.")
@click.option("--writeonly", is_flag=True, help="WRITEABLE only.")
@click.option("--flags", type=NUMBER, default=None, help="Raw IOAS_MAP flags (overrides the above).")
@click.pass_obj
def ioas_map(app: App, ioas_id: int, length: int, iova: int | None, user_va: int,
             readonly: bool, writeonly: bool, flags: int | None) -> None:
    """IOMMU_IOAS_MAP; prints the IOVA of the new area."""
    if readonly and writeonly:
        raise click.UsageError("--readonly and --writeonly exclude each other")
    got = app.context().ioas_map(ioas_id, user_va, length, iova, readable=not writeonly,
                                 writeable=not readonly, flags=flags)
    app.emit({"iova": got, "length": length, "user_va": user_va}, lambda: click.echo(hex(got)))


@ioas.command("unmap")
@click.argument("ioas_id", type=int)
@click.option("--iova", type=NUMBER, default=None)
@click.option("--length", type=NUMBER, default=None)
@click.option("--all", "unmap_all", is_flag=True, help="iova 0, length 2^64-1: everything.")
@click.pass_obj
def ioas_unmap(app: App, ioas_id: int, iova: int | None, length: int | None,
               unmap_all: bool) -> None:
    """IOMMU_IOAS_UNMAP; prints the bytes unmapped (whole areas only)."""
    if unmap_all == (iova is not None or length is not None) or (
            not unmap_all and (iova is None or length is None)):
        raise click.UsageError("give --iova and --length, or --all")
    ctx = app.context()
    if unmap_all:
        n = ctx.ioas_unmap_all(ioas_id)
    else:
        assert iova is not None and length is not None  # checked above
        n = ctx.ioas_unmap(ioas_id, iova, length)
    app.emit({"unmapped": n}, lambda: click.echo(hex(n)))


@ioas.command("translate")
@click.argument("ioas_id", type=int)
@click.argument("iovas", type=NUMBER, nargs=-1, required=True)
@click.pass_obj
def ioas_translate(app: App, ioas_id: int, iovas: tuple[int, ...]) -> None:
    """IOVA -> PA and permissions (one address: Translate; several: TranslateBatch)."""
    ctx = app.context()
    if len(iovas) == 1:
        t = ctx.translate(ioas_id, iovas[0])
        rows = [(t.iova, t.pa, t.prot)]
    else:
        res = ctx.translate_batch(ioas_id, list(iovas))
        rows = [(i, res.pas[k], res.prots[k]) for k, i in enumerate(iovas)]
    app.emit([{"iova": i, "pa": pa if prot else None, "prot": prot} for i, pa, prot in rows],
             lambda: print_table(["IOVA", "PA", "PERM"],
                                 [(hex(i), hex(pa) if prot else "unmapped", perms(prot))
                                  for i, pa, prot in rows]))


@ioas.command("ranges")
@click.argument("ioas_id", type=int)
@click.pass_obj
def ioas_ranges(app: App, ioas_id: int) -> None:
    """IOMMU_IOAS_IOVA_RANGES."""
    ranges, align = app.context().ioas_iova_ranges(ioas_id)
    app.emit({"iova_alignment": align, "ranges": [{"start": r.start, "last": r.last} for r in ranges]},
             lambda: print_table(["START", "LAST"], [(hex(r.start), hex(r.last)) for r in ranges]))


@ioas.command("allow")
@click.argument("ioas_id", type=int)
@click.argument("ranges", type=RangeArg(), nargs=-1)
@click.pass_obj
def ioas_allow(app: App, ioas_id: int, ranges: tuple[tuple[int, int], ...]) -> None:
    """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list (none clears it)."""
    app.context().ioas_allow_iovas(ioas_id, list(ranges))
    app.emit({"allowed": [{"start": s, "last": last} for s, last in ranges]},
             lambda: click.echo(f"{len(ranges)} allowed range(s)"))


# -- the host: devices, groups, drivers ----------------------------------------------

@cli.group()
def device() -> None:
    """Host devices and device fds."""


def _device_rows(devs: Sequence[pb.HostDevice]) -> list[tuple[object, ...]]:
    return [(d.name, d.group, f"{d.vendor:04x}:{d.device:04x}", f"{d.class_code:06x}",
             d.driver or "-", "yes" if d.user_open else "no", d.description) for d in devs]


@device.command("list")
@click.pass_obj
def device_list(app: App) -> None:
    """Devices with their group, ids, class and host driver (like lspci -k)."""
    devs = app.session().list_devices()
    app.emit([{"name": d.name, "group": d.group, "vendor": d.vendor, "device": d.device,
               "class": d.class_code, "driver": d.driver, "user_open": d.user_open,
               "description": d.description} for d in devs],
             lambda: print_table(["DEVICE", "GROUP", "ID", "CLASS", "DRIVER", "OPEN", "DESCRIPTION"],
                                 _device_rows(devs)))


@cli.group()
def group() -> None:
    """IOMMU groups and their DMA ownership."""


@group.command("list")
@click.pass_obj
def group_list(app: App) -> None:
    """Groups: members, viability, owner and domain."""
    groups = app.session().list_groups()
    owners = {v.number: v.name.removeprefix("GROUP_OWNER_").lower()
              for v in pb.GroupOwner.DESCRIPTOR.values}
    app.emit([{"group": g.group, "devices": list(g.devices), "viable": g.viable,
               "owner": owners[g.owner], "owner_cnt": g.owner_cnt, "domain": g.domain}
              for g in groups],
             lambda: print_table(["GROUP", "VIABLE", "OWNER", "USERS", "DOMAIN", "DEVICES"],
                                 [(g.group, "yes" if g.viable else "no", owners[g.owner],
                                   g.owner_cnt, g.domain, " ".join(g.devices)) for g in groups]))


@cli.group()
def driver() -> None:
    """Host driver binding (admin)."""


@driver.command("bind")
@click.argument("device_name")
@click.argument("driver_name")
@click.pass_obj
def driver_bind(app: App, device_name: str, driver_name: str) -> None:
    """Probe DRIVER_NAME onto DEVICE_NAME (EBUSY while its group is user-owned)."""
    app.session().bind_host_driver(device_name, driver_name)
    app.emit({"device": device_name, "driver": driver_name},
             lambda: click.echo(f"{device_name}: bound to {driver_name}"))


@driver.command("unbind")
@click.argument("device_name")
@click.pass_obj
def driver_unbind(app: App, device_name: str) -> None:
    """Unbind DEVICE_NAME's host driver."""
    app.session().unbind_host_driver(device_name)
    app.emit({"device": device_name}, lambda: click.echo(f"{device_name}: unbound"))


# -- the legacy VFIO container/group API ------------------------------------------------

_IOMMU_TYPES = {"type1": 1, "type1v2": 3}
_EXTENSIONS = {"type1": 1, "spapr_tce": 2, "type1v2": 3, "dma_cc_iommu": 4, "eeh": 5,
               "nesting": 6, "spapr_tce_v2": 7, "noiommu": 8, "unmap_all": 9,
               "update_vaddr": 10}


@cli.group()
def compat() -> None:
    """The legacy VFIO container/group calls, named as VFIO names them.

    \b
    iommuctl compat container-open                      # /dev/vfio/vfio -> container fd
    iommuctl compat group-open 12                       # /dev/vfio/12   -> group fd
    iommuctl compat group-set-container GROUP_FD CONTAINER_FD
    iommuctl compat set-iommu CONTAINER_FD type1v2
    iommuctl compat map-dma CONTAINER_FD --iova 0x100000 --size 2M --vaddr 0x7f0000000000
    """


@compat.command("container-open")
@click.pass_obj
def compat_container_open(app: App) -> None:
    """open("/dev/vfio/vfio"); prints the container fd."""
    cont = app.session().open_container()
    app.emit({"container_fd": cont.iommufd}, lambda: click.echo(cont.iommufd))


@compat.command("get-api-version")
@click.argument("container_fd", type=int)
@click.pass_obj
def compat_api_version(app: App, container_fd: int) -> None:
    """VFIO_GET_API_VERSION."""
    v = Container(app.session(), container_fd).get_api_version()
    app.emit({"version": v}, lambda: click.echo(v))


@compat.command("check-extension")
@click.argument("container_fd", type=int)
@click.argument("extension", type=click.Choice(sorted(_EXTENSIONS)))
@click.pass_obj
def compat_check_extension(app: App, container_fd: int, extension: str) -> None:
    """VFIO_CHECK_EXTENSION."""
    v = Container(app.session(), container_fd).check_extension(_EXTENSIONS[extension])
    app.emit({"extension": extension, "value": v}, lambda: click.echo(v))


@compat.command("set-iommu")
@click.argument("container_fd", type=int)
@click.argument("iommu_type", type=click.Choice(sorted(_IOMMU_TYPES)), default="type1v2")
@click.pass_obj
def compat_set_iommu(app: App, container_fd: int, iommu_type: str) -> None:
    """VFIO_SET_IOMMU."""
    Container(app.session(), container_fd).set_iommu(_IOMMU_TYPES[iommu_type])
    app.emit({"iommu_type": iommu_type}, lambda: click.echo(f"IOMMU type {iommu_type}"))


@compat.command("iommu-get-info")
@click.argument("container_fd", type=int)
@click.pass_obj
def compat_get_info(app: App, container_fd: int) -> None:
    """VFIO_IOMMU_GET_INFO with its capabilities."""
    info = Container(app.session(), container_fd).iommu_get_info()
    data = {"flags": info.flags, "iova_pgsizes": info.iova_pgsizes,
            "iova_ranges": [{"start": r.start, "last": r.last} for r in info.iova_ranges],
            "dma_avail": info.dma_avail if info.HasField("dma_avail") else None,
            "migration": info.HasField("migration")}

    def table() -> None:
        click.echo(f"iova_pgsizes {info.iova_pgsizes:#x}; dma_avail {data['dma_avail']}; "
                   f"migration cap {'yes' if data['migration'] else 'no'}")
        print_table(["START", "LAST"], [(hex(r.start), hex(r.last)) for r in info.iova_ranges])

    app.emit(data, table)


@compat.command("map-dma")
@click.argument("container_fd", type=int)
@click.option("--iova", type=NUMBER, required=True)
@click.option("--size", type=NUMBER, required=True)
@click.option("--vaddr", type=NUMBER, default=0)
@click.option("--flags", type=NUMBER, default=3, show_default=True, help="READ 1 | WRITE 2.")
@click.pass_obj
def compat_map_dma(app: App, container_fd: int, iova: int, size: int, vaddr: int,
                   flags: int) -> None:
    """VFIO_IOMMU_MAP_DMA."""
    Container(app.session(), container_fd).map_dma(iova, size, vaddr, flags=flags)
    app.emit({"iova": iova, "size": size}, lambda: click.echo(f"mapped {size:#x} at {iova:#x}"))


@compat.command("unmap-dma")
@click.argument("container_fd", type=int)
@click.option("--iova", type=NUMBER, default=0)
@click.option("--size", type=NUMBER, default=0)
@click.option("--all", "unmap_all", is_flag=True, help="VFIO_DMA_UNMAP_FLAG_ALL.")
@click.pass_obj
def compat_unmap_dma(app: App, container_fd: int, iova: int, size: int, unmap_all: bool) -> None:
    """VFIO_IOMMU_UNMAP_DMA; prints the bytes unmapped."""
    resp = Container(app.session(), container_fd).unmap_dma(iova, size, flags=2 if unmap_all else 0)
    app.emit({"size": resp.size}, lambda: click.echo(hex(resp.size)))


@compat.command("group-open")
@click.argument("group", type=int)
@click.pass_obj
def compat_group_open(app: App, group: int) -> None:
    """open("/dev/vfio/<group>"); prints the group fd."""
    grp = app.session().open_group(group)
    app.emit({"group_fd": grp.group_fd}, lambda: click.echo(grp.group_fd))


def _group(app: App, group_fd: int) -> Group:
    return Group(app.session(), group_fd, -1)


@compat.command("group-get-status")
@click.argument("group_fd", type=int)
@click.pass_obj
def compat_group_status(app: App, group_fd: int) -> None:
    """VFIO_GROUP_GET_STATUS: VIABLE and CONTAINER_SET."""
    flags = _group(app, group_fd).get_status()
    names = [n for bit, n in ((1, "VIABLE"), (2, "CONTAINER_SET")) if flags & bit]
    app.emit({"flags": flags, "names": names}, lambda: click.echo(" | ".join(names) or "0"))


@compat.command("group-set-container")
@click.argument("group_fd", type=int)
@click.argument("container_fd", type=int)
@click.pass_obj
def compat_group_set_container(app: App, group_fd: int, container_fd: int) -> None:
    """VFIO_GROUP_SET_CONTAINER."""
    _group(app, group_fd).set_container(container_fd)
    app.emit({"group_fd": group_fd, "container_fd": container_fd},
             lambda: click.echo(f"group fd {group_fd} -> container fd {container_fd}"))


@compat.command("group-unset-container")
@click.argument("group_fd", type=int)
@click.pass_obj
def compat_group_unset_container(app: App, group_fd: int) -> None:
    """VFIO_GROUP_UNSET_CONTAINER."""
    _group(app, group_fd).unset_container()
    app.emit({"group_fd": group_fd}, lambda: click.echo(f"group fd {group_fd} unset"))


@compat.command("group-get-device-fd")
@click.argument("group_fd", type=int)
@click.argument("name")
@click.pass_obj
def compat_group_get_device_fd(app: App, group_fd: int, name: str) -> None:
    """VFIO_GROUP_GET_DEVICE_FD; prints the device fd."""
    dev = _group(app, group_fd).get_device_fd(name)
    app.emit({"device_fd": dev.device_fd}, lambda: click.echo(dev.device_fd))


from iommuctl import admin as _admin  # noqa: E402, F401  (registers `iommuctl admin ...`)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="iommuctl", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
