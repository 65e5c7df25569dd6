"""iommuctl: drive an iommud daemon by hand.

Each run is a process, but iommud objects live in a session; iommuctl keeps a
session token and a default iommufd per endpoint in a small state file and
re-creates them when the daemon no longer knows them (ESRCH, EBADF).

Commands that only read (`health`, `info`, `group list`, `device list`, the
`list`/`show` verbs) never open a session and never write the state file:
they use the remembered session if there is one, and otherwise ask the
daemon without one or report that there is nothing to show. Every client this
tool makes is one-shot (keepalive=False): the session's lease, not a
background thread, is what keeps it between runs.

Global options may come before the command or after it (`iommuctl -o json
group list` and `iommuctl group list -o json` are the same), as kubectl's
do. Their environment variables are named IOMMUCTL_*: the IOMMUD_* names
are the daemon's settings, which a shell or a container may well hold for
the daemon (IOMMUD_TLS_CERT is the daemon's server certificate, never the
client's).
"""
from __future__ import annotations

import errno as E
import hashlib
import json
import math
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click
import grpc

from iommud_client import Client, Container, Context, DeviceFd, Group, IommudError, Session
from iommud_wire import pb
from iommud_wire.endpoint import default_endpoint, normalize_endpoint
from iommud_wire.uapi import (
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    IOMMU_HWPT_ALLOC_PASID,
    U64_MAX,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_LOCAL = 0, 1, 2, 3, 4
_TRANSPORT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_SIZE = re.compile(r"(?i)^\s*(0x[0-9a-f]+|\d+)\s*([kmgtp]?)i?b?\s*$")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
OUTPUTS = ("table", "wide", "json", "yaml")
#: The lease of the session iommuctl opens and remembers between runs.
SESSION_LEASE = 3600
#: Maps per IoasMapBatch call when mapping from a file (the daemon takes up
#: to 65536 a call; smaller calls keep the progress bar moving).
BATCH_CHUNK = 4096

EPILOG = """\b
Global options may also follow the command: iommuctl group list -o yaml.
Their environment variables are IOMMUCTL_<OPTION> (IOMMUCTL_ENDPOINT, ...).
\b
Exit codes:
  0  success
  1  the daemon refused the call (the errno is printed on stderr)
  2  usage error
  3  the daemon cannot be reached
  4  iommuctl's state directory cannot be written
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


# -- output ------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 reads a float only with a dot: 1e+16 would come back a string.
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    # A JSON string is a YAML double-quoted scalar, once the characters YAML
    # may not carry raw (or reads as line breaks) are escaped too.
    return _YAML_UNSAFE.sub(_yaml_escape, json.dumps(text, ensure_ascii=False))


#: What YAML neither prints nor keeps inside a double-quoted scalar: C1
#: controls, DEL, the non-characters, and NEL, LS and PS (line breaks).
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff\ud800-\udfff]")


def _yaml_escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def to_yaml(data: Any, indent: int = 0) -> str:
    """YAML (block style) for the shapes iommuctl emits: mappings with string
    keys, lists, strings, numbers, booleans and null. No dependency: the
    client stays grpcio + protobuf + click."""
    pad = " " * indent
    if isinstance(data, dict):
        if not data:
            return pad + "{}\n"
        out = []
        for key, value in data.items():
            head = f"{pad}{_yaml_scalar(str(key))}:"
            if isinstance(value, (dict, list)) and value:
                out.append(head + "\n" + to_yaml(value, indent + (2 if isinstance(value, dict)
                                                                  else 0)))
            else:
                out.append(f"{head} {to_yaml(value).strip()}\n")
        return "".join(out)
    if isinstance(data, list):
        if not data:
            return pad + "[]\n"
        out = []
        for item in data:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")
            else:
                out.append(f"{pad}- {to_yaml(item).strip()}\n")
        return "".join(out)
    return pad + _yaml_scalar(data) + "\n"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def columns(spec: Sequence[tuple[str, bool]], rows: Sequence[Sequence[Any]],
            wide: bool) -> None:
    """A table of `spec` (header, wide-only) columns: -o wide shows them all."""
    keep = [i for i, (_, wide_only) in enumerate(spec) if wide or not wide_only]
    print_table([spec[i][0] for i in keep], [[row[i] for i in keep] for row in rows])


def tables(spec: Sequence[tuple[str, bool]], rows: Sequence[Sequence[Any]]
           ) -> dict[str, Callable[[], None]]:
    """emit()'s table and wide renderings of one table."""
    return {"table": lambda: columns(spec, rows, False), "wide": lambda: columns(spec, rows, True)}


def perms(prot: int) -> str:
    return ("r" if prot & 4 else "-") + ("w" if prot & 2 else "-")


# -- state ---------------------------------------------------------------------------------

def state_dir() -> pathlib.Path:
    explicit = os.environ.get("IOMMUCTL_STATE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return pathlib.Path(base) / "iommuctl"


class StateError(Exception):
    """iommuctl's own state cannot be kept: exit 4, one line."""

    def __init__(self, exc: OSError, path: pathlib.Path) -> None:
        self.errno_name = E.errorcode.get(exc.errno or 0, "EIO")
        super().__init__(f"cannot keep the session in {path}: {exc.strerror or exc}; set "
                         f"IOMMUCTL_STATE_DIR to a writable directory, or pass --session")


#: The global options: (parameter name, declarations, keyword arguments). The
#: group takes them with their defaults and environment variables; every
#: command takes them again, hidden and without either, so that they may
#: follow it and win over the ones before it.
GLOBAL_OPTIONS: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    ("endpoint", ("--endpoint",), {
        "envvar": "IOMMUCTL_ENDPOINT", "metavar": "ENDPOINT",
        "help": "Daemon endpoint: unix:/path, a socket path, or host:port [env "
                "IOMMUCTL_ENDPOINT; default: IOMMUD_ENDPOINT, which every iommud client "
                "reads, or the daemon's default socket]."}),
    ("output", ("-o", "--output"), {
        "type": click.Choice(OUTPUTS), "envvar": "IOMMUCTL_OUTPUT", "default": "table",
        "show_default": True,
        "help": "Output format; wide adds columns to tables [env IOMMUCTL_OUTPUT]."}),
    ("timeout", ("--timeout",), {
        "type": click.FloatRange(min=0, min_open=True), "envvar": "IOMMUCTL_TIMEOUT",
        "default": 10.0, "show_default": True, "metavar": "SECONDS",
        "help": "Per-call deadline in seconds [env IOMMUCTL_TIMEOUT]."}),
    ("token", ("--session",), {
        "envvar": ["IOMMUCTL_SESSION", "IOMMUD_SESSION"], "metavar": "TOKEN",
        "help": "Session token to act in [env IOMMUCTL_SESSION; IOMMUD_SESSION, its old "
                "name, is still read]."}),
    ("iommufd", ("--iommufd",), {
        "type": int, "envvar": ["IOMMUCTL_IOMMUFD", "IOMMUD_IOMMUFD"],
        "help": "Context fd to act on [env IOMMUCTL_IOMMUFD; IOMMUD_IOMMUFD is still read]."}),
    ("tls_ca", ("--tls-ca",), {
        "envvar": "IOMMUCTL_TLS_CA", "metavar": "FILE",
        "help": "CA bundle to verify a TLS daemon, on TCP endpoints (the UNIX socket is never "
                "TLS: there the variables are ignored) [env IOMMUCTL_TLS_CA]."}),
    ("tls_cert", ("--tls-cert",), {
        "envvar": "IOMMUCTL_TLS_CERT", "metavar": "FILE",
        "help": "Client certificate for mutual TLS [env IOMMUCTL_TLS_CERT; not "
                "IOMMUD_TLS_CERT, which is the daemon's own]."}),
    ("tls_key", ("--tls-key",), {
        "envvar": "IOMMUCTL_TLS_KEY", "metavar": "FILE",
        "help": "Client key for mutual TLS [env IOMMUCTL_TLS_KEY]."}),
)
GLOBAL_NAMES = tuple(name for name, _, _ in GLOBAL_OPTIONS)
#: The parameter names of the copies a command takes (never an argument's name).
LATE_PREFIX = "late_global_"


def _global_options(late: bool) -> list[click.Option]:
    out = []
    for name, decls, kw in GLOBAL_OPTIONS:
        kw = dict(kw)
        if late:
            for key in ("envvar", "default", "show_default"):
                kw.pop(key, None)
            kw.update(hidden=True, default=None)
            name = LATE_PREFIX + name
        out.append(click.Option([*decls, name], **kw))
    return out


class App:
    """One run: the global options, a client made on first use, and the
    state file of the endpoint."""

    def __init__(self, settings: dict[str, Any], from_environment: frozenset[str] = frozenset()
                 ) -> None:
        self.settings = dict(settings)
        #: The settings that came from environment variables, not the command line.
        self.from_environment = set(from_environment)
        self._client: Client | None = None

    def override(self, name: str, value: Any) -> None:
        if self._client is not None:
            raise RuntimeError("global options must be applied before the client is made")
        self.settings[name] = value
        self.from_environment.discard(name)

    @property
    def output(self) -> str:
        return str(self.settings["output"])

    @property
    def explicit_token(self) -> str | None:
        return self.settings["token"] or None

    @property
    def explicit_fd(self) -> int | None:
        fd = self.settings["iommufd"]
        return None if fd is None else int(fd)

    @property
    def client(self) -> Client:
        if self._client is None:
            s = self.settings
            endpoint = normalize_endpoint(s["endpoint"]) if s["endpoint"] else default_endpoint()
            tls = {name: s[name] for name in ("tls_ca", "tls_cert", "tls_key") if s[name]}
            if endpoint.startswith("unix:"):
                # TLS from the environment is for TCP daemons: the socket never
                # speaks it, so a probe or a script on the socket ignores it.
                tls = {k: v for k, v in tls.items() if k not in self.from_environment}
            if tls and endpoint.startswith("unix:"):
                raise click.UsageError(
                    f"--tls-ca/--tls-cert/--tls-key apply to TCP endpoints; {endpoint} is a "
                    f"UNIX socket, which is never TLS")
            for name, path in tls.items():
                if not os.access(path, os.R_OK):
                    flag = "--" + name.replace("_", "-")
                    raise click.BadParameter(f"cannot read {path!r}", param_hint=f"'{flag}'")
            self._client = Client(endpoint, timeout=s["timeout"], keepalive=False, **tls)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- the state file -------------------------------------------------------------------

    @property
    def state_path(self) -> pathlib.Path:
        key = hashlib.sha256(self.client.endpoint.encode()).hexdigest()[:16]
        return state_dir() / f"{key}.json"

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _writable(self) -> None:
        """Fail before a session is opened, not after, if it cannot be kept."""
        path = self.state_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise PermissionError(E.EACCES, os.strerror(E.EACCES))
        except OSError as exc:
            raise StateError(exc, path.parent) from None

    def _save(self, state: dict[str, Any]) -> None:
        path = self.state_path
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a secret
            with os.fdopen(fd, "w") as fh:
                json.dump({"endpoint": self.client.endpoint, **state}, fh)
            tmp.replace(path)
        except OSError as exc:
            raise StateError(exc, path.parent) from None

    def forget(self) -> None:
        try:
            self.state_path.unlink(missing_ok=True)
        except OSError as exc:
            raise StateError(exc, self.state_path.parent) from None

    # -- sessions and contexts ------------------------------------------------------------

    def _handle(self, token: str) -> Session:
        """A handle on a session by its token, made without a call."""
        return Session(self.client, token, "", 0, keepalive=False)

    def remembered_token(self) -> str | None:
        return self.explicit_token or self._load().get("token") or None

    def existing_session(self) -> Session | None:
        """The explicit or remembered session, without opening one or
        writing anything; None if there is none or the daemon forgot it."""
        if self.explicit_token:
            return self._handle(self.explicit_token)
        token = self._load().get("token")
        if not token:
            return None
        sess = self._handle(token)
        try:
            sess.keepalive()
        except IommudError as err:
            if err.errno != E.ESRCH:
                raise
            return None
        return sess

    def existing_context(self) -> Context | None:
        """The explicit or remembered context, as existing_session."""
        sess = self.existing_session()
        if sess is None:
            return None
        if self.explicit_fd is not None:
            return sess.context(self.explicit_fd)
        state = self._load()
        if self.explicit_token or state.get("iommufd") is None:
            return None
        return sess.context(int(state["iommufd"]))

    def need_context(self) -> Context:
        """For commands about one object: its context, or ESRCH as the
        daemon would answer a call without a session."""
        ctx = self.existing_context()
        if ctx is None:
            raise IommudError(E.ESRCH, f"iommuctl has no session or context for "
                                       f"{self.client.endpoint}: `iommuctl ioas create` (or "
                                       f"--session and --iommufd) makes one")
        return ctx

    def session(self) -> Session:
        """The session to act in: explicit, remembered, or a new one."""
        if self.explicit_token:
            return self._handle(self.explicit_token)
        state = self._load()
        if state.get("token"):
            sess = self._handle(state["token"])
            try:
                sess.keepalive()
                return sess
            except IommudError as err:
                if err.errno != E.ESRCH:
                    raise
        self._writable()
        sess = self.client.open_session("iommuctl", lease_seconds=SESSION_LEASE,
                                        keepalive=False)
        try:
            self._save({"token": sess.token, "session_id": sess.session_id})
        except StateError:
            sess.close()          # never leave a session nobody can name
            raise
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

    # -- output ---------------------------------------------------------------------------

    def emit(self, data: Any, table: Callable[[], None] | None = None,
             wide: Callable[[], None] | None = None) -> None:
        """`data` as JSON or YAML; or `table()` (`wide()` for -o wide, when
        the command has extra columns), or a plain rendering."""
        if self.output == "json":
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif self.output == "yaml":
            click.echo(to_yaml(data), nl=False)
        elif self.output == "wide" and wide is not None:
            wide()
        elif table is not None:
            table()
        else:
            click.echo(data if not isinstance(data, dict) else
                       "\n".join(f"{k}: {v}" for k, v in data.items()))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(err: IommudError) -> NoReturn:
    click.echo(f"iommuctl: {err.errno_name}: {one_line(err.message)}", err=True)
    if err.code in _TRANSPORT_CODES and err.errno_name == "EIO":
        sys.exit(EXIT_UNREACHABLE)
    sys.exit(EXIT_REFUSED)


class Command(click.Command):
    """A command that also takes the global options after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(late=True))

    def invoke(self, ctx: click.Context) -> Any:
        app = ctx.find_object(App)
        for name in GLOBAL_NAMES:
            value = ctx.params.pop(LATE_PREFIX + name, None)
            if value is not None and app is not None:
                app.override(name, value)
        return super().invoke(ctx)


class CommandGroup(click.Group):
    command_class = Command
    group_class = type          # subgroups are CommandGroups too


class Root(CommandGroup):
    """Every failure is one stderr line and an exit code: the errno of a
    refused call (1, or 3 when the daemon cannot be reached), a usage error
    (2), iommuctl's own state (4)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IommudError as err:
            fail(err)
        except StateError as err:
            click.echo(f"iommuctl: {err.errno_name}: {err}", err=True)
            sys.exit(EXIT_LOCAL)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "iommuctl"
            click.echo(f"iommuctl: {one_line(exc.format_message())} (see '{where} --help')",
                       err=True)
            result = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"iommuctl: {one_line(exc.format_message())}", err=True)
            result = exc.exit_code
        except click.Abort:
            click.echo("iommuctl: aborted", err=True)
            result = 130
        except BrokenPipeError:                 # iommuctl ... | head
            # The reader went away: send the rest of stdout, and the flush at
            # exit, to /dev/null (as the Python docs advise for SIGPIPE).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            result = EXIT_REFUSED
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)


