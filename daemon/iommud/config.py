"""Daemon configuration: flags, then environment, then a TOML file, then
defaults, in that order of precedence.

Every setting has one name used in all three places: `--lease-seconds` on the
command line, IOMMUD_LEASE_SECONDS in the environment, `lease_seconds` in the
file (given by --config or IOMMUD_CONFIG). The `IOMMUD_` prefix belongs to
the daemon's settings alone: clients read their own names (`IOMMUCTL_*` for
iommuctl; IOMMUD_ENDPOINT for the client library's default endpoint, which
is why no daemon setting may be called `endpoint`). Unknown `IOMMUD_*`
variables are ignored, since Kubernetes itself adds `IOMMUD_PORT` and
`IOMMUD_SERVICE_HOST` to pods when a Service is named iommud.

Each setting's description, kind and accepted values live in its field's
metadata (`setting(...)`): `iommud --help` is made from them, and so is the
one-line error a bad value gets (ConfigError: the setting as the user wrote
it, the value, the accepted forms). A bad setting is a usage error (exit 2),
caught before anything starts; settings that are each well formed but that
the daemon cannot serve with (a non-loopback TCP address without TLS, a
socket another daemon serves) are refused by the server at start (exit 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import sys
import tomllib
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from iommud.access import parse_ids
from iommud.limits import Limits
from iommud_wire.endpoint import default_socket_path

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

ENV_PREFIX = "IOMMUD_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
#: Exit status of a bad setting (argparse's, and every CLI's, for usage errors).
EXIT_USAGE = 2
#: Values longer than this are cut in error messages.
SHOWN_VALUE_MAX = 200

_T = TypeVar("_T")
U32_MAX, U64_MAX = (1 << 32) - 1, (1 << 64) - 1

# The kinds of setting: how a text value (a flag or the environment) is read.
INT, FLOAT, STR, MODE, SWITCH, IDS, NAMES = "int", "float", "str", "mode", "switch", "ids", "names"

_ACCEPTED = {
    INT: "an integer (decimal, or 0x hex, 0o octal, 0b binary)",
    FLOAT: "a number of seconds such as 5 or 0.5",
    STR: "a string",
    MODE: "an octal file mode such as 0660, 660 or 0o660",
    SWITCH: "0 or 1 (false or true)",
    IDS: "comma-separated numeric ids such as 1000,1001",
    NAMES: "comma-separated names",
}


def setting(default: _T, help: str, *, group: str, kind: str = "", choices: Sequence[Any] = (),
            minimum: float | None = 0, maximum: float | None = None, accepted: str = "",
            metavar: str = "", default_factory: Callable[[], _T] | None = None) -> _T:
    """A Config field: its default and, in its metadata, everything `--help`
    and the error messages say about it."""
    if not kind:
        kind = {bool: SWITCH, int: INT, float: FLOAT, str: STR}[type(default)]
    if kind == INT and maximum is None:
        maximum = U32_MAX     # GetInfo reports most limits as uint32
    metadata = {"help": help, "group": group, "kind": kind, "choices": tuple(choices),
                "minimum": minimum, "maximum": maximum, "accepted": accepted,
                "metavar": metavar}
    if default_factory is not None:
        field: _T = dataclasses.field(default_factory=default_factory, metadata=metadata)
    else:
        field = dataclasses.field(default=default, metadata=metadata)
    return field


LISTEN, TLS, SESSIONS, LIMITS, CONNECTIONS, LOGGING, HOST, ACCESS, JOURNAL, DEBUG = (
    "listeners", "TLS (the TCP listener)", "sessions and leases", "per-session limits",
    "connections and gRPC", "logging", "the modelled host", "access control", "the journal",
    "debugging (never in production)")


@dataclasses.dataclass
class Config:
    socket: str = setting(
        "", "UNIX socket path; an empty string disables the socket listener.", group=LISTEN,
        accepted="a socket path, or empty to disable it",
        default_factory=lambda: str(default_socket_path()))
    socket_mode: int = setting(
        0o660, "Permission bits of the socket files.", group=LISTEN, kind=MODE, maximum=0o777,
        accepted="an octal file mode up to 0777, such as 0660, 660 or 0o660")
    uapi_socket: str = setting(
        "iommud.uapi.sock", "The raw uAPI socket (SOCK_SEQPACKET, docs/uapi-transport.md), with "
        "the same mode and access policy; a relative path is taken in the directory of `socket`. "
        "An empty string disables it.", group=LISTEN)
    tcp: str = setting(
        "", "Optional TCP listener HOST:PORT; only loopback hosts are accepted unless TLS is "
        "configured. Port 0 picks a free port.", group=LISTEN, metavar="HOST:PORT",
        accepted="HOST:PORT such as 127.0.0.1:50051 or [::1]:50051 (port 0-65535), or empty")
    tls_cert: str = setting(
        "", "PEM server certificate for the TCP listener (TLS; needs tls_key).", group=TLS)
    tls_key: str = setting(
        "", "PEM private key of tls_cert.", group=TLS)
    tls_client_ca: str = setting(
        "", "PEM CA bundle for client certificates: set, TLS becomes mutual and each client "
        "certificate's subject CN is the caller's identity.", group=TLS)
    lease_seconds: int = setting(
        30, "Default session lease, in seconds: a session nobody renews is reaped after it.",
        group=SESSIONS, minimum=1)
    lease_max_seconds: int = setting(
        3600, "The longest lease a client may ask for, in seconds.", group=SESSIONS, minimum=1)
    reap_interval: float = setting(
        1.0, "How often the reaper looks for expired sessions, in seconds.", group=SESSIONS,
        minimum=0.001, accepted="a positive number of seconds such as 1 or 0.1")
    max_sessions: int = setting(
        1024, "Sessions open at once in the daemon: ENOSPC past it.", group=SESSIONS, minimum=1)
    max_connections: int = setting(
        0, "Connections on the UNIX socket at once (0: a third of the fd limit); past it a new "
        "connection is closed at once.", group=CONNECTIONS)
    max_connections_per_uid: int = setting(
        256, "Connections on the UNIX socket at once per peer uid.", group=CONNECTIONS)
    connection_idle_seconds: float = setting(
        3600.0, "A UNIX-socket connection with no bytes either way for this long is closed "
        "(0: never). The daemon pings every live connection more often (keepalive_seconds), so "
        "only dead peers and silent non-gRPC clients reach it.", group=CONNECTIONS)
    keepalive_seconds: float = setting(
        300.0, "gRPC keepalive: the daemon pings an idle connection this often, in seconds.",
        group=CONNECTIONS)
    keepalive_min_client_ping_seconds: float = setting(
        5.0, "gRPC keepalive: client pings are accepted this often at most; clients pinging "
        "faster get GOAWAY too_many_pings (set the client's keepalive_time_ms at least this "
        "high).", group=CONNECTIONS)
    max_contexts_per_session: int = setting(
        Limits.max_contexts_per_session, "iommufd contexts one session may open: EMFILE past it.",
        group=LIMITS)
    max_fds_per_session: int = setting(
        Limits.max_fds_per_session, "Every fd of a session (contexts, device, group, container "
        "fds): EMFILE past it.", group=LIMITS)
    max_objects_per_context: int = setting(
        Limits.max_objects_per_context, "Objects (IOAS, HWPT, DEVICE, ...) one context may hold: "
        "ENOSPC past it.", group=LIMITS)
    max_areas_per_ioas: int = setting(
        Limits.max_areas_per_ioas, "Areas one IOAS may hold: ENOSPC past it.", group=LIMITS,
        maximum=U64_MAX)
    max_mapped_bytes_per_session: int = setting(
        Limits.max_mapped_bytes_per_session, "Bytes all of a session's IOASes may map (the "
        "pinned-page rlimit analogue): ENOMEM past it.", group=LIMITS, maximum=U64_MAX)
    max_memory_bytes_per_session: int = setting(
        Limits.max_memory_bytes_per_session, "Daemon memory one session's state may hold (areas, "
        "domains, dirty bits, objects, fds): ENOMEM past it.", group=LIMITS, maximum=U64_MAX)
    max_translate_batch: int = setting(
        1 << 18, "Most IOVAs one TranslateBatch may carry: ENOMEM past it (its request and reply "
        "are copied on the event loop: 2^18 keeps that under 10 ms, and is the most the "
        "request size limit lets through).", group=LIMITS, minimum=1, maximum=1 << 18)
    max_message_bytes: int = setting(
        16 << 20, "Largest gRPC message, in bytes, either way (RESOURCE_EXHAUSTED past it).",
        group=CONNECTIONS, minimum=1024, maximum=(1 << 31) - 1)
    offload_batch: int = setting(
        4096, "Batches at least this large run off the event loop (the core drops the GIL).",
        group=CONNECTIONS)
    log_format: str = setting(
        "auto", "Log format: auto (console on a terminal, JSON otherwise), console or json.",
        group=LOGGING, choices=("auto", "console", "json"))
    log_level: str = setting(
        "info", "Least severe level logged (per-call events are debug).", group=LOGGING,
        choices=("debug", "info", "warning", "error", "critical"))
    log_file: str = setting(
        "", "With --background, where the detached daemon writes its log (default: iommud.log "
        "beside the socket).", group=LOGGING)
    tracing: str = setting(
        "off", "OpenTelemetry tracing of RPCs, a span per call: off, otlp (OTLP/gRPC, set up by "
        "the standard OTEL_EXPORTER_OTLP_* variables) or console (JSON lines on standard "
        "output). Needs the otel extra: pip install 'iommud[otel]'.", group=LOGGING,
        choices=("off", "otlp", "console"))
    shutdown_grace: float = setting(
        5.0, "Grace period for in-flight RPCs on SIGTERM/SIGINT, in seconds.", group=LISTEN)
    metrics_address: str = setting(
        "", "Prometheus metrics over HTTP (GET /metrics): PORT listens on 127.0.0.1, HOST:PORT "
        "where given (0.0.0.0:9464 for a scraper on the network: the series hold counts, never "
        "a token); empty turns it off.", group=LISTEN,
        accepted="PORT, HOST:PORT such as 127.0.0.1:9464 or [::1]:9464, or empty")
    topology: str = setting(
        "default", "Host topology: default (embedded), a .toml/.json file, or sysfs:ROOT "
        "(docs/topology.md).", group=HOST, metavar="SOURCE",
        accepted="default, a topology file path, or sysfs:ROOT")
    group_stage: int = setting(
        2, "The design thread's staged group support: 1, 2 or 3.", group=HOST, choices=(1, 2, 3))
    vfio_mode: str = setting(
        "type1", "Behaviour of containers opened with OpenContainer: type1 (vfio_iommu_type1.c) "
        "or iommufd (the kernel's vfio_compat.c).", group=HOST, choices=("type1", "iommufd"))
    dma_entry_limit: int = setting(
        65535, "Type1's per-container mapping limit (the dma_entry_limit module parameter).",
        group=HOST)
    cap_sys_resource: int = setting(
        0, "Treat every session as holding CAP_SYS_RESOURCE (IOMMU_OPTION RLIMIT_MODE).",
        group=HOST, kind=SWITCH)
    allow_uids: str = setting(
        "", "UNIX socket callers allowed by uid (comma-separated); empty leaves access to "
        "socket_mode. Others get EACCES.", group=ACCESS, kind=IDS)
    allow_gids: str = setting(
        "", "UNIX socket callers allowed by gid, primary or supplementary (comma-separated).",
        group=ACCESS, kind=IDS)
    admin_uids: str = setting(
        "", "UNIX uids that may call admin RPCs (host driver binds, hot-plug); empty: root and "
        "the daemon's own uid.", group=ACCESS, kind=IDS)
    admin_identities: str = setting(
        "", "Mutual-TLS identities (certificate CNs) that may call admin RPCs.", group=ACCESS,
        kind=NAMES)
    journal: str = setting(
        "", "Durable journal (SQLite, WAL): a database path turns it on, :memory: journals "
        "without durability (tests), empty turns it off.", group=JOURNAL, metavar="PATH")
    journal_sync: str = setting(
        "normal", "normal survives a daemon crash; full also survives power loss (an fsync per "
        "state change).", group=JOURNAL, choices=("normal", "full"))
    debug_fail_nth: int = setting(
        0, "Honour iommud-fail-nth metadata (fail step N of a call, as the kernel's fail-nth). "
        "Off in production, where a call asking for it gets EPERM.", group=DEBUG, kind=SWITCH)
    debug_selftest: int = setting(
        0, "Serve the kernel selftest's mock IOMMU test operations (Test* RPCs, IOMMU_TEST_CMD "
        "on the raw transport). Off in production, where they answer ENOTTY as a kernel "
        "without CONFIG_IOMMUFD_TEST does.", group=DEBUG, kind=SWITCH)
    debug_clock: int = setting(
        0, "DebugAdvanceClock may age every lease at once (tests).", group=DEBUG, kind=SWITCH)

    def limits(self) -> Limits:
        """The per-session limits, as the session objects take them."""
        return Limits(max_contexts_per_session=self.max_contexts_per_session,
                      max_fds_per_session=self.max_fds_per_session,
                      max_objects_per_context=self.max_objects_per_context,
                      max_areas_per_ioas=self.max_areas_per_ioas,
                      max_mapped_bytes_per_session=self.max_mapped_bytes_per_session,
                      max_memory_bytes_per_session=self.max_memory_bytes_per_session)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


# -- errors ----------------------------------------------------------------------------

def shown(value: object, limit: int = SHOWN_VALUE_MAX) -> str:
    """A value as an error message quotes it: repr, on one line, cut if long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigError(ValueError):
    """A bad setting: one line naming where it was set, the value and what
    is accepted. A ValueError, so that SIGHUP's reload keeps the old
    settings and logs it like any other refusal."""

    def __init__(self, where: str, value: object, accepted: str, problem: str = "invalid value",
                 detail: str = "") -> None:
        self.where = where
        self.value = value
        self.accepted = accepted
        note = f" ({detail})" if detail else ""
        super().__init__(f"{where}: {problem} {shown(value)}{note}; expected {accepted}")


