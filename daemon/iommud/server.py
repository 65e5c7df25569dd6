"""The grpc.aio server: listeners, health, reflection, the session reaper and
graceful shutdown on SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import errno as E
import hashlib
import ipaddress
import os
import pathlib
import resource
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import time
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from iommud import __version__, logsetup, snapshot, topology_load
from iommud._core import PeerGate
from iommud.access import AccessPolicy
from iommud.call import Runtime
from iommud.dispatch import Dispatcher
from iommud.host import Host
from iommud.journal import Journal, PendingSnapshot
from iommud.logsetup import get_logger
from iommud.ops import ROWS
from iommud.service import GrpcService
from iommud.session import SessionRegistry
from iommud.uapi_transport import UapiServer, socket_path
from iommud_wire import SERVICE_NAME

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from iommud.config import Config
    from iommud.metrics import Metrics
    from iommud.topology import Topology
    from iommud.tracing import Tracing

log = get_logger("iommud.server")

#: A snapshot is never taken for fewer rows than this since the last one.
SNAPSHOT_MIN_ROWS = 4096


def _check_tcp(address: str, tls: bool) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"tcp must be host:port, not {address!r}")
    bare = host.strip("[]")
    if bare == "localhost":
        return address
    try:
        loopback = ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not tls:
        # Without TLS and peer identities a TCP listener must not leave the host.
        raise ValueError(f"tcp listens on loopback only unless TLS is configured; {host!r} is "
                         f"not a loopback address")
    return address


def _tls_credentials(cfg: Config) -> grpc.ServerCredentials | None:
    if not (cfg.tls_cert or cfg.tls_key or cfg.tls_client_ca):
        return None
    if not (cfg.tls_cert and cfg.tls_key):
        raise ValueError("TLS needs both tls_cert and tls_key")
    key = pathlib.Path(cfg.tls_key).read_bytes()
    cert = pathlib.Path(cfg.tls_cert).read_bytes()
    ca = pathlib.Path(cfg.tls_client_ca).read_bytes() if cfg.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)


def check_private_dir(directory: pathlib.Path) -> None:
    """The directory of a socket, journal or log must be the daemon's: owned
    by its uid and not writable by others, so that no other user can plant a
    symlink or swap a file in it."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(E.EPERM, f"{directory} is a symlink; refusing to follow it")
    if st.st_uid != os.geteuid():
        raise OSError(E.EPERM, f"{directory} is owned by uid {st.st_uid}, not by the daemon's "
                      f"uid {os.geteuid()}")
    if st.st_mode & stat.S_IWOTH:
        raise OSError(E.EPERM, f"{directory} is writable by others (mode "
                      f"{stat.S_IMODE(st.st_mode):o})")


