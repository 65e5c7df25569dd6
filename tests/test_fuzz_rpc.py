"""Bad input never breaks the daemon: hypothesis builds every request message
of every unary RPC from its descriptor (huge values, negative fds, foreign
and missing ids, random bytes, nested messages) and sends it to a real
daemon. Each call must succeed or fail with an iommud errno reason — never
an INTERNAL or UNKNOWN status — and the daemon must stay healthy."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import HealthCheck, given, settings, strategies as st

from iommud_client import ERROR_DOMAIN, SESSION_METADATA_KEY, IommudError
from iommud_wire import pb

SERVICE = pb.DESCRIPTOR.services_by_name["IommuService"]
UNARY = [m for m in SERVICE.methods if not m.server_streaming and m.name != "OpenSession"]

_INT_EDGES = {
    F.TYPE_UINT32: (0, 1, 2, 3, 4, 5, 12, 20, 0xFFFF, (1 << 31) - 1, (1 << 32) - 1),
    F.TYPE_INT32: (-1, 0, 3, 4, 5, 6, 7, (1 << 31) - 1, -(1 << 31)),
    F.TYPE_UINT64: (0, 1, 0x1000, 0x1001, 0xFEE00000, (1 << 48), (1 << 63), (1 << 64) - 2,
                    (1 << 64) - 1),
}
_BOUNDS = {F.TYPE_UINT32: (0, (1 << 32) - 1), F.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
           F.TYPE_UINT64: (0, (1 << 64) - 1)}


def scalar(field) -> st.SearchStrategy:
    t = field.type
    if t in _BOUNDS:
        lo, hi = _BOUNDS[t]
        return st.one_of(st.sampled_from(_INT_EDGES[t]), st.integers(lo, hi))
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return st.one_of(st.sampled_from(["0000:03:00.0", "0000:05:00.1", "vfio-pci", "e1000e",
                                          "", "0000:ff:1f.7"]), st.text(max_size=20))
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [77])
    if t == F.TYPE_DOUBLE:
        return st.one_of(st.sampled_from([0.0, -1.0, 1e300]), st.floats(allow_nan=True))
    raise AssertionError(f"unhandled field type {t}")


def message(desc, depth: int = 0) -> st.SearchStrategy:
    fields = {}
    for f in desc.fields:
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry or depth > 1:
                continue
            inner = message(f.message_type, depth + 1)
            fields[f.name] = st.lists(inner, max_size=3) if f.is_repeated else inner
        else:
            base = scalar(f)
            fields[f.name] = st.lists(base, max_size=3) if f.is_repeated else base
    cls = getattr(pb, desc.name)

    def build(values: dict) -> object:
        msg = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            if field.is_repeated:
                if field.message_type is not None:
                    for v in value:
                        getattr(msg, name).add().CopyFrom(v)
                else:
                    getattr(msg, name).extend(value)
            elif field.message_type is not None:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    optional = {k: st.one_of(st.none(), v) for k, v in fields.items()}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda d: build({k: v for k, v in d.items() if v is not None}))


@pytest.fixture(scope="module")
def fuzz_daemon(module_daemon_factory):
    return module_daemon_factory("--max-sessions", "64", name="fuzz")


class World:
    """A session with a context, an IOAS with a mapping, a bound device and
    a container, so that random ids and fds often name real objects."""

    def __init__(self, client) -> None:
        self.client = client
        self.reset()

    def reset(self) -> None:
        self.session = self.client.open_session("fuzz", lease_seconds=60)
        ctx = self.session.open_context()                       # fd 3
        ioas = ctx.ioas_alloc()
        ctx.ioas_map(ioas, 0x7F00_0000_0000, 0x4000, 0x10_0000)
        dev = self.session.open_device("0000:03:00.1")          # fd 4
        dev.bind(ctx)
        dev.attach(ioas)
        self.session.open_container()                           # fd 5

    def call(self, method: str, request) -> None:
        try:
            self.session.call(method, request)
        except IommudError as err:
            assert err.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
                f"{method} answered {err.code}: {err.message}"
            assert err.errno_name.startswith("E") and err.metadata.get("errno"), err
            if err.errno_name == "ESRCH":
                self.reset()


@pytest.fixture(scope="module")
def world(fuzz_daemon):
    with fuzz_daemon.client() as c:
        yield World(c)


@pytest.mark.parametrize("method", UNARY, ids=[m.name for m in UNARY])
def test_every_request_message_gets_an_errno_or_succeeds(world, method) -> None:
    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message(method.input_type))
    def run(request) -> None:
        world.call(method.name, request)

    run()
    assert world.client.health() == "SERVING"


def test_daemon_healthy_and_consistent_after_fuzzing(world, fuzz_daemon) -> None:
    assert world.client.health() == "SERVING"
    info = world.client.info().daemon
    assert info.sessions >= 1
    # Every reply was an iommud status: none was INTERNAL or a bug report in the log.
    assert not [line for line in fuzz_daemon.log_lines() if "rpc.bug" in line]


def test_garbage_bytes_on_every_method_are_clean_errors(world) -> None:
    blobs = [b"\xff", b"\x08", b"\x12\x05ab", b"\x0a\xff\xff\xff\xff\x0f", b"\x80" * 12]
    for method in SERVICE.methods:
        if method.server_streaming:
            continue
        call = world.client.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}",
                                                request_serializer=None,
                                                response_deserializer=None)
        for blob in blobs:
            try:
                call(blob, metadata=((SESSION_METADATA_KEY, world.session.token),), timeout=10)
            except grpc.RpcError as exc:
                err = IommudError.from_rpc_error(exc)
                assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
                    (method.name, blob, exc.details())
                assert err.metadata or err.errno_name == "EIO"
    assert world.client.health() == "SERVING"
    assert ERROR_DOMAIN == "iommud.v1"