# -- commands ------------------------------------------------------------------------------

def _version() -> str:
    from iommud_client import __version__
    return __version__


@click.group(cls=Root, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]},
             params=_global_options(late=False))
@click.version_option(_version(), "--version", prog_name="iommuctl",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, /, **settings: Any) -> None:
    """Drive iommud, the userspace /dev/iommu (iommufd) control plane."""
    app = App(settings, frozenset(
        name for name in settings
        if ctx.get_parameter_source(name) is click.core.ParameterSource.ENVIRONMENT))
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  source <(iommuctl completion bash)     # or save it in bash-completion's dir
    zsh:   source <(iommuctl completion zsh)
    fish:  iommuctl completion fish > ~/.config/fish/completions/iommuctl.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None       # click ships all three
    click.echo(cls(cli, {}, "iommuctl", "_IOMMUCTL_COMPLETE").source())


@cli.command()
@click.pass_obj
def health(app: App) -> None:
    """Ask the gRPC health service; exit 0 only when SERVING. Opens no session."""
    status = app.client.health()
    app.emit({"status": status}, lambda: click.echo(status))
    if status != "SERVING":
        sys.exit(EXIT_REFUSED)


_COUNTERS = ("sessions", "contexts", "objects", "ioas", "hwpts", "devices", "device_fds",
             "areas", "mapped_bytes")