def accepted(name: str) -> str:
    md = _FIELDS[name].metadata
    if md["accepted"]:
        return str(md["accepted"])
    if md["choices"]:
        return "one of " + ", ".join(str(c) for c in md["choices"])
    kind = md["kind"]
    text = _ACCEPTED[kind]
    lo, hi = md["minimum"], md["maximum"]
    if kind in (INT, FLOAT) and lo is not None:
        text += f" >= {_num(lo)}" if hi is None else f" from {_num(lo)} to {_num(hi)}"
    return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _where(name: str, source: str) -> str:
    """How the user wrote the setting: the flag, the variable, or the key in a file."""
    if source == "flag":
        return flag_of(name)
    if source == "env":
        return env_of(name)
    return f"{name} in {source}"


_OCTAL = re.compile(r"^(?:0o)?([0-7]{1,4})$", re.IGNORECASE)
_SWITCHES = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "off": 0, "on": 1}


def _read_int(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 0)
    except ValueError:
        return int(text, 10)       # leading zeros, as in 0100: decimal (not a mode)


def coerce(name: str, value: Any, source: str) -> Any:
    """`value` (text from a flag or the environment, or a TOML value) as the
    setting's type, checked; ConfigError naming `source` otherwise."""
    md = _FIELDS[name].metadata
    kind = md["kind"]
    where = _where(name, source)

    def bad(problem: str = "invalid value") -> NoReturn:
        raise ConfigError(where, value, accepted(name), problem)

    out: Any
    if kind == MODE:
        if isinstance(value, int) and not isinstance(value, bool):
            out = value
        elif isinstance(value, str) and (m := _OCTAL.match(value.strip())):
            out = int(m.group(1), 8)
        else:
            bad()
    elif kind == SWITCH:
        if isinstance(value, bool) or value in (0, 1):
            out = int(value)
        elif isinstance(value, str) and value.strip().lower() in _SWITCHES:
            out = _SWITCHES[value.strip().lower()]
        else:
            bad()
    elif kind == INT:
        if isinstance(value, bool):
            bad()
        if isinstance(value, int):
            out = value
        elif isinstance(value, str):
            try:
                out = _read_int(value)
            except ValueError:
                bad()
        else:
            bad()
    elif kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            bad()
        try:
            out = float(value)
        except ValueError:
            bad()
        if not math.isfinite(out):
            bad()
    else:
        if not isinstance(value, str):
            bad()
        out = value
    choices = md["choices"]
    if choices and out not in choices:
        bad()
    lo, hi = md["minimum"], md["maximum"]
    if kind in (INT, FLOAT, MODE) and ((lo is not None and out < lo)
                                       or (hi is not None and out > hi)):
        bad("out of range")
    if kind == IDS:
        try:
            parse_ids(out, name)
        except ValueError:
            bad()
    if name == "tcp" and out:
        host, sep, port = out.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            bad()
    if name == "topology" and not out:
        bad()
    return out


