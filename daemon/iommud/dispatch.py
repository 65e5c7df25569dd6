"""The dispatcher: the framing every operation shares, done once.

For each call, in this order: the access policy (allowed uids/gids, admin
rows; access.py), the session named by the token (ESRCH), the fd the row
acts on (EBADF, ENOTTY), the fail-nth walk when armed (failnth.py), the
handler, the journal row for a journaled success, and one log event. Every
failure is an IommuError (an OSError from rust_core is adopted as one);
turning it into a transport status is the transport's job (errors.py).

Transports (the gRPC adapter in service.py, journal replay here) hand the
dispatcher an op row, the decoded request and who is calling; handlers never
see the transport.
"""
from __future__ import annotations

import asyncio
import errno as E
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from iommud import failnth, limits
from iommud.access import Caller
from iommud.call import Call, Runtime
from iommud.errors import IommuError, request_details
from iommud.logsetup import get_logger, level_enabled
from iommud.ops import TABLE, Fd, Needs, Op
from iommud.session import Session

if TYPE_CHECKING:
    from iommud.stats import RpcStats
    from iommud.tracing import Spans

log = get_logger("iommud.rpc")

#: How many journaled calls pass between two looks at whether a snapshot is due.
SNAPSHOT_CHECK_ROWS = 1024

Resolver = Callable[[Session, Any], Any]


#: The event-queue fds, by the row's fd kind: the fd entry's kind, and
#: how a refusal names it.
_QUEUE_FDS = {Fd.VEVENTQ: ("veventq", "a vEVENTQ fd"), Fd.FAULT: ("fault", "a fault queue fd")}


def _resolver(op: Op) -> Resolver | None:
    """How the row's fd field becomes the object the handler acts on."""
    field = op.fd.value
    if op.fd in (Fd.IOMMUFD, Fd.CONTAINER):
        return lambda sess, req: sess.context(getattr(req, field))
    if op.fd is Fd.DEVICE:
        return lambda sess, req: sess.device_fd(getattr(req, field))
    if op.fd is Fd.GROUP:
        return lambda sess, req: sess.group_fd(getattr(req, field))
    if op.fd in _QUEUE_FDS:
        kind, what = _QUEUE_FDS[op.fd]
        return lambda sess, req: _queue_fd(sess, getattr(req, field), kind, what, field)
    return None


def _queue_fd(sess: Session, fd: int, kind: str, what: str, field: str) -> Any:
    """An event queue's fd: EBADF when not open, ENOTTY when of another kind."""
    entry = sess.fd_entry(fd)
    if entry.kind != kind:
        raise IommuError(E.ENOTTY, f"fd {fd} is a {entry.kind} fd, not {what}.", **{field: fd})
    return entry