@cli.command()
@click.pass_obj
def info(app: App) -> None:
    """Daemon version, page size, limits and object counts (the session's
    too, when iommuctl has one). Opens no session."""
    token = app.remembered_token()
    try:
        resp = app.client.info(token)
    except IommudError as err:
        if err.errno != E.ESRCH or app.explicit_token:
            raise
        token = None
        resp = app.client.info()               # the remembered session is gone
    data: dict[str, Any] = {
        "version": resp.version, "core_version": resp.core_version,
        "page_size": resp.page_size, "group_stage": resp.group_stage,
        "topology": resp.topology_source, "session_id": resp.session_id or None,
        "limits": {f.name: getattr(resp.limits, f.name) for f in resp.limits.DESCRIPTOR.fields},
        "daemon": {f: getattr(resp.daemon, f) for f in _COUNTERS},
        "session": {f: getattr(resp.session, f) for f in _COUNTERS} if token else None}

    def table() -> None:
        click.echo(f"iommud {resp.version} (core {resp.core_version}), page size "
                   f"{resp.page_size:#x}, group stage {resp.group_stage}, topology "
                   f"{resp.topology_source}")
        session = data["session"] or {}
        print_table(["counter", "daemon", "session"],
                    [(f, data["daemon"][f], session.get(f, "-")) for f in _COUNTERS])
        print_table(["limit", "value"], list(data["limits"].items()))

    app.emit(data, table)