# -- sources ---------------------------------------------------------------------------

def load_file(path: str, source: str = "--config") -> dict[str, Any]:
    """The settings of a TOML file (its [iommud] table, or its top level)."""
    what = "a readable TOML file of settings"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(source, path, what, "cannot read", exc.strerror or str(exc)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, path, what, "cannot parse", str(exc)) from None
    section = data.get("iommud", data)
    if not isinstance(section, dict):
        raise ConfigError(source, path, what, "cannot use", "its iommud key is not a table")
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _FIELDS:
            near = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f"{near[0]}, or another setting" if near else "one of the settings"
            raise ConfigError(path, key, f"{hint} that iommud --help lists", "unknown setting")
        out[key] = coerce(key, value, str(path))
    return out


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {name: coerce(name, env[env_of(name)], "env")
            for name in _FIELDS if env_of(name) in env}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (no usage block, no traceback)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _help_of(name: str, default: object) -> str:
    md = _FIELDS[name].metadata
    text = str(md["help"]).replace("%", "%%")
    shown_default = oct(default) if md["kind"] == MODE and isinstance(default, int) else default
    if shown_default == "":
        shown_default = '""'
    return f"{text} [default: {shown_default}; env {env_of(name)}]"


def _metavar(name: str) -> str:
    md = _FIELDS[name].metadata
    if md["metavar"]:
        return str(md["metavar"])
    if md["choices"]:
        return "{" + ",".join(str(c) for c in md["choices"]) + "}"
    return {INT: "N", FLOAT: "SECONDS", MODE: "MODE", SWITCH: "0|1", IDS: "IDS",
            NAMES: "NAMES"}.get(str(md["kind"]), "PATH")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML file of settings, in an [iommud] table [env {CONFIG_ENV}]")
    defaults = Config()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, field in _FIELDS.items():
        group = str(field.metadata["group"])
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        groups[group].add_argument(flag_of(name), dest=name, default=None, metavar=_metavar(name),
                                   help=_help_of(name, getattr(defaults, name)))


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Merge defaults < file < environment < flags; ConfigError on a bad setting."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    flag_path = getattr(args, "config", None)
    config_path = flag_path or env.get(CONFIG_ENV)
    if flag_path is not None and not flag_path:
        raise ConfigError("--config", flag_path, "a readable TOML file", "empty path")
    if config_path:
        merged.update(load_file(config_path, "--config" if flag_path else CONFIG_ENV))
    merged.update(from_env(env))
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            merged[name] = coerce(name, value, "flag")
    cfg = Config(**merged)
    if cfg.tracing != "off":
        from iommud.tracing import missing
        if (module := missing(cfg.tracing)) is not None:
            source = "flag" if getattr(args, "tracing", None) is not None else \
                "env" if env_of("tracing") in env else str(config_path)
            raise ConfigError(_where("tracing", source), cfg.tracing,
                              "off, or the otel extra installed (pip install 'iommud[otel]')",
                              "cannot use", f"{module} is not installed")
    return cfg


