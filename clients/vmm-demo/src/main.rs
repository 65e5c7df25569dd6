//! What cloud-hypervisor does with a VFIO device under `--platform iommufd=on`,
//! through its own crates (`vfio-ioctls`, `iommufd-ioctls`) as published:
//! open an iommufd, allocate an IOAS, create a device from its cdev fd (bind,
//! attach, GET_INFO, region and irq info), map and unmap two regions of guest
//! memory, and drop everything. Run it under `iommud-preload` and the ioctls
//! are served by iommud (docs/uapi-transport.md).
//!
//! Usage: iommud-vmm-demo [--device N] [--pause]
//!
//! One line per step on stdout, ending in `vmm-demo: ok`. With `--pause` the
//! program prints `paused` once both regions are mapped and waits for a line on
//! stdin, so that a test can look at the daemon's state in the middle. Any
//! warning or error the crates log is printed as `log: LEVEL: ...` on stdout
//! and fails the run.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use iommufd_ioctls::{IommuFd, IommufdError};
use vfio_ioctls::{VfioDevice, VfioError, VfioIommufd};
use vmm_sys_util::eventfd::EventFd;

/// Regions of "guest memory": (IOVA = guest physical address, length).
const REGIONS: [(u64, usize); 2] = [(0x10_0000, 0x20_0000), (0x1_0000_0000, 0x10_0000)];
/// vfio-pci's region indexes up to config space (VFIO_PCI_CONFIG_REGION_INDEX;
/// the VGA region after it exists only for a VGA-class device, and the crate
/// skips it on the kernel's EINVAL) and its irq indexes (VFIO_PCI_NUM_IRQS).
const PCI_REGIONS: u32 = 8;
const PCI_IRQS: u32 = 5;
/// VFIO_DEVICE_SET_IRQS (_IO(';', 110)) and its flags, from <linux/vfio.h>.
const VFIO_DEVICE_SET_IRQS: libc::c_ulong = 0x3b6e;
const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
/// Config space's offset in the device fd (VFIO_PCI_INDEX_TO_OFFSET(7)).
const CONFIG_OFFSET: i64 = 7 << 40;

/// Counts the crates' warnings and errors (they log through `log`).
struct Logger;
static LOGGED: AtomicUsize = AtomicUsize::new(0);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            LOGGED.fetch_add(1, Ordering::Relaxed);
            println!("log: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Anonymous memory, as a VMM's guest RAM.
struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// The errno behind an ioctl error of the crates, if there is one.
fn errno_of(err: &VfioError) -> Option<i32> {
    match err {
        VfioError::IommufdIoctlError(
            IommufdError::IommuIoasMap(e) | IommufdError::IommuIoasUnmap(e),
        ) => Some(e.errno()),
        _ => None,
    }
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EEXIST => "EEXIST",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EFAULT => "EFAULT",
        libc::ENOTTY => "ENOTTY",
        libc::EIO => "EIO",
        libc::ESPIPE => "ESPIPE",
        libc::ENODEV => "ENODEV",
        _ => "E?",
    }
}

struct Args {
    device: u32,
    pause: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: 0,
        pause: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--device" => {
                let n = it.next().ok_or("--device needs a number")?;
                args.device = n.parse().map_err(|_| format!("bad device number {n:?}"))?;
            }
            "--pause" => args.pause = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(args)
}

/// The errno name of a failed libc call's result, or "no error".
fn outcome(failed: bool) -> &'static str {
    if failed {
        io::Error::last_os_error()
            .raw_os_error()
            .map_or("E?", errno_name)
    } else {
        "no error"
    }
}