# -- sessions ------------------------------------------------------------------------------

@cli.group()
def session() -> None:
    """Sessions: open one to share across commands, list, or close it."""


@session.command("open")
@click.option("--name", default="iommuctl")
@click.option("--lease", type=int, default=SESSION_LEASE, show_default=True,
              help="Lease in seconds.")
@click.pass_obj
def session_open(app: App, name: str, lease: int) -> None:
    """Open a session; prints its token (export it as IOMMUCTL_SESSION).

    It is not remembered: pass it with --session or IOMMUCTL_SESSION."""
    sess = app.client.open_session(name, lease_seconds=lease, keepalive=False)
    app.emit({"token": sess.token, "session_id": sess.session_id,
              "lease_seconds": sess.lease_seconds},
             lambda: click.echo(f"export IOMMUCTL_SESSION={sess.token}  # "
                                     f"{sess.session_id}, lease {sess.lease_seconds}s"))


@session.command("close")
@click.pass_obj
def session_close(app: App) -> None:
    """Close the session: every context and device fd in it is closed."""
    sess = app.existing_session()
    if sess is None:
        raise IommudError(E.ESRCH, f"iommuctl has no session for {app.client.endpoint}")
    closed = sess.close()
    if not app.explicit_token:
        app.forget()
    app.emit({"closed_fds": closed}, lambda: click.echo(f"closed {closed} fd(s)"))