def version() -> str:
    from iommud import __version__, _core
    return f"iommud {__version__} (core {_core.__version__})"


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="iommud", usage="%(prog)s [--background | --print-config] [--config FILE] "
                "[--SETTING VALUE ...]",
                description="iommud: the /dev/iommu (iommufd) control plane over gRPC. Every "
                "setting is a flag, an environment variable IOMMUD_<SETTING> and a key of the "
                "TOML file; flags win over the environment, which wins over the file.",
                epilog="A bad setting exits with 2 and one line naming it; a daemon that cannot "
                "start with good settings exits with 1.")
    p.add_argument("--version", action="version", version=version(),
                   help="print the version and exit")
    p.add_argument("--background", action="store_true",
                   help="detach, return once the daemon is serving, and print its pid")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as TOML and exit")
    add_arguments(p)
    return p


def parse(argv: Sequence[str] | None = None,
          env: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    """The command line and environment as a Config; ConfigError on a bad setting."""
    args = parser().parse_args(argv)
    return resolve(args, env), args


def _toml_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)    # a valid TOML basic string
    if _FIELDS[name].metadata["kind"] == MODE:
        return f"0o{value:o}"
    return repr(value)


def to_toml(config: Config) -> str:
    lines = ["[iommud]"]
    lines += [f"{name} = {_toml_value(name, getattr(config, name))}" for name in _FIELDS]
    return "\n".join(lines) + "\n"