class Dispatcher:
    def __init__(self, rt: Runtime, table: Mapping[str, Op] = TABLE, *,
                 offload: bool = True) -> None:
        self.rt = rt
        self.table = table
        #: Run `offload` ops in a worker thread (the gRPC path); the raw
        #: transport drives each call to its end without the loop, so it
        #: runs them inline.
        self.offload = offload
        self._resolvers = {name: _resolver(op) for name, op in table.items()}
        self.refresh_logging()
        #: Set at shutdown: new calls are refused (ESHUTDOWN, UNAVAILABLE)
        #: while the ones in flight finish.
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Journaled calls since the last look at whether a snapshot is due.
        self.rows_since_check = 0
        #: Called with no call in flight once rows_since_check passes
        #: SNAPSHOT_CHECK_ROWS (server.Daemon.maybe_snapshot).
        self.on_rows: Callable[[], None] | None = None
        #: Each call's method, status and latency, while metrics are on
        #: (metrics.py reads it); None costs the hot path one test.
        self.stats: RpcStats | None = None
        #: A span per call, while tracing is on (tracing.py).
        self.spans: Spans | None = None

    def refresh_logging(self) -> None:
        """Per-call events are debug-level: computed only when they are kept."""
        self._log_calls = level_enabled(logging.DEBUG)

    def _begin(self, op: Op, request: Any, caller: Caller, token: str | None) -> Call:
        """Access, session and fd: everything before the handler."""
        if self.draining:
            raise IommuError(E.ESHUTDOWN, "The daemon is shutting down; retry once it is back "
                             "(sessions survive a restart with the journal).")
        if op.debug and not getattr(self.rt.config, op.debug):
            raise IommuError(E.ENOTTY, f"{op.name} is a debug operation; this daemon runs "
                             f"without {op.debug}, as a kernel without CONFIG_IOMMUFD_TEST "
                             f"has no IOMMU_TEST_CMD.")
        self.rt.access.check_call(caller, op.name, op.admin)
        sess: Session | None = None
        if op.needs is Needs.SESSION or (op.needs is Needs.OPTIONAL and token):
            sess = self.rt.sessions.lookup(token, caller.identity)
        resolve = self._resolvers[op.name]
        target = resolve(sess, request) if resolve is not None and sess is not None else None
        return Call(self.rt, caller, sess, target, op.name)

    async def call(self, op: Op, request: Any, caller: Caller, token: str | None,
                   fail_nth: str | None = None,
                   trace_context: Mapping[str, str] | None = None) -> Any:
        """Run one unary call; returns the reply or raises IommuError.
        `trace_context` is the caller's W3C trace context, when it sent one."""
        spans = self.spans
        if spans is None:
            return await self._call(op, request, caller, token, fail_nth)
        with spans.span(op.name, trace_context) as span:
            try:
                return await self._call(op, request, caller, token, fail_nth)
            except IommuError as err:
                spans.refused(span, err)
                raise
            except Exception as exc:
                spans.failed(span, exc)
                raise

    async def _call(self, op: Op, request: Any, caller: Caller, token: str | None,
                    fail_nth: str | None) -> Any:
        started = time.perf_counter()
        call: Call | None = None
        status = "OK"
        self.in_flight += 1
        self._idle.clear()
        try:
            call = self._begin(op, request, caller, token)
            sess = call.session
            if sess is not None and self.spans is not None:
                self.spans.session(sess.session_id)
            if sess is not None and (op.is_async or (op.offload and self.offload)
                                     or sess.busy.locked()):
                # An async handler may run work off the loop: it holds the
                # session's lock across that, and a call of the same session
                # arriving meanwhile waits its turn instead of interleaving.
                async with sess.busy:
                    sess.in_flight += 1
                    try:
                        return await self._execute(op, call, request, fail_nth)
                    finally:
                        sess.in_flight -= 1
            return await self._execute(op, call, request, fail_nth)
        except IommuError as err:
            status = err.name
            raise
        except OSError as exc:  # from rust_core: the same errno, adopted
            adopted = IommuError.from_oserror(exc)
            status = adopted.name
            raise adopted from exc
        except Exception as exc:
            status = type(exc).__name__
            raise
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
                if self.rows_since_check >= SNAPSHOT_CHECK_ROWS and self.on_rows is not None:
                    self.rows_since_check = 0
                    self.on_rows()               # nothing in flight: a consistent point
            if self.stats is not None:
                self.stats.record(op.name, status, time.perf_counter() - started)
            if status != "OK" or self._log_calls:
                self._log(op, request, call, caller, status, started)

    async def _execute(self, op: Op, call: Call, request: Any, fail_nth: str | None) -> Any:
        """The journal row, durable, then the handler (write-ahead: a call
        whose row cannot be written is refused with nothing changed); a
        failure with no effect is marked so replay skips it. A sync handler
        runs without yielding, so nothing interleaves with it."""
        nth = failnth.parse(fail_nth, bool(self.rt.config.debug_fail_nth)) \
            if fail_nth is not None else None
        journal = self.rt.journal
        seq = 0
        if op.journal and journal is not None:
            sess = call.session
            if sess is None:
                call.token = secrets.token_urlsafe(32)   # OpenSession's, in its row
            seq = journal.begin(sess.token if sess is not None else call.token or "", op.name,
                                request.SerializeToString(), call.caller.identity, nth or 0)
        try:
            if nth is None:
                if op.offload and self.offload and call.session is not None:
                    return await asyncio.to_thread(op.handler, call, request)
                return await op.handler(call, request) if op.is_async \
                    else op.handler(call, request)
            with failnth.armed(nth):
                return (await op.handler(call, request) if op.is_async
                        else op.handler(call, request))
        except (IommuError, OSError) as exc:
            if seq and not op.partial:
                assert journal is not None
                journal.failed(seq, exc.errno or E.EIO)
            raise
        finally:
            if seq:
                self.rows_since_check += 1

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls and wait up to `timeout` for the ones in flight;
        True when none is left."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _log(self, op: Op, request: Any, call: Call | None, caller: Caller, status: str,
             started: float) -> None:
        sess = call.session if call is not None else None
        fields = dict(method=op.name, session=sess.session_id if sess else None, status=status,
                      duration_ms=round((time.perf_counter() - started) * 1e3, 3),
                      **request_details(request))
        if status == "OK":
            log.debug("rpc", **fields)
        else:
            log.info("rpc", uid=caller.uid, pid=caller.pid, identity=caller.identity or None,
                     **fields)

    def refused(self, op: Op, request: Any, caller: Caller, err: IommuError) -> None:
        """A call its transport refused before dispatching it (a malformed or
        oversized request, a client not reading its replies): counted and
        logged as a refusal the dispatcher made itself would be."""
        if self.stats is not None:
            self.stats.count(op.name, err.name)
        self._log(op, request, None, caller, err.name, time.perf_counter())

    async def stream(self, op: Op, request: Any, caller: Caller,
                     token: str | None) -> AsyncIterator[Any]:
        """Open a server stream: the framing, then the handler's generator.
        An open is counted (no latency: a stream lasts as long as its
        client); a refused one is logged as a refused call is."""
        stats = self.stats
        try:
            call = self._begin(op, request, caller, token)
        except IommuError as err:
            if stats is not None:
                stats.count(op.name, err.name)
            self._log(op, request, None, caller, err.name, time.perf_counter())
            raise
        if stats is None:
            async for item in op.handler(call, request):
                yield item
            return
        stats.count(op.name, "OK")
        stats.stream_opened(op.name, 1)
        try:
            async for item in op.handler(call, request):
                yield item
        finally:
            stats.stream_opened(op.name, -1)

    async def replay(self) -> int:
        """Rebuild the state the journal acknowledged, on top of its snapshot;
        returns the rows replayed.

        Runs before the server listens, with limits suspended (a restart
        with lowered limits keeps what was acknowledged and applies them to
        new requests only). Each row goes through its op's handler with the
        session it was recorded under, without access checks or journaling.
        A row may fail only where the live call could have: a partial op
        (it fails the same way again), or a session's last row, written
        ahead of a call that was still in flight when the daemon died. Any
        other failure means the journal and this daemon disagree, and
        starting anyway would serve a state no client was promised."""
        journal = self.rt.journal
        if journal is None:
            return 0
        records = list(journal.records())
        last_of: dict[str, int] = {}
        for rec in records:
            if rec.method:
                last_of[rec.token] = rec.seq
        count = 0
        journal.replaying = True
        try:
            with limits.suspended():
                for rec in records:
                    if not rec.method:                   # FORGET: the session closed for good
                        sess = self.rt.sessions.get(rec.token)
                        if sess is not None:
                            self.rt.sessions.close(sess)
                        count += 1
                        continue
                    await self._replay_row(rec, last_of.get(rec.token) == rec.seq)
                    count += 1
        finally:
            journal.replaying = False
        self.rt.sessions.apply_limits()
        return count

    async def _replay_row(self, rec: Any, in_flight: bool) -> None:
        op = self.table.get(rec.method)
        if op is None:
            raise RuntimeError(f"journal row {rec.seq} names an unknown method {rec.method!r}")
        request = op.request.FromString(rec.request)
        sess = self.rt.sessions.get(rec.token)
        try:
            if op.debug and not getattr(self.rt.config, op.debug):
                raise IommuError(E.ENOTTY, f"{op.name} needs {op.debug}")
            if sess is None and op.needs is not Needs.OPENS and not op.admin:
                raise IommuError(E.ESRCH, "its session is not open")
            resolve = self._resolvers[op.name]
            target = resolve(sess, request) if resolve is not None and sess else None
            call = Call(self.rt, Caller(replayed=rec.identity), sess, target, op.name,
                        token=rec.token, replaying=True)
            with failnth.armed(rec.fail_nth or None):
                result = op.handler(call, request)
                if op.is_async:
                    await result
        except (IommuError, OSError) as exc:
            if op.partial or in_flight:
                log.info("journal.row_failed_again", seq=rec.seq, method=rec.method,
                         errno=getattr(exc, "name", None) or exc.errno)
                return
            raise RuntimeError(f"journal row {rec.seq} ({rec.method}) no longer applies: "
                               f"{exc}") from exc