def _state_files() -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    try:
        paths = sorted(state_dir().glob("*.json"))
    except OSError:
        return
    for path in paths:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("token"):
            yield path, state


@session.command("list")
@click.pass_obj
def session_list(app: App) -> None:
    """The sessions iommuctl remembers (one per endpoint), from its state
    directory. The daemon has no call that lists sessions to their owner, so
    this shows what iommuctl knows; sessions opened by other programs are not
    here. The current endpoint's session is checked with GetInfo (which
    renews its lease); others show as unknown. Opens no session."""
    rows: list[dict[str, Any]] = []
    for _path, state in _state_files():
        row: dict[str, Any] = {"endpoint": state.get("endpoint"),
                               "session_id": state.get("session_id"),
                               "iommufd": state.get("iommufd"), "state": "unknown",
                               "counts": None}
        if state.get("endpoint") == app.client.endpoint:
            try:
                resp = app.client.info(state["token"])
                row["state"] = "open"
                row["counts"] = {f: getattr(resp.session, f) for f in _COUNTERS[1:]}
            except IommudError as err:
                if err.errno != E.ESRCH:
                    raise
                row["state"] = "gone"
        rows.append(row)
    spec = [("SESSION", False), ("ENDPOINT", False), ("IOMMUFD", False), ("STATE", False),
            ("CONTEXTS", True), ("OBJECTS", True), ("AREAS", True), ("MAPPED", True)]

    def count(r: dict[str, Any], f: str) -> object:
        return r["counts"][f] if r["counts"] else "-"

    app.emit(rows, **tables(spec, [
        (r["session_id"], r["endpoint"], "-" if r["iommufd"] is None else r["iommufd"],
         r["state"], count(r, "contexts"), count(r, "objects"), count(r, "areas"),
         hex(r["counts"]["mapped_bytes"]) if r["counts"] else "-") for r in rows]))


# -- contexts and IOAS ---------------------------------------------------------------------

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


def _objects(app: App, *types: int) -> list[pb.ObjectInfo]:
    """The context's objects of these types; none without a context."""
    ctx = app.existing_context()
    if ctx is None:
        return []
    return [o for o in ctx.list_objects() if o.type in types]


@ioas.command("list")
@click.pass_obj
def ioas_list(app: App) -> None:
    """The IOAS objects of the context. Opens no session."""
    objs = _objects(app, pb.OBJECT_TYPE_IOAS)
    app.emit([{"ioas_id": o.id, "areas": o.areas, "mapped_bytes": o.mapped_bytes, "users": o.users}
              for o in objs],
             **tables([("IOAS", False), ("AREAS", False), ("MAPPED", False), ("USERS", True)],
                      [(o.id, o.areas, hex(o.mapped_bytes), o.users) for o in objs]))


