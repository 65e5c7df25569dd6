"""Introspection: Echo and GetInfo (the daemon's version, limits and object
counts). Not in the kernel's uAPI; it reads every object type, so it sits
above all of their modules."""
from __future__ import annotations

from typing import TYPE_CHECKING

from iommud import __version__, _core
from iommud.context import IommufdContext
from iommud.device import DeviceFd, DeviceObj
from iommud.hw_pagetable import HwptPaging
from iommud.ioas import Ioas
from iommud.vfio_group import GroupFd
from iommud_wire import pb

if TYPE_CHECKING:
    from iommud.call import Call
    from iommud.session import Session


def _counts(sessions: list[Session]) -> pb.ObjectCounts:
    counts = pb.ObjectCounts(sessions=len(sessions))
    contexts: set[IommufdContext] = set()
    for sess in sessions:
        for _fd, entry in sess.fds():
            if isinstance(entry, DeviceFd):
                counts.device_fds += 1
                if entry.bound is not None:
                    contexts.add(entry.bound.ctx)  # a context kept alive by its devices
            elif isinstance(entry, GroupFd):
                if entry.ctx is not None:
                    contexts.add(entry.ctx)  # a container kept alive by its groups
            elif isinstance(entry, IommufdContext):
                contexts.add(entry)
    for ctx in contexts:
        counts.contexts += 1
        for obj in ctx.objects():
            counts.objects += 1
            if isinstance(obj, Ioas):
                counts.ioas += 1
                counts.areas += obj.num_areas
                counts.mapped_bytes += obj.mapped_bytes
            elif isinstance(obj, HwptPaging):
                counts.hwpts += 1
            elif isinstance(obj, DeviceObj):
                counts.devices += 1
    return counts


def echo(call: Call, req: pb.EchoRequest) -> pb.EchoResponse:
    return pb.EchoResponse(payload=req.payload)


def get_info(call: Call, req: pb.GetInfoRequest) -> pb.GetInfoResponse:
    cfg = call.rt.config
    resp = pb.GetInfoResponse(
        version=__version__, core_version=_core.__version__, page_size=_core.PAGE_SIZE,
        limits=pb.Limits(
            max_contexts_per_session=cfg.max_contexts_per_session,
            max_objects_per_context=cfg.max_objects_per_context,
            max_translate_batch=cfg.max_translate_batch,
            max_message_bytes=cfg.max_message_bytes,
            lease_seconds_default=cfg.lease_seconds,
            lease_seconds_max=cfg.lease_max_seconds,
            max_fds_per_session=cfg.max_fds_per_session,
            max_areas_per_ioas=cfg.max_areas_per_ioas,
            max_mapped_bytes_per_session=cfg.max_mapped_bytes_per_session,
            max_sessions=cfg.max_sessions,
            dma_entry_limit=cfg.dma_entry_limit),
        daemon=_counts(list(call.rt.sessions)), group_stage=cfg.group_stage,
        topology_source=call.rt.host.topology.source)
    if call.session is not None:
        resp.session.CopyFrom(_counts([call.session]))
        resp.session_id = call.session.session_id
    return resp