def _prepare_socket(path: pathlib.Path) -> None:
    """Create the socket's directory and clear a stale socket; refuse to
    steal a socket another daemon is serving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_private_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(E.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink()  # stale: nobody listens
    else:
        raise OSError(E.EADDRINUSE, f"another daemon is serving {path}")
    finally:
        probe.close()


def _private_dir(near: pathlib.Path) -> pathlib.Path:
    """A fresh 0700 directory for the gRPC server's own socket: beside the
    public one when the path fits a sockaddr_un, else in the temp dir."""
    for parent in (near, None):
        made = pathlib.Path(tempfile.mkdtemp(prefix=".iommud-", dir=parent))
        if len(str(made / "grpc.sock").encode()) < 100:
            return made
        made.rmdir()
    raise OSError(E.ENAMETOOLONG, "no directory short enough for the private socket")


def _raise_fd_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every connection
    costs fds, and a default soft limit of 1024 runs out at a few hundred
    clients. A sandbox that forbids setrlimit keeps what it gave."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.info("rlimit.kept", soft=soft, hard=hard, error=str(exc))


def _topology_digest(spec: str) -> str:
    """What the journal's fingerprint records of a topology: its file's bytes
    (a sysfs tree or the embedded default is named by its spec alone)."""
    if spec == "default" or spec.startswith("sysfs:"):
        return ""
    return hashlib.sha256(pathlib.Path(spec).read_bytes()).hexdigest()


def load_topology(spec: str) -> Topology:
    """"default", "sysfs:<root>", or a topology file path."""
    if spec == "default":
        return topology_load.load_default()
    if spec.startswith("sysfs:"):
        return topology_load.import_sysfs(spec.removeprefix("sysfs:") or "/")
    return topology_load.load_file(spec)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        if config.group_stage not in (1, 2, 3):
            raise ValueError(f"group_stage must be 1, 2 or 3, not {config.group_stage}")
        if config.vfio_mode not in ("type1", "iommufd"):
            raise ValueError(f"vfio_mode must be type1 or iommufd, not {config.vfio_mode!r}")
        self.host = Host(load_topology(config.topology))
        self.sessions = SessionRegistry(
            lease_default=config.lease_seconds, lease_max=config.lease_max_seconds,
            max_sessions=config.max_sessions, limits=config.limits(), host=self.host)
        self.journal: Journal | None = None
        if config.journal:
            if config.journal != ":memory:":
                check_private_dir(pathlib.Path(config.journal).absolute().parent)
            self.journal = Journal(config.journal, config.journal_sync,
                                   host_methods=frozenset(op.name for op in ROWS if op.admin))
            facts: dict[str, object] = {
                "topology": config.topology, "topology_digest": _topology_digest(config.topology),
                "group_stage": config.group_stage, "vfio_mode": config.vfio_mode}
            if config.debug_selftest:  # its rows replay only under the same switch
                facts["debug_selftest"] = 1
            self.journal.bind(Journal.fingerprint(**facts))
            journal = self.journal
            self.sessions.on_forget.append(lambda sess: journal.forget_session(sess.token))
        access = AccessPolicy(config.allow_uids, config.allow_gids, config.admin_uids,
                              config.admin_identities)
        self.rt = Runtime(config=config, host=self.host, sessions=self.sessions, access=access,
                          journal=self.journal)
        self.dispatcher = Dispatcher(self.rt)
        self.dispatcher.on_rows = self.maybe_snapshot
        self.service = GrpcService(self.rt, self.dispatcher)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.endpoints: list[str] = []
        self._stopping = asyncio.Event()
        #: SIGHUP's source of a fresh configuration (the same flags,
        #: environment and file), and how to reopen a log file.
        self.reload_source: Callable[[], Config] | None = None
        self.reopen_log: Callable[[Config], None] | None = None
        self.log_stream: TextIO | None = None
        self._socket_path: pathlib.Path | None = None
        self._private_dir: pathlib.Path | None = None
        #: The raw uAPI socket (uapi_transport.py), once listening.
        self.uapi: UapiServer | None = None
        #: A snapshot whose files are being written (maybe_snapshot).
        self._snapshot_task: asyncio.Task[None] | None = None
        #: Large native states being encoded ahead of a snapshot (maybe_snapshot).
        self._prewarm: asyncio.Task[None] | None = None
        #: The metrics listener (metrics_address), once serving.
        self.metrics: Metrics | None = None
        #: The OpenTelemetry tracer provider (tracing), when on.
        self.tracing: Tracing | None = None

    async def start(self) -> None:
        cfg = self.config
        _raise_fd_limit()
        if cfg.metrics_address:
            # First, so that a bad address or a port in use stops the start
            # before anything listens.
            from iommud.metrics import Metrics  # prometheus_client only when asked for

            self.metrics = Metrics(self.rt)
            self.metrics.start(cfg.metrics_address)
            self.metrics.attach("grpc", self.dispatcher)
        if cfg.tracing != "off":
            from iommud.tracing import Tracing  # OpenTelemetry only when asked for

            self.tracing = Tracing(cfg.tracing, __version__)
            self.tracing.attach("grpc", self.dispatcher)
        options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
                   ("grpc.max_send_message_length", cfg.max_message_bytes),
                   ("grpc.so_reuseport", 0),
                   # Keepalive enforcement: ping idle peers, so a dead one is
                   # dropped and a live one never looks idle to the gate; take
                   # client pings (with or without calls) as often as the
                   # setting allows, GOAWAY past it.
                   ("grpc.keepalive_time_ms", int(cfg.keepalive_seconds * 1000)),
                   ("grpc.keepalive_timeout_ms", 20_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.min_ping_interval_without_data_ms",
                    int(cfg.keepalive_min_client_ping_seconds * 1000)),
                   ("grpc.http2.max_pings_without_data", 0),
                   # One connection's calls in flight (each holds a request
                   # and a reply): bounded, as its unread replies are.
                   ("grpc.max_concurrent_streams", 256)]
        if self.journal is not None:
            started = time.perf_counter()
            state = self.journal.load_snapshot()
            restored = snapshot.load(self.rt, state) if state is not None else 0
            self.host = self.rt.host
            rows = await self.dispatcher.replay()
            log.info("journal.recovered", path=cfg.journal, snapshot_sessions=restored,
                     rows=rows, sessions=len(self.sessions),
                     seconds=round(time.perf_counter() - started, 3))
            if rows:
                self.write_snapshot()   # the next start reads the state, not these rows
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((self.service.generic_handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        if cfg.socket:
            path = pathlib.Path(cfg.socket).absolute()
            _prepare_socket(path)
            # gRPC serves a private socket that only the peer gate reaches;
            # the public path is the gate's (see access.py and peer_gate.rs).
            self._private_dir = _private_dir(path.parent)
            server.add_insecure_port(f"unix:{self._private_dir / 'grpc.sock'}")
            self._socket_path = path
            self.endpoints.append(f"unix:{path}")
        if cfg.tcp:
            creds = _tls_credentials(cfg)
            self.rt.access.check_listeners(plaintext_tcp=creds is None)
            if creds is not None and not cfg.tls_client_ca and self.rt.access.restricts_socket:
                raise ValueError("allow_uids/allow_gids with a TLS listener need tls_client_ca: "
                                 "without client certificates anyone reaching the port could "
                                 "open sessions; set tls_client_ca or drop tcp")
            address = _check_tcp(cfg.tcp, tls=creds is not None)
            bound = (server.add_secure_port(address, creds) if creds is not None
                     else server.add_insecure_port(address))
            host = cfg.tcp.rpartition(":")[0]
            self.endpoints.append(f"{host}:{bound}")
        if not self.endpoints:
            raise ValueError("nothing to listen on: set socket and/or tcp")
        await server.start()
        self.server = server
        if self._socket_path is not None:
            self.rt.gate = self._open_gate(self._socket_path, cfg.socket_mode)
        uapi_path = socket_path(cfg)
        if uapi_path is not None:
            self.uapi = UapiServer(self.rt, uapi_path, cfg.socket_mode)
            self.uapi.start()
        if self.metrics is not None and self.uapi is not None:
            self.metrics.attach("uapi", self.uapi.dispatcher)
        if self.tracing is not None and self.uapi is not None:
            self.tracing.attach("uapi", self.uapi.dispatcher)
        for svc in ("", SERVICE_NAME):
            await self._set_health(svc, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", endpoints=self.endpoints, pid=os.getpid())

    def _open_gate(self, path: pathlib.Path, mode: int) -> PeerGate:
        """Listen on the public socket (its mode set before anyone can
        connect) and hand it to the peer gate."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            os.chmod(path, mode)
            listener.listen(512)
        except BaseException:
            listener.close()
            raise
        assert self._private_dir is not None
        cfg = self.config
        return PeerGate(listener.detach(), str(self._private_dir / "grpc.sock"),
                        f"iommud-gate-{secrets.token_hex(8)}",
                        max_connections=cfg.max_connections or None,
                        max_per_uid=cfg.max_connections_per_uid or None,
                        idle_timeout=cfg.connection_idle_seconds)

    async def _set_health(self, service: str, status: int) -> None:
        result = self.health.set(service, status)
        if asyncio.iscoroutine(result):
            await result

    async def reap_forever(self) -> None:
        interval = self.config.reap_interval
        while not self._stopping.is_set():
            stall = self.sessions.clock.tick(interval)
            if stall:
                log.warning("loop.stalled", seconds=round(stall, 3),
                            note="leases do not age while the daemon cannot serve")
            for sess in self.sessions.reap():
                log.info("session.reaped", session=sess.session_id, lease_seconds=sess.lease_seconds)
            try:
                await asyncio.wait_for(self._stopping.wait(), self.config.reap_interval)
            except TimeoutError:
                pass

    def request_stop(self, signame: str = "") -> None:
        if not self._stopping.is_set():
            log.info("shutdown.requested", signal=signame)
            self._stopping.set()

    async def stop(self) -> None:
        """Graceful stop: health goes NOT_SERVING, new calls are refused with
        ESHUTDOWN (UNAVAILABLE) while those in flight finish, within
        shutdown_grace; then the listeners close."""
        self._stopping.set()
        if self.uapi is not None:  # its calls never span an await: none is in flight
            self.uapi.stop()
        for svc in ("", SERVICE_NAME):
            await self._set_health(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
        drained = await self.dispatcher.drain(self.config.shutdown_grace)
        if not drained:
            log.warning("shutdown.grace_expired", in_flight=self.dispatcher.in_flight)
        if self.server is not None:
            await self.server.stop(0.5 if drained else 0)
        if self.rt.gate is not None:
            self.rt.gate.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.tracing is not None:
            # The exporter's last batch: off the loop, which has nothing
            # left to serve.
            await asyncio.to_thread(self.tracing.stop)
        open_sessions = len(self.sessions)
        if self._snapshot_task is not None:
            await self._snapshot_task
        if self._prewarm is not None:
            await self._prewarm
        if self.journal is not None and len(self.journal):
            self.write_snapshot()
        self.sessions.close_all()
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        if self.journal is not None:
            self.journal.close()
        log.info("stopped", closed_sessions=open_sessions)

    def write_snapshot(self) -> None:
        """The whole state into the journal's snapshot, and a fresh log after
        it, before returning (start-up and stop). A failure (a full disk)
        leaves the old snapshot and log, which still hold everything."""
        assert self.journal is not None
        started = time.perf_counter()
        try:
            data = snapshot.dump(self.rt)
            self.journal.write_snapshot(data)
        except Exception as exc:    # the log still holds everything; never lose a stop
            log.error("journal.snapshot_failed", error=str(exc)[:200])
            return
        log.info("journal.snapshot", bytes=sum(len(part) for part in data),
                 sessions=len(self.sessions),
                 seconds=round(time.perf_counter() - started, 4))

    def maybe_snapshot(self) -> None:
        """A snapshot once the rows since the last one would take longer to
        replay than the state takes to write (a row replays in tens of
        microseconds, an area snapshots in well under one): recovery then
        follows the live state, not the history.

        Called with nothing in flight, the one point where the object graph
        is consistent: the state is taken here, on the loop (tens of ms at a
        million areas, once per tens of thousands of calls); the files are
        written off the loop while calls go on, and rows journaled
        meanwhile move to the fresh log when it takes over. Not while a raw
        uAPI session is open: its objects must not outlive the daemon, and a
        snapshot would keep them (they close before the stop's snapshot)."""
        journal = self.journal
        if (journal is None or len(journal) < SNAPSHOT_MIN_ROWS or journal.ephemeral
                or self._snapshot_task is not None or self._stopping.is_set()):
            return
        weight = 0
        for sess in self.sessions:
            weight += sess.account.num_areas // 16
            weight += sum(len(ctx) for ctx in sess.reachable_contexts())
        if len(journal) < max(SNAPSHOT_MIN_ROWS, weight):
            return
        # Large tables and domains the snapshot would encode on the loop are
        # encoded first in a worker thread (snapshot.prewarm): the snapshot
        # waits for the next quiescent point, once, and then reuses what is
        # still current. A table that keeps changing is encoded here after
        # all; the snapshot is never put off twice.
        if self._prewarm is None:
            stale = snapshot.stale(self.rt)
            if stale:
                self._prewarm = asyncio.get_running_loop().create_task(self._encode_ahead(stale))
                return
        elif not self._prewarm.done():
            return
        self._prewarm = None
        started = time.perf_counter()
        try:
            pending = journal.begin_snapshot(snapshot.dump(self.rt))
        except Exception as exc:    # the log still holds everything
            log.error("journal.snapshot_failed", error=str(exc)[:200])
            return
        taken = time.perf_counter() - started
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._finish_snapshot(pending, taken))

    async def _encode_ahead(self, objects: list[tuple[Any, int]]) -> None:
        started = time.perf_counter()
        try:
            kept = await asyncio.to_thread(snapshot.prewarm, objects)
        except Exception as exc:    # the snapshot encodes them itself
            log.error("journal.prewarm_failed", error=str(exc)[:200])
            return
        log.info("journal.prewarmed", objects=len(objects), kept=kept,
                 seconds=round(time.perf_counter() - started, 4))

    async def _finish_snapshot(self, pending: PendingSnapshot, taken: float) -> None:
        assert self.journal is not None
        started = time.perf_counter()
        try:
            try:
                await asyncio.to_thread(pending.write)
            except BaseException:
                pending.abandon()
                raise
            finishing = time.perf_counter()
            self.journal.finish_snapshot(pending)
        except Exception as exc:    # the log still holds everything
            log.error("journal.snapshot_failed", error=str(exc)[:200])
        else:
            log.info("journal.snapshot", bytes=pending.size, sessions=len(self.sessions),
                     seconds=round(taken + time.perf_counter() - started, 4),
                     loop_ms=round((taken + time.perf_counter() - finishing) * 1e3, 2),
                     dump_ms=round(taken * 1e3, 2))
        finally:
            self._snapshot_task = None

    def reload(self) -> None:
        """SIGHUP: apply what can change while serving (log level and format,
        the log file, allow and admin lists); keep the old settings and say
        why when the new ones do not load. Never exits."""
        if self.reload_source is None:
            log.info("reload.skipped", reason="no configuration source")
            return
        try:
            new = self.reload_source()
            access = AccessPolicy(new.allow_uids, new.allow_gids, new.admin_uids,
                                  new.admin_identities)
            if access.restricts_socket and self.config.tcp and not (
                    self.config.tls_client_ca and self.config.tls_cert):
                raise ValueError("allow lists need mutual TLS on the TCP listener")
            if self.reopen_log is not None:
                self.reopen_log(new)
            logsetup.configure(new.log_format, new.log_level, self.log_stream)
        except (OSError, ValueError) as exc:
            log.error("reload.failed", error=str(exc)[:500])
            return
        self.rt.access = access
        for name in ("log_level", "log_format", "log_file", "allow_uids", "allow_gids",
                     "admin_uids", "admin_identities"):
            setattr(self.config, name, getattr(new, name))
        self.dispatcher.refresh_logging()
        if self.uapi is not None:
            self.uapi.dispatcher.refresh_logging()
        log.info("reload.done", log_level=new.log_level)

    async def run(self, on_ready: Callable[[list[str]], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        # A file-size limit (RLIMIT_FSIZE) reached by the journal must come
        # back as an errno on that write (EFBIG: the call is refused), not
        # kill the daemon and every VM's map with it.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        await self.start()
        if on_ready is not None:
            on_ready(self.endpoints)
        reaper = asyncio.create_task(self.reap_forever())
        await self._stopping.wait()
        await reaper
        await self.stop()