@ioas.command("show")
@click.argument("ioas_id", type=int)
@click.pass_obj
def ioas_show(app: App, ioas_id: int) -> None:
    """One IOAS: its areas, usable IOVA ranges and alignment."""
    ctx = app.need_context()
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
    app.emit({"iova": got, "length": length, "user_va": user_va},
             lambda: click.echo(hex(got)))


def read_batch(stream: TextIO) -> tuple[list[int], list[int], list[int] | None, list[int]]:
    """A map-batch file: `USER_VA LENGTH [IOVA]` per line (numbers as
    everywhere: hex, decimal, sizes), '#' comments and blank lines ignored.
    Every line has an IOVA or none does. Returns user_vas, lengths, iovas
    (None: the daemon picks) and each entry's line number."""
    user_vas: list[int] = []
    lengths: list[int] = []
    iovas: list[int] = []
    lines: list[int] = []
    fixed: bool | None = None
    name = getattr(stream, "name", "-")
    for lineno, raw in enumerate(stream, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if len(words) not in (2, 3):
                raise ValueError(f"{len(words)} fields")
            if fixed is None:
                fixed = len(words) == 3
            elif fixed != (len(words) == 3):
                raise ValueError("every line gives an IOVA or none does")
            numbers = [parse_number(w) for w in words]
        except ValueError as exc:
            raise click.UsageError(f"{name}:{lineno}: {exc}; expected USER_VA LENGTH [IOVA]"
                                   ) from None
        user_vas.append(numbers[0])
        lengths.append(numbers[1])
        if fixed:
            iovas.append(numbers[2])
        lines.append(lineno)
    if not lines:
        raise click.UsageError(f"{name}: no maps; expected lines of USER_VA LENGTH [IOVA]")
    return user_vas, lengths, (iovas if fixed else None), lines


#: How the daemon names the failing entry of a batch.
_BATCH_ENTRY = re.compile(r"Request (0x[0-9a-fA-F]+|\d+) of the batch")


def _undo(ctx: Context, ioas_id: int, done: list[tuple[int, int]]) -> None:
    """Unmap the areas a failed batch made, in as few calls as the areas'
    adjacency allows (whole areas only, so a run of adjacent ones is one)."""
    runs: list[list[int]] = []
    for iova, length in sorted(done):
        if runs and runs[-1][0] + runs[-1][1] == iova:
            runs[-1][1] += length
        else:
            runs.append([iova, length])
    for iova, length in runs:
        ctx.ioas_unmap(ioas_id, iova, length)


@ioas.command("map-batch")
@click.argument("ioas_id", type=int)
@click.argument("file", type=click.File("r"))
@click.option("--readonly", is_flag=True, help="READABLE only.")
@click.option("--writeonly", is_flag=True, help="WRITEABLE only.")
@click.option("--chunk", type=click.IntRange(1, 65536), default=BATCH_CHUNK, show_default=True,
              help="Maps per IoasMapBatch call.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar on stderr [default: when stderr is a terminal].")
@click.pass_obj
def ioas_map_batch(app: App, ioas_id: int, file: TextIO, readonly: bool, writeonly: bool,
                   chunk: int, progress: bool | None) -> None:
    """Map every line of FILE ('-': stdin): USER_VA LENGTH [IOVA].

    \b
    # user_va        length  [iova]    hex, decimal or sizes; '#' comments
    0x7f0000000000   2M      0x100000
    0x7f0000200000   64K     0x400000

    Without IOVAs the daemon picks each one. The maps go in IoasMapBatch
    calls of --chunk entries; all or nothing: if one call fails, the areas
    the earlier calls made are unmapped again, and the error names the lines.
    Prints the new areas' IOVAs (in -o json/yaml: each line's entry)."""
    if readonly and writeonly:
        raise click.UsageError("--readonly and --writeonly exclude each other")
    user_vas, lengths, iovas, lines = read_batch(file)
    ctx = app.context()
    got: list[int] = []
    show = sys.stderr.isatty() if progress is None else progress
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("mapping"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), disable=not show)
    with bar:
        task = bar.add_task("map", total=len(lengths))
        for start in range(0, len(lengths), chunk):
            end = min(start + chunk, len(lengths))
            try:
                got.extend(ctx.ioas_map_batch(
                    ioas_id, user_vas[start:end], lengths[start:end],
                    None if iovas is None else iovas[start:end],
                    readable=not writeonly, writeable=not readonly))
            except IommudError as err:
                _undo(ctx, ioas_id, list(zip(got, lengths, strict=False)))
                m = _BATCH_ENTRY.match(err.message)
                index = start + int(m.group(1), 0) if m else -1
                where = (f"line {lines[index]}" if start <= index < end
                         else f"lines {lines[start]}-{lines[end - 1]}")
                raise IommudError(err.errno or E.EIO, f"{err.message} ({where} of {file.name}; "
                                  f"the {len(got)} maps made before were undone)",
                                  errno_name=err.errno_name, code=err.code,
                                  metadata=err.metadata) from None
            bar.advance(task, end - start)
    rows = [{"line": n, "iova": i, "length": ln, "user_va": u}
            for n, i, ln, u in zip(lines, got, lengths, user_vas, strict=True)]
    app.emit(rows, lambda: click.echo("\n".join(hex(i) for i in got)))


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
    ctx = app.need_context()
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
    ranges, align = app.need_context().ioas_iova_ranges(ioas_id)
    app.emit({"iova_alignment": align, "ranges": [{"start": r.start, "last": r.last} for r in ranges]},
             lambda: print_table(["START", "LAST"],
                                      [(hex(r.start), hex(r.last)) for r in ranges]))


