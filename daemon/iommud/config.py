"""Daemon configuration: flags, then environment, then a TOML file, then
defaults, in that order of precedence.

Every setting has one name used in all three places: `--lease-seconds` on the
command line, IOMMUD_LEASE_SECONDS in the environment, `lease_seconds` in the
file (given by --config or IOMMUD_CONFIG).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import tomllib
from typing import TYPE_CHECKING, Any

from iommud.limits import Limits
from iommud_wire.endpoint import default_socket_path

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENV_PREFIX = "IOMMUD_"


@dataclasses.dataclass
class Config:
    #: UNIX socket path; an empty string disables the socket listener.
    socket: str = dataclasses.field(default_factory=lambda: str(default_socket_path()))
    #: Permission bits of the socket file.
    socket_mode: int = 0o660
    #: The raw uAPI socket (SOCK_SEQPACKET, docs/uapi-transport.md), with the
    #: same mode and access policy; a relative path is taken in the directory
    #: of `socket`. An empty string disables it.
    uapi_socket: str = "iommud.uapi.sock"
    #: Optional TCP listener "host:port"; only loopback hosts are accepted
    #: unless TLS is configured.
    tcp: str = ""
    #: PEM server certificate and key for the TCP listener (TLS).
    tls_cert: str = ""
    tls_key: str = ""
    #: PEM CA bundle for client certificates: set, TLS becomes mutual and
    #: each client certificate's subject CN is the caller's identity.
    tls_client_ca: str = ""
    #: Default session lease and the most a client may ask for, in seconds.
    lease_seconds: int = 30
    lease_max_seconds: int = 3600
    #: How often the reaper looks for expired sessions, in seconds.
    reap_interval: float = 1.0
    max_sessions: int = 1024
    #: Connections on the UNIX socket at once (0: as many as the fd limit
    #: allows, a third of it), and per peer uid; past either a new connection
    #: is closed at once.
    max_connections: int = 0
    max_connections_per_uid: int = 256
    #: A UNIX-socket connection with no bytes either way for this long is
    #: closed (0: never). The daemon pings every live connection more often
    #: (keepalive_seconds), so only dead peers and silent non-gRPC clients
    #: reach it.
    connection_idle_seconds: float = 3600.0
    #: gRPC keepalive: the daemon pings an idle connection this often, and
    #: accepts client pings this often at most (clients pinging faster get
    #: GOAWAY too_many_pings; set your client's keepalive_time_ms at least
    #: this high).
    keepalive_seconds: float = 300.0
    keepalive_min_client_ping_seconds: float = 5.0
    max_contexts_per_session: int = Limits.max_contexts_per_session
    #: Every fd of a session (contexts, device, group, container fds): EMFILE past it.
    max_fds_per_session: int = Limits.max_fds_per_session
    max_objects_per_context: int = Limits.max_objects_per_context
    #: Areas one IOAS may hold: ENOSPC past it.
    max_areas_per_ioas: int = Limits.max_areas_per_ioas
    #: Bytes all of a session's IOASes may map (the pinned-page rlimit analogue): ENOMEM past it.
    max_mapped_bytes_per_session: int = Limits.max_mapped_bytes_per_session
    #: Daemon memory one session's state may hold (areas, domains, dirty bits, objects, fds):
    #: ENOMEM past it.
    max_memory_bytes_per_session: int = Limits.max_memory_bytes_per_session
    #: Most IOVAs one TranslateBatch may carry.
    max_translate_batch: int = 1 << 20
    max_message_bytes: int = 16 << 20
    #: Batches at least this large run off the event loop (the core drops the GIL).
    offload_batch: int = 4096
    #: auto (console on a terminal, JSON otherwise), console or json.
    log_format: str = "auto"
    log_level: str = "info"
    #: With --background, where the detached daemon writes its log.
    log_file: str = ""
    #: Grace period for in-flight RPCs on SIGTERM/SIGINT, in seconds.
    shutdown_grace: float = 5.0
    #: Host topology: "default" (embedded), a .toml/.json file, or "sysfs:<root>".
    topology: str = "default"
    #: The design thread's staged group support: 1, 2 or 3.
    group_stage: int = 2
    #: Behaviour of containers opened with OpenContainer: "type1"
    #: (vfio_iommu_type1.c) or "iommufd" (the kernel's vfio_compat.c).
    vfio_mode: str = "type1"
    #: Type1's per-container mapping limit (the dma_entry_limit module parameter).
    dma_entry_limit: int = 65535
    #: Treat every session as holding CAP_SYS_RESOURCE (IOMMU_OPTION RLIMIT_MODE).
    cap_sys_resource: int = 0
    #: UNIX socket callers allowed (comma-separated uids / gids, primary or
    #: supplementary); empty leaves access to socket_mode. Others get EACCES.
    allow_uids: str = ""
    allow_gids: str = ""
    #: Who may call admin RPCs (host driver binds, hot-plug): UNIX uids
    #: (empty: root and the daemon's own uid) and mutual-TLS identities.
    admin_uids: str = ""
    admin_identities: str = ""
    #: Durable journal (SQLite, WAL): a database path turns it on, ":memory:"
    #: journals without durability (tests), "" turns it off.
    journal: str = ""
    #: "normal" survives a daemon crash; "full" also survives power loss (fsync per call).
    journal_sync: str = "normal"
    #: Debug only: honour `iommud-fail-nth` metadata (fail step N of a call, as
    #: the kernel's fail-nth). Off in production; a call asking for it gets EPERM.
    debug_fail_nth: int = 0
    #: Debug only: serve the kernel selftest's mock IOMMU test operations
    #: (Test* RPCs, IOMMU_TEST_CMD on the raw transport). Off in production;
    #: they answer ENOTTY, as a kernel without CONFIG_IOMMUFD_TEST does.
    debug_selftest: int = 0
    #: Debug only: DebugAdvanceClock may age every lease at once (tests).
    debug_clock: int = 0

    def limits(self) -> Limits:
        """The per-session limits, as the session objects take them."""
        return Limits(max_contexts_per_session=self.max_contexts_per_session,
                      max_fds_per_session=self.max_fds_per_session,
                      max_objects_per_context=self.max_objects_per_context,
                      max_areas_per_ioas=self.max_areas_per_ioas,
                      max_mapped_bytes_per_session=self.max_mapped_bytes_per_session,
                      max_memory_bytes_per_session=self.max_memory_bytes_per_session)



_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(Config(), name))
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is int:
        return int(str(value), 0)
    if kind is float:
        return float(value)
    return str(value)


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    section = data.get("iommud", data)
    unknown = sorted(set(section) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return {k: _coerce(k, v) for k, v in section.items()}


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env:
            out[name] = _coerce(name, env[key])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file (env IOMMUD_CONFIG)")
    for name, _field in _FIELDS.items():
        default = Config().__dict__[name]
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                            metavar=type(default).__name__.upper(),
                            help=f"default {default!r} (env {ENV_PREFIX}{name.upper()})")


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Merge defaults < file < environment < flags."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    config_path = getattr(args, "config", None) or env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        merged.update(load_file(pathlib.Path(config_path)))
    merged.update(from_env(env))
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            merged[name] = _coerce(name, value)
    return Config(**merged)


def parse(argv: Sequence[str] | None = None,
          env: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="iommud", description="iommud: the /dev/iommu (iommufd) control plane over gRPC.")
    add_arguments(parser)
    parser.add_argument("--background", action="store_true",
                        help="detach, return once the daemon is serving, and print its pid")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration as TOML and exit")
    args = parser.parse_args(argv)
    return resolve(args, env), args


def to_toml(config: Config) -> str:
    lines = ["[iommud]"]
    for name in _FIELDS:
        value = getattr(config, name)
        if isinstance(value, str):
            lines.append(f'{name} = "{value}"')
        else:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"