/// What a device fd does not do under iommud: no config-space or BAR access
/// and no interrupts (docs/uapi-transport.md, "What is not served"). The
/// accesses a VMM would make next, and what it gets.
fn device_limits(device: &VfioDevice) -> Result<(), Box<dyn std::error::Error>> {
    let fd = device.as_raw_fd();
    let mut word = [0u8; 4];
    // SAFETY: reads at most 4 bytes into `word`.
    let n = unsafe { libc::pread(fd, word.as_mut_ptr().cast(), word.len(), CONFIG_OFFSET) };
    println!("limits: config space read: {}", outcome(n < 0));
    // SAFETY: a shared mapping of BAR0 at offset 0, unmapped if it succeeds.
    let bar = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            0x4000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    println!("limits: BAR0 mmap: {}", outcome(bar == libc::MAP_FAILED));
    if bar != libc::MAP_FAILED {
        // SAFETY: the mapping just made.
        unsafe { libc::munmap(bar, 0x4000) };
    }
    // struct vfio_irq_set { argsz, flags, index, start, count }: INTx, no data.
    let irq_set: [u32; 5] = [
        20,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        0,
        0,
        0,
    ];
    // SAFETY: the argument is a 20-byte vfio_irq_set that outlives the call.
    let rc = unsafe { libc::ioctl(fd, VFIO_DEVICE_SET_IRQS, irq_set.as_ptr()) };
    println!("limits: VFIO_DEVICE_SET_IRQS: {}", outcome(rc < 0));
    let eventfd = EventFd::new(libc::EFD_CLOEXEC)?;
    let enabled = device.enable_irq(0, vec![&eventfd]);
    println!(
        "limits: enable_irq(INTx): {}",
        if enabled.is_ok() {
            "enabled"
        } else {
            "refused"
        }
    );
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // cloud-hypervisor's create_vfio_ops: open /dev/iommu, IOAS_ALLOC.
    let iommufd = Arc::new(IommuFd::new()?);
    println!("iommufd: opened /dev/iommu");
    let vfio_iommufd = Arc::new(VfioIommufd::new(Arc::clone(&iommufd), None, None)?);
    let ioas_id = vfio_iommufd.ioas().id();
    println!("ioas: allocated id {ioas_id}");

    // add_vfio_device with a cdev: BIND_IOMMUFD, ATTACH_IOMMUFD_PT(ioas),
    // GET_INFO, then GET_REGION_INFO and GET_IRQ_INFO for each index.
    let path = format!("/dev/vfio/devices/vfio{}", args.device);
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    println!("device: opened {path}");
    let device = VfioDevice::new_from_fd(file, Arc::clone(&vfio_iommufd), true)?;
    let devid = device
        .iommufd_dev_id()
        .ok_or("the device has no iommufd dev id")?;
    println!("device: bound as dev id {devid}, attached to ioas {ioas_id}");
    for index in 0..PCI_REGIONS {
        println!(
            "region {index}: size {:#x} flags {:#x} offset {:#x}",
            device.get_region_size(index),
            device.get_region_flags(index),
            device.get_region_offset(index)
        );
    }
    for index in 0..PCI_IRQS {
        match device.get_irq_info(index) {
            Some(irq) => println!("irq {index}: count {} flags {:#x}", irq.count, irq.flags),
            None => println!("irq {index}: none"),
        }
    }
    println!("device: max interrupts {}", device.max_interrupts());

    // Guest RAM: IOAS_MAP(READABLE|WRITEABLE|FIXED_IOVA, iova = GPA) per region.
    let memory = REGIONS
        .iter()
        .map(|&(_, len)| Mapping::new(len))
        .collect::<io::Result<Vec<_>>>()?;
    for (&(iova, len), mem) in REGIONS.iter().zip(&memory) {
        // SAFETY: the memory is ours, stays mapped until after the unmap below,
        // and no Rust reference to it exists.
        unsafe { vfio_iommufd.vfio_dma_map(iova, len, mem.addr.as_ptr())? };
        println!("map: iova {iova:#x} length {len:#x}");
    }
    // The same IOVA again: the kernel's answer is EEXIST.
    let (iova, len) = REGIONS[0];
    // SAFETY: as above; the call is refused.
    match unsafe { vfio_iommufd.vfio_dma_map(iova, len, memory[0].addr.as_ptr()) } {
        Ok(()) => return Err("mapping a mapped IOVA again succeeded".into()),
        Err(e) => println!(
            "map again: iova {iova:#x} refused with {}",
            errno_of(&e).map_or("no errno", errno_name)
        ),
    }

    device_limits(&device)?;

    if args.pause {
        println!("paused");
        io::stdout().flush()?;
        io::stdin().lock().read_line(&mut String::new())?;
    }

    for &(iova, len) in &REGIONS {
        vfio_iommufd.vfio_dma_unmap(iova, len)?;
        println!("unmap: iova {iova:#x} length {len:#x}");
    }
    match vfio_iommufd.vfio_dma_unmap(iova, len) {
        Ok(()) => return Err("unmapping an unmapped IOVA succeeded".into()),
        Err(e) => println!(
            "unmap again: iova {iova:#x} refused with {}",
            errno_of(&e).map_or("no errno", errno_name)
        ),
    }

    // Drop: the device detaches (DETACH_IOMMUFD_PT) and closes its fd, the
    // last reference to the IOAS destroys it (IOMMU_DESTROY), and the iommufd
    // closes with its last Arc.
    drop(device);
    println!("drop: device detached and closed");
    drop(vfio_iommufd);
    println!("drop: ioas {ioas_id} destroyed");
    let iommufd = Arc::try_unwrap(iommufd).map_err(|_| "the iommufd is still shared")?;
    drop(iommufd);
    println!("drop: iommufd closed");
    drop(memory);
    Ok(())
}

fn main() -> ExitCode {
    log::set_logger(&Logger).expect("the only logger");
    log::set_max_level(log::LevelFilter::Warn);
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("iommud-vmm-demo: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = run(&args) {
        println!("vmm-demo: failed: {e}");
        return ExitCode::FAILURE;
    }
    let logged = LOGGED.load(Ordering::Relaxed);
    if logged != 0 {
        println!("vmm-demo: failed: the crates logged {logged} warnings or errors");
        return ExitCode::FAILURE;
    }
    println!("vmm-demo: ok");
    ExitCode::SUCCESS
}
