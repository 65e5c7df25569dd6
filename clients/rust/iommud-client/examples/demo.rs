//! A walk through iommud with the typed client: a session with its
//! keepalive, an IOAS with maps, translations and a large batch, a device
//! bound to a dirty-tracking HWPT and the 8 MiB dirty bitmap of 256 GiB of
//! guest RAM, the legacy container API, and errors by errno name.
//!
//!     cargo run --example demo -- [--endpoint unix:/path] [--device 0000:03:00.0]
//!                                 [--legacy-device 0000:03:00.1]
//!
//! The endpoint defaults to IOMMUD_ENDPOINT, then the daemon's default
//! socket. Every line it prints is deterministic against a fresh daemon with
//! the default topology (tests/test_rust_client.py compares them).

use std::process::ExitCode;
use std::time::Duration;

use iommud_client::{pb, uapi, Client, Error, Prot, Stub};

const USER_VA: u64 = 0x7f00_0000_0000;
const GUEST_RAM_VA: u64 = 0x400_0000_0000;
const GUEST_RAM_IOVA: u64 = 1 << 32;
const GUEST_RAM: u64 = 256 << 30;

fn show(e: &Error) -> String {
    format!("{} (errno {}, {:?})", e.errno_name(), e.errno(), e.code())
}

fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> Result<Error, Error> {
    match result {
        Err(e) => Ok(e),
        Ok(value) => Err(Error::from(tonic::Status::internal(format!(
            "expected a refusal, got {value:?}"
        )))),
    }
}