@ioas.command("allow")
@click.argument("ioas_id", type=int)
@click.argument("ranges", type=RangeArg(), nargs=-1)
@click.pass_obj
def ioas_allow(app: App, ioas_id: int, ranges: tuple[tuple[int, int], ...]) -> None:
    """IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list (none clears it)."""
    app.context().ioas_allow_iovas(ioas_id, list(ranges))
    app.emit({"allowed": [{"start": s, "last": last} for s, last in ranges]},
             lambda: click.echo(f"{len(ranges)} allowed range(s)"))


# -- HWPTs -------------------------------------------------------------------------------------

_HWPT_TYPES = {pb.OBJECT_TYPE_HWPT_PAGING: "paging", pb.OBJECT_TYPE_HWPT_NESTED: "nested"}


@cli.group()
def hwpt() -> None:
    """Hardware page tables (IOMMU domains)."""


@hwpt.command("alloc")
@click.argument("dev_id", type=int)
@click.argument("pt_id", type=int)
@click.option("--nest-parent", is_flag=True, help="IOMMU_HWPT_ALLOC_NEST_PARENT.")
@click.option("--dirty-tracking", is_flag=True, help="IOMMU_HWPT_ALLOC_DIRTY_TRACKING.")
@click.option("--pasid", "pasid_capable", is_flag=True, help="IOMMU_HWPT_ALLOC_PASID.")
@click.option("--flags", type=NUMBER, default=None, help="Raw flags (overrides the above).")
@click.pass_obj
def hwpt_alloc(app: App, dev_id: int, pt_id: int, nest_parent: bool, dirty_tracking: bool,
               pasid_capable: bool, flags: int | None) -> None:
    """IOMMU_HWPT_ALLOC: a paging HWPT for device DEV_ID over IOAS PT_ID;
    prints the hwpt_id."""
    if flags is None:
        flags = ((IOMMU_HWPT_ALLOC_NEST_PARENT if nest_parent else 0)
                 | (IOMMU_HWPT_ALLOC_DIRTY_TRACKING if dirty_tracking else 0)
                 | (IOMMU_HWPT_ALLOC_PASID if pasid_capable else 0))
    ctx = app.context()
    hwpt_id = ctx.hwpt_alloc(dev_id, pt_id, flags)
    app.emit({"hwpt_id": hwpt_id, "iommufd": ctx.iommufd}, lambda: click.echo(hwpt_id))


@hwpt.command("list")
@click.pass_obj
def hwpt_list(app: App) -> None:
    """The HWPTs of the context, with their IOAS. Opens no session."""
    objs = _objects(app, *_HWPT_TYPES)
    app.emit([{"hwpt_id": o.id, "type": _HWPT_TYPES[o.type], "ioas_id": o.ioas_id,
               "users": o.users, "auto_domain": o.auto_domain} for o in objs],
             **tables([("HWPT", False), ("TYPE", False), ("IOAS", False), ("USERS", True),
                       ("AUTO", True)],
                      [(o.id, _HWPT_TYPES[o.type], o.ioas_id, o.users,
                        "yes" if o.auto_domain else "no") for o in objs]))


# -- the host: devices, groups, drivers ----------------------------------------------

@cli.group()
def device() -> None:
    """Host devices and device fds (the VFIO cdev flow: open, bind, attach)."""


