//! iommud's translation core: the IO page table of each IOAS (areas, IOVA
//! allocation, reserved and allowed ranges, dirty bits) with the kernel's
//! iommufd rules and errno, the IOMMU domains filled from it (domain.rs),
//! and VFIO type1's per-container DMA bookkeeping
//! over it (type1.rs). Pure Rust; the `python` feature adds the thin PyO3
//! layer that the daemon imports as `iommud._core`.

pub mod area_map;
pub mod copy;
pub mod dirty;
pub mod domain;
pub mod errno;
pub mod io_pagetable;
pub mod iova_alloc;
pub mod peer_gate;
pub mod slab_pool;
pub mod state;
pub mod type1;

#[cfg(feature = "python")]
mod python;

pub use copy::{check_copy_args, copy, copy_within};
pub use domain::{read_domain, write_domain, Domain, DomainEntry, SharedDomain};
pub use errno::{CoreError, Errno, Result};
pub use io_pagetable::{check_map_args, Area, IoPagetable, Reserved, PAGE_SIZE};
pub use type1::Type1Dma;
