"""IOAS_ALLOC, MAP, UNMAP, IOVA_RANGES, ALLOW_IOVAS, COPY and DESTROY through
the client library against a real daemon: one test per rule of §2 and the §8
checklist, each failure asserting the exact errno and that nothing changed."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from support import raises_errno

from iommud_client import SESSION_METADATA_KEY
from iommud_wire import pb

U64_MAX = (1 << 64) - 1
R, W, FIXED = 4, 2, 1


def state(ctx, *ioas_ids: int):
    """Everything a failed call must leave alone."""
    return ([(o.id, o.type, o.users, o.areas, o.mapped_bytes) for o in ctx.list_objects()],
            [[(a.iova, a.length, a.user_va, a.prot) for a in ctx.list_areas(i)] for i in ioas_ids],
            [ctx.ioas_iova_ranges(i) for i in ioas_ids])


@pytest.fixture
def ioas(ctx) -> int:
    return ctx.ioas_alloc()


# -- ids and destroy (rules 4, 8, 9, 10) --------------------------------------

def test_ids_start_at_1_and_reuse_lowest_free(ctx) -> None:
    ids = [ctx.ioas_alloc() for _ in range(4)]
    assert ids == [1, 2, 3, 4]
    ctx.destroy(2)
    ctx.destroy(3)
    assert ctx.ioas_alloc() == 2                      # rule 9: lowest free
    assert ctx.ioas_alloc() == 3
    assert ctx.ioas_alloc() == 5


def test_destroy_unknown_or_zero_is_enoent(ctx, ioas) -> None:
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.destroy(0), "ENOENT")
    raises_errno(lambda: ctx.destroy(99), "ENOENT")
    assert state(ctx, ioas) == before
    ctx.destroy(ioas)
    raises_errno(lambda: ctx.destroy(ioas), "ENOENT")


def test_destroy_idle_ioas_with_mappings_drops_them(ctx, ioas) -> None:   # rule 8
    ctx.ioas_map(ioas, 0x1000, 0x2000, 0x10000)
    ctx.destroy(ioas)
    assert ctx.list_objects() == []
    raises_errno(lambda: ctx.translate(ioas, 0x10000), "ENOENT")


def test_ioas_alloc_flags_are_eopnotsupp(ctx) -> None:                     # rule 10
    err = raises_errno(lambda: ctx.ioas_alloc(flags=1), "EOPNOTSUPP")
    assert err.code is grpc.StatusCode.UNIMPLEMENTED
    assert ctx.list_objects() == []


def test_wrong_type_lookup_is_enoent(ctx, ioas) -> None:
    raises_errno(lambda: ctx.ioas_map(ioas + 1, 0, 0x1000), "ENOENT")


# -- IOVA_RANGES and ALLOW_IOVAS (rules 11-13) ------------------------------------

def test_fresh_ranges(ctx, ioas) -> None:                                     # rule 11
    ranges, align = ctx.ioas_iova_ranges(ioas)
    assert [(r.start, r.last) for r in ranges] == [(0, U64_MAX)] and align == 1


def test_ranges_capacity_emsgsize(ctx, ioas) -> None:                         # rule 12
    err = raises_errno(lambda: ctx.ioas_iova_ranges(ioas, num_iovas=0), "EMSGSIZE")
    assert err.metadata["num_iovas"] == "1"
    assert len(ctx.ioas_iova_ranges(ioas, num_iovas=1)[0]) == 1


def test_ranges_reserved_and_lookup(ctx, ioas) -> None:
    raises_errno(lambda: ctx.ioas_iova_ranges(ioas, reserved=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.ioas_iova_ranges(ioas + 5), "ENOENT")


def test_allow_iovas_rules(ctx, ioas) -> None:                                # rule 13
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_allow_iovas(ioas, [(0x1000, 0x1000)]), "EINVAL")
    raises_errno(lambda: ctx.ioas_allow_iovas(
        ioas, [(0x1000, 0x2fff), (0x2000, 0x3fff)]), "EINVAL")
    raises_errno(lambda: ctx.ioas_allow_iovas(ioas, [], reserved=1), "EOPNOTSUPP")
    assert state(ctx, ioas) == before
    ctx.ioas_allow_iovas(ioas, [(0x10_0000, 0x10_ffff)])
    iova = ctx.ioas_map(ioas, 0, 0x1000)
    assert 0x10_0000 <= iova <= 0x10_ffff
    ctx.ioas_allow_iovas(ioas, [])


# -- MAP (rules 15-19, 21-25) -------------------------------------------------------

def test_map_needs_read_or_write(ctx, ioas) -> None:                          # rule 15
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x1000, 0x1000, readable=False,
                                      writeable=False), "EINVAL")
    assert state(ctx, ioas) == before


@pytest.mark.parametrize("flags,reserved", [(FIXED | R | W | 1 << 8, 0), (FIXED | R, 1)])
def test_map_unknown_flag_or_reserved(ctx, ioas, flags, reserved) -> None:    # rule 16
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x1000, 0x1000, flags=flags, reserved=reserved),
                 "EOPNOTSUPP")
    assert state(ctx, ioas) == before


def test_map_zero_length(ctx, ioas) -> None:                                 # rule 17
    raises_errno(lambda: ctx.ioas_map(ioas, 0, 0, 0x1000), "EINVAL")
    assert ctx.list_areas(ioas) == []


@pytest.mark.parametrize("iova,length", [(U64_MAX, 0x1000), (0x1000, U64_MAX)])
def test_map_overflow(ctx, ioas, iova, length) -> None:                     # rule 18
    raises_errno(lambda: ctx.ioas_map(ioas, 0, length, iova), "EOVERFLOW")
    assert ctx.list_areas(ioas) == []


def test_map_user_va_overflow(ctx, ioas) -> None:
    raises_errno(lambda: ctx.ioas_map(ioas, U64_MAX - 0xFFF, 0x2000, 0x1000), "EOVERFLOW")


def test_map_order_flags_before_lookup(ctx) -> None:
    # Unknown flags are reported before a missing IOAS, as in ioas.c.
    raises_errno(lambda: ctx.ioas_map(42, 0, 0x1000, 0x1000, flags=FIXED | R | 1 << 9),
                 "EOPNOTSUPP")
    raises_errno(lambda: ctx.ioas_map(42, 0, 0x1000, 0x1000), "ENOENT")


@pytest.mark.parametrize("iova,length", [(0x1000, 0x1000), (0x1800, 0x1000), (0x0, 0x2000),
                                         (0x1fff, 1), (0x0, 0x100000)])
def test_fixed_map_overlap_eexist(ctx, ioas, iova, length) -> None:          # rule 19
    ctx.ioas_map(ioas, 0x5000_0000, 0x1000, 0x1000)
    before = state(ctx, ioas)
    err = raises_errno(lambda: ctx.ioas_map(ioas, 0, length, iova), "EEXIST")
    assert err.code is grpc.StatusCode.ALREADY_EXISTS
    assert state(ctx, ioas) == before


def test_fixed_map_unaligned_on_fresh_ioas(ctx, ioas) -> None:              # rule 22
    assert ctx.ioas_map(ioas, 0x1234, 0x123, 0x5555) == 0x5555
    assert ctx.translate(ioas, 0x5555 + 0x10).pa == 0x1244


def test_allocated_iova_rules(ctx, ioas) -> None:                            # rule 23
    for user_va, length in [(0, 0x1000), (0x7F12_3456_7123, 0x800), (0x4000_0000, 0x20_0000)]:
        iova = ctx.ioas_map(ioas, user_va, length)
        assert iova != 0 and iova % 0x1000 == user_va % 0x1000
        assert ctx.translate(ioas, iova).pa == user_va
    assert ctx.ioas_map(ioas, 0x8000_0000, 0x20_0000) % 0x20_0000 == 0


def test_allocation_enospc(ctx, ioas) -> None:                               # rule 24
    ctx.ioas_allow_iovas(ioas, [(0x10_0000, 0x10_1fff)])
    ctx.ioas_map(ioas, 0, 0x2000)
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x1000), "ENOSPC")
    assert state(ctx, ioas) == before


def test_map_bogus_user_memory_without_devices(ctx, ioas) -> None:           # rule 25
    assert ctx.ioas_map(ioas, 0xDEAD_0000_0000, 0x1000, 0x1000) == 0x1000


# -- UNMAP (rules 29-35) -------------------------------------------------------------

def test_unmap_all_empty(ctx, ioas) -> None:                                  # rule 29
    assert ctx.ioas_unmap_all(ioas) == 0


def test_unmap_all_sums(ctx, ioas) -> None:                                   # rule 30
    for i, size in enumerate((0x1000, 0x3000, 0x20_0000)):
        ctx.ioas_map(ioas, 0, size, (i + 1) << 24)
    assert ctx.ioas_unmap_all(ioas) == 0x1000 + 0x3000 + 0x20_0000
    assert ctx.list_areas(ioas) == []


def test_unmap_split_enoent(ctx, ioas) -> None:                               # rule 31
    ctx.ioas_map(ioas, 0, 0x4000, 0x10000)
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x11000, 0x1000), "ENOENT")
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x10000, 0x1000), "ENOENT")
    assert state(ctx, ioas) == before


def test_unmap_two_areas_and_gap(ctx, ioas) -> None:                          # rule 32
    ctx.ioas_map(ioas, 0, 0x1000, 0x10000)
    ctx.ioas_map(ioas, 0, 0x2000, 0x20000)
    assert ctx.ioas_unmap(ioas, 0x10000, 0x20000) == 0x3000


def test_unmap_end_cuts_last_area_is_not_atomic(ctx, ioas) -> None:          # rule 33
    ctx.ioas_map(ioas, 0, 0x1000, 0x10000)
    ctx.ioas_map(ioas, 0, 0x2000, 0x20000)
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x10000, 0x11000), "ENOENT")
    assert [(a.iova, a.length) for a in ctx.list_areas(ioas)] == [(0x20000, 0x2000)]


def test_unmap_empty_range_enoent(ctx, ioas) -> None:                         # rule 34
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x10000, 0x1000), "ENOENT")


def test_unmap_zero_length_and_overflow(ctx, ioas) -> None:                   # rule 35
    ctx.ioas_map(ioas, 0, 0x1000, 0x1000)
    before = state(ctx, ioas)
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x1000, 0), "EINVAL")
    raises_errno(lambda: ctx.ioas_unmap(ioas, U64_MAX, 1), "EOVERFLOW")
    raises_errno(lambda: ctx.ioas_unmap(ioas, 0x2000, U64_MAX - 1), "EOVERFLOW")
    raises_errno(lambda: ctx.ioas_unmap(ioas + 9, 0x1000, 0x1000), "ENOENT")
    assert state(ctx, ioas) == before


# -- COPY (rules 27-28) ------------------------------------------------------------------

def test_copy_rules(ctx) -> None:
    src, dst = ctx.ioas_alloc(), ctx.ioas_alloc()
    ctx.ioas_map(src, 0x10_0000, 0x2000, 0x1000)
    ctx.ioas_map(src, 0x20_0000, 0x1000, 0x4000, writeable=False)
    before = state(ctx, src, dst)
    raises_errno(lambda: ctx.ioas_copy(dst, src, 0x1000, 0x4000, 0x1000), "ENOENT")  # 27
    raises_errno(lambda: ctx.ioas_copy(dst, src, 0x4000, 0x1000, 0x1000), "EPERM")   # 28
    raises_errno(lambda: ctx.ioas_copy(dst, src, 0x1000, 0, 0x1000), "EINVAL")
    raises_errno(lambda: ctx.ioas_copy(dst, 77, 0x1000, 0x1000), "ENOENT")
    raises_errno(lambda: ctx.ioas_copy(dst, src, 0x1000, 0x1000, flags=1 << 5), "EOPNOTSUPP")
    assert state(ctx, src, dst) == before
    at = ctx.ioas_copy(dst, src, 0x1800, 0x800, 0x9000, writeable=False)
    assert at == 0x9000 and ctx.translate(dst, 0x9000).pa == 0x10_0800
    auto = ctx.ioas_copy(dst, src, 0x1000, 0x2000)
    assert auto != 0 and ctx.translate(dst, auto + 0x1fff).pa == 0x10_1fff


# -- translate -------------------------------------------------------------------------

def test_translate_single(ctx, ioas) -> None:
    ctx.ioas_map(ioas, 0x7F00_0000_0000, 0x20_0000, 0x10_0000, writeable=False)
    t = ctx.translate(ioas, 0x10_0123)
    assert (t.pa, t.prot, t.readable, t.writeable) == (0x7F00_0000_0123, R, True, False)
    err = raises_errno(lambda: ctx.translate(ioas, 0x30_0000), "ENOENT")
    assert err.metadata["iova"] == "0x300000"


def test_translate_batch_lists_and_numpy(ctx, ioas) -> None:
    ctx.ioas_map(ioas, 0x9000_0000, 0x2000, 0x1000)
    ctx.ioas_map(ioas, 0xA000_0000, 0x1000, 0x8000, readable=False)
    res = ctx.translate_batch(ioas, [0x1000, 0x2fff, 0x3000, 0x8004, 0])
    assert list(res.pas) == [0x9000_0000, 0x9000_1FFF, 0, 0xA000_0004, 0]
    assert list(res.prots) == [6, 6, 0, 2, 0] and res.mapped_count == 3
    addrs = np.arange(0x1000, 0x3000, 0x10, dtype=np.uint64)
    res = ctx.translate_batch(ioas, addrs)
    assert np.array_equal(np.frombuffer(res.pas.tobytes(), np.uint64), addrs - 0x1000 + 0x9000_0000)
    assert res.mapped_count == len(addrs)


def test_translate_batch_not_multiple_of_8(session, ctx, ioas) -> None:
    raises_errno(lambda: session.call("TranslateBatch", pb.TranslateBatchRequest(
        iommufd=ctx.iommufd, ioas_id=ioas, iovas=b"\0" * 12)), "EINVAL")


# -- framing ---------------------------------------------------------------------------------

def test_unknown_protobuf_field_is_e2big(client, session, ctx, ioas) -> None:
    raw = pb.IoasMapRequest(iommufd=ctx.iommufd, ioas_id=ioas, flags=FIXED | R, length=0x1000,
                            iova=0x1000).SerializeToString() + b"\xa8\x06\x01"  # field 101 = 1
    call = client.channel.unary_unary("/iommud.v1.IommuService/IoasMap",
                                      request_serializer=None,
                                      response_deserializer=pb.IoasMapResponse.FromString)
    raises_errno(lambda: call(raw, metadata=((SESSION_METADATA_KEY, session.token),), timeout=10),
                 "E2BIG")
    assert ctx.list_areas(ioas) == []


def test_an_unknown_field_deep_in_a_repeated_message_is_e2big_naming_it(client, session, ctx,
                                                                         ioas) -> None:
    ranges = [pb.IovaRange(start=k << 24, last=(k << 24) + 0xFFF) for k in range(1, 4)]
    good = pb.IoasAllowIovasRequest(iommufd=ctx.iommufd, ioas_id=ioas, allowed_iovas=ranges)
    # The third range carries field 15 = 1: re-encode it by hand.
    third = ranges[2].SerializeToString() + b"\x78\x01"
    head = pb.IoasAllowIovasRequest(iommufd=ctx.iommufd, ioas_id=ioas,
                                    allowed_iovas=ranges[:2]).SerializeToString()
    tag = good.SerializeToString()[len(head):][:1]                # allowed_iovas' tag byte
    raw = head + tag + bytes([len(third)]) + third
    call = client.channel.unary_unary("/iommud.v1.IommuService/IoasAllowIovas",
                                      request_serializer=None,
                                      response_deserializer=pb.IoasAllowIovasResponse.FromString)
    err = raises_errno(lambda: call(raw, metadata=((SESSION_METADATA_KEY, session.token),),
                                    timeout=10), "E2BIG")
    assert "allowed_iovas[2]" in str(err)
    assert ctx.ioas_iova_ranges(ioas)[0][0].start == 0            # nothing was allowed


def test_a_known_field_written_the_long_way_is_not_mistaken_for_an_unknown_one(
        client, session, ctx, ioas) -> None:
    """A zero written out explicitly (which proto3 encoders omit) parses the
    same, so it is served, not refused as E2BIG."""
    raw = pb.IoasMapRequest(iommufd=ctx.iommufd, ioas_id=ioas, flags=FIXED | R, length=0x1000,
                            iova=0x1000, user_va=0x7000_0000).SerializeToString()
    raw += b"\x20\x00"                                        # reserved (field 4) = 0, again
    call = client.channel.unary_unary("/iommud.v1.IommuService/IoasMap",
                                      request_serializer=None,
                                      response_deserializer=pb.IoasMapResponse.FromString)
    assert call(raw, metadata=((SESSION_METADATA_KEY, session.token),), timeout=10).iova == 0x1000


def test_truncated_message_is_a_clean_error(client, session) -> None:
    call = client.channel.unary_unary("/iommud.v1.IommuService/IoasMap", request_serializer=None,
                                      response_deserializer=pb.IoasMapResponse.FromString)
    err = raises_errno(lambda: call(b"\x08", metadata=((SESSION_METADATA_KEY, session.token),),
                                    timeout=10), "EINVAL")
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid iommud.v1.IoasMapRequest" in err.message
    assert client.health() == "SERVING"


# -- IoasMapBatch: many IOAS_MAPs in one call, all or nothing ------------------

def test_map_batch_places_areas_as_single_maps_would(ctx) -> None:
    batched, single = ctx.ioas_alloc(), ctx.ioas_alloc()
    for ioas in (batched, single):
        ctx.ioas_map(ioas, 0x7000_0000, 0x4000, 0x10_0000)
    vas = [0x1000, 0x20_3000, 0x40_0000, 0x50_0000]
    lens = [0x1000, 0x2000, 0x20_0000, 0x3000]
    got = ctx.ioas_map_batch(batched, vas, lens)
    want = [ctx.ioas_map(single, va, ln) for va, ln in zip(vas, lens, strict=False)]
    assert list(got) == want
    assert ctx.list_areas(batched) == ctx.list_areas(single)
    fixed = ctx.ioas_map_batch(batched, np.array([0x9000, 0xA000], dtype=np.uint64),
                               [0x1000, 0x1000], [0x7000_0000, 0x7100_0000], writeable=False)
    assert list(fixed) == [0x7000_0000, 0x7100_0000]
    out = ctx.translate_batch(batched, [0x7000_0010, 0x7100_0fff, got[1] + 0x1234])
    assert list(out.pas) == [0x9010, 0xAfff, 0x20_4234]
    assert list(out.prots) == [R, R, R | W]
    assert list(ctx.ioas_map_batch(batched, [], [])) == []


def test_map_batch_failure_maps_nothing_and_names_the_entry(ctx, ioas) -> None:
    ctx.ioas_map(ioas, 0x5000, 0x1000, 0x30_0000)
    before = state(ctx, ioas)
    e = raises_errno(lambda: ctx.ioas_map_batch(
        ioas, [0x1000, 0x2000, 0x3000], [0x1000, 0x1000, 0x1000],
        [0x10_0000, 0x20_0000, 0x30_0000]), "EEXIST")
    assert "Request 0x2 of the batch" in e.message
    e = raises_errno(lambda: ctx.ioas_map_batch(ioas, [0x1000, 0x2000], [0x1000, 0]), "EINVAL")
    assert "Request 0x1 of the batch" in e.message
    assert state(ctx, ioas) == before


@pytest.mark.parametrize("kwargs, errno_name", [
    ({"user_vas": b"\0" * 9, "lengths": b"\0" * 8}, "EINVAL"),                 # ragged
    ({"user_vas": b"\0" * 16, "lengths": b"\0" * 8}, "EINVAL"),                # unequal counts
    ({"flags": R | W | FIXED, "lengths": (0x1000).to_bytes(8, "little")}, "EINVAL"),  # no iovas
    ({"reserved": 1}, "EOPNOTSUPP"),
    ({"flags": R | W | 0x80}, "EOPNOTSUPP"),
    ({"flags": 0}, "EINVAL"),                                                # neither R nor W
    ({"lengths": U64_MAX.to_bytes(8, "little")}, "EOVERFLOW"),
    ({"flags": R | FIXED, "iovas": U64_MAX.to_bytes(8, "little")}, "EOVERFLOW"),
    ({"ioas_id": 99}, "ENOENT"),
])
def test_map_batch_rejects_bad_requests_and_changes_nothing(ctx, ioas, kwargs, errno_name) -> None:
    ctx.ioas_map(ioas, 0x5000, 0x1000, 0x30_0000)
    before = state(ctx, ioas)
    fields = {"iommufd": ctx.iommufd, "ioas_id": ioas, "flags": R | W, "user_vas": b"\0" * 8,
                  "lengths": (0x1000).to_bytes(8, "little"), "iovas": b""}
    fields.update(kwargs)
    raises_errno(lambda: ctx._call("IoasMapBatch", pb.IoasMapBatchRequest(**fields)), errno_name)
    assert state(ctx, ioas) == before