struct Args {
    endpoint: Option<String>,
    device: String,
    legacy_device: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        endpoint: None,
        device: "0000:03:00.0".into(),
        legacy_device: "0000:03:00.1".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => args.endpoint = Some(value),
            "--device" => args.device = value,
            "--legacy-device" => args.legacy_device = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), Error> {
    let client = match &args.endpoint {
        Some(endpoint) => Client::connect(endpoint).await?,
        None => Client::connect_default().await?,
    };
    println!("connected: {}", client.target());
    let limits = client.info().await?.limits.unwrap_or_default();
    println!(
        "limits: max_message_bytes {:#x}, max_translate_batch {:#x}",
        limits.max_message_bytes, limits.max_translate_batch
    );

    let session = client.open_session("rust-demo", 0).await?;
    let kept = session
        .wait_keepalive(Duration::from_secs(15), |s| s.connected)
        .await
        .is_some();
    println!(
        "session: lease {} s, keepalive {}",
        session.lease_seconds(),
        if kept { "connected" } else { "down" }
    );

    // -- an IOAS ---------------------------------------------------------------------------
    let ctx = session.open_context().await?;
    println!("context: iommufd {}", ctx.iommufd());
    let ioas = ctx.ioas_alloc().await?;
    println!("ioas: {ioas}");
    let iova = ctx
        .ioas_map(ioas, USER_VA, 0x20_0000, Some(0x10_0000), Prot::READ_WRITE)
        .await?;
    println!("map: iova {iova:#x} length 0x200000");
    let chosen = ctx
        .ioas_map(ioas, USER_VA + 0x20_0000, 0x1_0000, None, Prot::READ)
        .await?;
    println!("map: iova {chosen:#x} length 0x10000 (the daemon's choice)");
    let t = ctx.translate(ioas, 0x18_0123).await?;
    println!("translate: {:#x} -> {:#x} {}", t.iova, t.pa, t.prot);
    let e = refused(
        ctx.ioas_map(ioas, USER_VA, 0x1000, Some(iova), Prot::READ_WRITE)
            .await,
    )?;
    println!("map again: {}", show(&e));
    let e = refused(ctx.translate(ioas, 0x4000_0000).await)?;
    println!("translate unmapped: {}", show(&e));

    // -- a batch as large as the daemon takes: 9 bytes of reply per address ----------------------
    let n = u64::from(limits.max_translate_batch);
    let iovas: Vec<u64> = (0..n).map(|i| 0x10_0000 + i * 8).collect();
    let batch = ctx.translate_batch(ioas, &iovas).await?;
    let reply = batch.pas.len() * 8 + batch.prots.len();
    println!(
        "translate batch: {n:#x} iovas, {:#x} mapped, reply {reply:#x} bytes",
        batch.mapped_count
    );
    println!(
        "translate batch: first {:#x} {}",
        batch.pas[0], batch.prots[0]
    );
    let areas = ctx.list_areas(ioas).await?;
    let shown: Vec<String> = areas
        .iter()
        .map(|a| format!("{:#x}+{:#x} {}", a.iova, a.length, Prot::from_bits(a.prot)))
        .collect();
    println!("areas: {}", shown.join(", "));

    // -- a device, bound and attached to a dirty-tracking HWPT --------------------------------------
    let device = session.open_device(&args.device).await?;
    println!("device: {} open as fd {}", device.name(), device.fd());
    let dev_id = device.bind(&ctx, 0xc00c1e).await?;
    println!("device: bound as dev id {dev_id}");
    // A VM's RAM: 256 GiB at IOVA 4 GiB.
    let ram = ctx
        .ioas_map(
            ioas,
            GUEST_RAM_VA,
            GUEST_RAM,
            Some(GUEST_RAM_IOVA),
            Prot::READ_WRITE,
        )
        .await?;
    println!("map: guest RAM at iova {ram:#x}, {} GiB", GUEST_RAM >> 30);
    let hwpt = ctx
        .hwpt_alloc(dev_id, ioas, uapi::IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        .await?;
    let attached = device.attach(hwpt).await?;
    let info = device.info().await?;
    println!(
        "device: attached to hwpt {attached} (rid on {}), bound {}",
        info.rid_hwpt_id, info.bound
    );
    ctx.hwpt_set_dirty_tracking(hwpt, true).await?;
    // DMA by the device, through the raw stub (the typed layer does not wrap DeviceDma).
    let write = pb::DmaAccess {
        iova: GUEST_RAM_IOVA + 0x5008,
        length: 8,
        write: true,
    };
    let dma = client
        .raw()
        .device_dma(session.request(pb::DeviceDmaRequest {
            device_fd: device.fd(),
            pasid: None,
            accesses: vec![write],
        }))
        .await
        .map_err(Error::from)?
        .into_inner();
    println!(
        "device: DMA write at {:#x}: ok {}, pa {:#x}",
        write.iova, dma.results[0].ok, dma.results[0].pa
    );
    // The dirty bitmap of all of RAM at 4 KiB: one bit per page, 8 MiB.
    let bitmap = ctx
        .hwpt_get_dirty_bitmap(hwpt, GUEST_RAM_IOVA, GUEST_RAM, 4096, false)
        .await?;
    // Dirtiness is per IO page table entry: the write dirtied the whole 1 GiB
    // leaf it hit, so every 4 KiB bit under it is set.
    let dirty: u32 = bitmap.iter().map(|b| b.count_ones()).sum();
    let first = bitmap
        .iter()
        .position(|&b| b != 0)
        .map(|i| i * 8 + bitmap[i].trailing_zeros() as usize);
    let last = bitmap
        .iter()
        .rposition(|&b| b != 0)
        .map(|i| i * 8 + 7 - bitmap[i].leading_zeros() as usize);
    let span = first
        .zip(last)
        .map(|(a, b)| format!("{a:#x}..={b:#x}"))
        .unwrap_or_default();
    println!(
        "dirty bitmap: {:#x} bytes, {dirty:#x} pages dirty ({span})",
        bitmap.len()
    );
    // The same call through a stub with tonic's defaults (a 4 MiB decoding limit).
    let request = session.request(pb::HwptGetDirtyBitmapRequest {
        iommufd: ctx.iommufd(),
        hwpt_id: hwpt,
        flags: 1, // NO_CLEAR
        reserved: 0,
        iova: GUEST_RAM_IOVA,
        length: GUEST_RAM,
        page_size: 4096,
    });
    match Stub::new(client.channel())
        .hwpt_get_dirty_bitmap(request)
        .await
    {
        Ok(_) => println!("dirty bitmap, tonic's default limit: ok"),
        Err(status) => {
            let e = Error::from(status);
            println!(
                "dirty bitmap, tonic's default limit: {} (transport: {})",
                show(&e),
                e.is_transport()
            );
        }
    }
    let e = refused(ctx.destroy(ioas).await)?;
    println!("destroy ioas: {}", show(&e));
    device.detach().await?;
    device.close().await?;
    ctx.destroy(hwpt).await?;
    println!("device: detached and closed, hwpt {hwpt} destroyed");
    let unmapped = ctx.ioas_unmap(ioas, iova, 0x20_0000).await?;
    println!("unmap: {unmapped:#x} bytes");
    let e = refused(ctx.ioas_unmap(ioas, iova, 0x20_0000).await)?;
    println!("unmap again: {}", show(&e));
    println!("unmap all: {:#x} bytes", ctx.ioas_unmap_all(ioas).await?);
    ctx.destroy(ioas).await?;
    let closed = ctx.close().await?;
    println!("context: closed, {closed} objects destroyed");

    // -- the legacy VFIO API ---------------------------------------------------------------------
    let container = session.open_container().await?;
    let version = container.api_version().await?;
    let v2 = container.check_extension(uapi::VFIO_TYPE1v2_IOMMU).await?;
    println!(
        "legacy: container fd {}, api version {version}, TYPE1v2 {v2}",
        container.fd()
    );
    let group_no = session
        .list_devices()
        .await?
        .into_iter()
        .find(|d| d.name == args.legacy_device)
        .map(|d| d.group);
    let group = session.open_group(group_no.unwrap_or_default()).await?;
    let viable = group.status().await? & uapi::VFIO_GROUP_FLAGS_VIABLE != 0;
    println!(
        "legacy: group {} fd {}, viable {viable}",
        group.group(),
        group.fd()
    );
    group.set_container(&container).await?;
    container.set_iommu(uapi::VFIO_TYPE1v2_IOMMU).await?;
    let status = group.status().await?;
    println!("legacy: in the container (status {status:#x}), TYPE1v2 set");
    let legacy = group.device_fd(&args.legacy_device).await?;
    println!("legacy: device {} fd {}", legacy.name(), legacy.fd());
    container.map_dma(0x20_0000, 0x10_0000, USER_VA).await?;
    let e = refused(container.map_dma(0x20_0000, 0x1000, USER_VA).await)?;
    println!("legacy: map_dma again: {}", show(&e));
    println!(
        "legacy: unmap_dma {:#x} bytes",
        container.unmap_dma(0x20_0000, 0x10_0000).await?
    );
    legacy.close().await?;
    group.unset_container().await?;
    group.close().await?;
    container.close().await?;
    println!("legacy: closed");

    // -- a token that names no session -----------------------------------------------------------
    let mut request = tonic::Request::new(pb::KeepAliveRequest {});
    request.metadata_mut().insert(
        iommud_client::SESSION_METADATA_KEY,
        "no-such-token".parse().expect("ascii"),
    );
    let e = Error::from(
        client
            .raw()
            .keep_alive(request)
            .await
            .expect_err("a bogus token is refused"),
    );
    println!("bogus token: {}", show(&e));

    let fds = session.close().await?;
    println!("session: closed, {fds} fds");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("demo: {why}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => {
            println!("demo: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "demo: failed: {e} (errno {}, transport: {})",
                e.errno(),
                e.is_transport()
            );
            ExitCode::FAILURE
        }
    }
}