@device.command("list")
@click.pass_obj
def device_list(app: App) -> None:
    """Devices with their group, ids, class and host driver (like lspci -k).
    Opens no session."""
    devs = app.client.call("ListDevices", pb.ListDevicesRequest(), app.explicit_token).devices
    app.emit([{"name": d.name, "group": d.group, "vendor": d.vendor, "device": d.device,
               "class": d.class_code, "driver": d.driver, "user_open": d.user_open,
               "description": d.description} for d in devs],
             **tables(
                 [("DEVICE", False), ("GROUP", False), ("ID", False), ("DRIVER", False),
                  ("OPEN", False), ("CLASS", True), ("DESCRIPTION", True)],
                 [(d.name, d.group, f"{d.vendor:04x}:{d.device:04x}", d.driver or "-",
                   "yes" if d.user_open else "no", f"{d.class_code:06x}", d.description)
                  for d in devs]))


@device.command("open")
@click.argument("name")
@click.pass_obj
def device_open(app: App, name: str) -> None:
    """open("/dev/vfio/devices/vfioN") of host device NAME; prints the device fd."""
    dev = app.session().open_device(name)
    app.emit({"device_fd": dev.device_fd, "device": name}, lambda: click.echo(dev.device_fd))


def _device(app: App, device_fd: int) -> DeviceFd:
    return DeviceFd(app.session(), device_fd, "")


@device.command("close")
@click.argument("device_fd", type=int)
@click.pass_obj
def device_close(app: App, device_fd: int) -> None:
    """close(device_fd): unbinds the device and revokes the fd."""
    _device(app, device_fd).close()
    app.emit({"closed": device_fd}, lambda: click.echo(f"closed device fd {device_fd}"))


@device.command("bind")
@click.argument("device_fd", type=int)
@click.option("--cookie", type=NUMBER, default=0, help="The bind cookie (an opaque id).")
@click.pass_obj
def device_bind(app: App, device_fd: int, cookie: int) -> None:
    """VFIO_DEVICE_BIND_IOMMUFD onto the context (--iommufd, or iommuctl's);
    claims the group's DMA ownership; prints the dev_id."""
    ctx = app.context()
    dev_id = _device(app, device_fd).bind(ctx, cookie)
    app.emit({"dev_id": dev_id, "iommufd": ctx.iommufd}, lambda: click.echo(dev_id))


@device.command("attach")
@click.argument("device_fd", type=int)
@click.argument("pt_id", type=int)
@click.option("--pasid", type=int, default=None, help="Attach a PASID instead of the RID.")
@click.pass_obj
def device_attach(app: App, device_fd: int, pt_id: int, pasid: int | None) -> None:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT (a replace when
    attached already); prints the id of the HWPT attached."""
    got = _device(app, device_fd).attach(pt_id, pasid)
    app.emit({"pt_id": got}, lambda: click.echo(got))


@device.command("detach")
@click.argument("device_fd", type=int)
@click.option("--pasid", type=int, default=None, help="Detach a PASID instead of the RID.")
@click.pass_obj
def device_detach(app: App, device_fd: int, pasid: int | None) -> None:
    """VFIO_DEVICE_DETACH_IOMMUFD_PT."""
    _device(app, device_fd).detach(pasid)
    app.emit({"detached": device_fd}, lambda: click.echo(f"device fd {device_fd} detached"))


@cli.group()
def group() -> None:
    """IOMMU groups and their DMA ownership."""


@group.command("list")
@click.pass_obj
def group_list(app: App) -> None:
    """Groups: members, viability, owner and domain. Opens no session."""
    groups = app.client.call("ListGroups", pb.ListGroupsRequest(), app.explicit_token).groups
    owners = {v.number: v.name.removeprefix("GROUP_OWNER_").lower()
              for v in pb.GroupOwner.DESCRIPTOR.values}
    app.emit([{"group": g.group, "devices": list(g.devices), "viable": g.viable,
               "owner": owners[g.owner], "owner_cnt": g.owner_cnt, "domain": g.domain}
              for g in groups],
             **tables(
                 [("GROUP", False), ("VIABLE", False), ("OWNER", False), ("USERS", False),
                  ("DOMAIN", True), ("DEVICES", False)],
                 [(g.group, "yes" if g.viable else "no", owners[g.owner], g.owner_cnt,
                   g.domain, " ".join(g.devices)) for g in groups]))


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
    app.emit({"iova": iova, "size": size},
             lambda: click.echo(f"mapped {size:#x} at {iova:#x}"))


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
        result = cli.main(args=argv, prog_name="iommuctl", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
