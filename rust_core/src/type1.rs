//! The DMA bookkeeping that VFIO's type1 IOMMU driver keeps per container,
//! on top of the compat IOAS's `IoPagetable`: the IOMMU type, the
//! dma_entry_limit accounting (`dma_avail`), the mappings whose user address
//! was invalidated for a live update, and dirty logging started through the
//! container. It models these parts of vfio_iommu_type1.c:
//! - vfio_dma_do_map: VFIO_IOMMU_MAP_DMA, including the update handling of
//!   VFIO_DMA_MAP_FLAG_VADDR (give an invalidated mapping its new address);
//! - vfio_dma_do_unmap: VFIO_IOMMU_UNMAP_DMA with ALL, with VADDR (the
//!   invalidation half of the update handling), v1's start-of-mapping rule,
//!   v2's bisect EINVAL and GET_DIRTY_BITMAP;
//! - vfio_iommu_type1_dirty_pages and vfio_iova_dirty_bitmap:
//!   VFIO_IOMMU_DIRTY_PAGES START, STOP and GET_BITMAP with its checks.
//!
//! The checks run in the order the daemon has always used (its tests assert
//! which errno wins when a request has several faults); messages give
//! numbers in hex.
//!
//! Invariants:
//! - `iommu_type` is 0 (no IOMMU driver yet), VFIO_TYPE1_IOMMU or
//!   VFIO_TYPE1v2_IOMMU, and every call except `set_iommu_type` and `reset`
//!   needs it set;
//! - each area MAP_DMA makes takes one from `dma_avail` and each area an
//!   UNMAP_DMA removes gives one back, so while the table is changed only
//!   through here `dma_avail` is the limit minus the areas held;
//! - `invalid_vaddr` holds start IOVAs of areas whose user address was
//!   invalidated and not yet updated; unmapping a range drops its marks;
//! - `dirty_started` is set only on a v2 container and is cleared with the
//!   table's dirty tracking;
//! - a refused call changes nothing (UNMAP_DMA only unmaps once it knows
//!   every area it touches lies wholly inside its range).

use std::collections::BTreeSet;

use crate::errno::{err, CoreError, Errno::*, Result};
use crate::io_pagetable::{
    IoPagetable, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE,
    PAGE_SIZE,
};

pub const VFIO_TYPE1_IOMMU: u32 = 1;
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;

pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 2;
pub const VFIO_DMA_MAP_FLAG_VADDR: u32 = 4;
pub const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1;
pub const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 2;
pub const VFIO_DMA_UNMAP_FLAG_VADDR: u32 = 4;
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_START: u32 = 1;
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP: u32 = 2;
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP: u32 = 4;

/// The smallest argsz each ioctl accepts (its struct up to the last field it reads).
pub const MAP_MINSZ: u32 = 32;
pub const UNMAP_MINSZ: u32 = 24;
pub const DIRTY_MINSZ: u32 = 8;

/// Largest dirty bitmap one request may ask for, in bytes.
pub const DIRTY_BITMAP_SIZE_MAX: u64 = 1 << 28;

const MAP_FLAGS: u32 = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
const UNMAP_FLAGS: u32 =
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR;

/// One container's type1 state. The table it describes is passed to each
/// call (None when the container has no compat IOAS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type1Dma {
    pub(crate) dma_entry_limit: u64,
    pub(crate) dma_avail: u64,
    pub(crate) iommu_type: u32,
    pub(crate) dirty_started: bool,
    pub(crate) invalid_vaddr: BTreeSet<u64>,
}

/// A MAP_DMA that passed every check and waits for its charge; see
/// `Type1Dma::map_dma_prepare`.
#[derive(Debug)]
#[must_use = "a prepared mapping is made only by map_dma_commit"]
pub struct PendingMap {
    vaddr: u64,
    iova: u64,
    size: u64,
    last: u64,
    prot: u32,
}

impl PendingMap {
    /// The bytes the mapping will cover: what the caller charges.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// argsz 0 stands for "not given" (the RPC's convenience); any other value
/// must cover the struct.
fn check_argsz(argsz: u32, minsz: u32, what: &str) -> Result<()> {
    if argsz != 0 && argsz < minsz {
        return err(
            EINVAL,
            format!("{what} needs argsz of at least {minsz:#x}, not {argsz:#x}."),
        );
    }
    Ok(())
}

/// The last byte of `[start, start + size)`; size must not be 0.
fn end(start: u64, size: u64) -> Result<u64> {
    match start.checked_add(size - 1) {
        Some(last) => Ok(last),
        None => err(
            EOVERFLOW,
            format!("{start:#x} + {size:#x} wraps past 2^64."),
        ),
    }
}

fn table(iopt: Option<&mut IoPagetable>) -> Result<&mut IoPagetable> {
    match iopt {
        Some(t) => Ok(t),
        None => err(
            ENODEV,
            "This container has no compat IOAS: set a group on it first.",
        ),
    }
}

/// Whether `[iova, last]` cuts through an area at either end.
fn bisects(iopt: &IoPagetable, iova: u64, last: u64) -> bool {
    iopt.area_at(iova).is_some_and(|a| a.iova < iova)
        || iopt.area_at(last).is_some_and(|a| last < a.last)
}

fn page_aligned(v: u64) -> bool {
    v.is_multiple_of(PAGE_SIZE)
}

impl Type1Dma {
    pub fn new(dma_entry_limit: u64) -> Self {
        Type1Dma {
            dma_entry_limit,
            dma_avail: dma_entry_limit,
            iommu_type: 0,
            dirty_started: false,
            invalid_vaddr: BTreeSet::new(),
        }
    }

    pub fn dma_entry_limit(&self) -> u64 {
        self.dma_entry_limit
    }

    pub fn dma_avail(&self) -> u64 {
        self.dma_avail
    }

    /// 0 until VFIO_SET_IOMMU.
    pub fn iommu_type(&self) -> u32 {
        self.iommu_type
    }

    pub fn dirty_started(&self) -> bool {
        self.dirty_started
    }

    /// Start IOVAs of the mappings whose user address is invalid, ascending.
    pub fn invalid_vaddrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.invalid_vaddr.iter().copied()
    }

    fn v2(&self) -> bool {
        self.iommu_type == VFIO_TYPE1V2_IOMMU
    }

    /// VFIO_SET_IOMMU's effect. The caller has applied the container rules
    /// (a group first, only once); a type other than TYPE1 or TYPE1v2 is
    /// refused here too, since every other rule relies on it.
    pub fn set_iommu_type(&mut self, iommu_type: u32) -> Result<()> {
        if iommu_type != VFIO_TYPE1_IOMMU && iommu_type != VFIO_TYPE1V2_IOMMU {
            return err(
                EINVAL,
                format!("Type1 serves IOMMU types 0x1 and 0x3, not {iommu_type:#x}."),
            );
        }
        self.iommu_type = iommu_type;
        Ok(())
    }

    /// VFIO_CHECK_EXTENSION(VFIO_UPDATE_VADDR): 1 once type1 has IOMMU data.
    pub fn check_extension_update_vaddr(&self) -> u32 {
        u32::from(self.iommu_type != 0)
    }

    /// The last group left the container: the IOMMU driver lets go of the
    /// table (dirty tracking off, every mapping gone) and the container is
    /// as new.
    pub fn reset(&mut self, iopt: Option<&mut IoPagetable>) {
        if let Some(t) = iopt {
            t.set_dirty_tracking(false);
            t.unmap_all();
        }
        *self = Type1Dma::new(self.dma_entry_limit);
    }

    fn ready(&self) -> Result<()> {
        if self.iommu_type == 0 {
            return err(
                EINVAL,
                "Set an IOMMU type on the container (VFIO_SET_IOMMU) first.",
            );
        }
        Ok(())
    }

    /// The checks of a new mapping that depend on the state: no overlap
    /// (EEXIST), then a free dma entry (ENOSPC).
    fn check_room(&self, iopt: &IoPagetable, iova: u64, last: u64) -> Result<()> {
        if let Some(near) = iopt.area_from(iova).filter(|a| a.iova <= last) {
            return err(
                EEXIST,
                format!(
                    "{iova:#x}..{last:#x} overlaps the mapping at {:#x}.",
                    near.iova
                ),
            );
        }
        if self.dma_avail == 0 {
            return err(
                ENOSPC,
                format!(
                    "The container holds {:#x} mappings, its dma_entry_limit.",
                    self.dma_entry_limit
                ),
            );
        }
        Ok(())
    }

    /// VFIO_IOMMU_MAP_DMA: every check, then `charge(size)` right before the
    /// new mapping is made. A failed charge returns its error unchanged and
    /// changes nothing.
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    pub fn map_dma<E: From<CoreError>>(
        &mut self,
        mut iopt: Option<&mut IoPagetable>,
        argsz: u32,
        flags: u32,
        vaddr: u64,
        iova: u64,
        size: u64,
        charge: impl FnOnce(u64) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let Some(pending) =
            self.map_dma_prepare(iopt.as_deref_mut(), argsz, flags, vaddr, iova, size)?
        else {
            return Ok(());
        };
        charge(pending.size())?;
        let t = iopt.expect("prepare found the table");
        Ok(self.map_dma_commit(t, pending)?)
    }

    /// VFIO_IOMMU_MAP_DMA up to the charge. A VADDR update is done here and
    /// gives None; a new mapping gives the PendingMap that `map_dma_commit`
    /// makes once the caller has charged for it. Split so that a caller can
    /// charge without holding the table (the charge may read it).
    pub fn map_dma_prepare(
        &mut self,
        iopt: Option<&mut IoPagetable>,
        argsz: u32,
        flags: u32,
        vaddr: u64,
        iova: u64,
        size: u64,
    ) -> Result<Option<PendingMap>> {
        check_argsz(argsz, MAP_MINSZ, "VFIO_IOMMU_MAP_DMA")?;
        if flags & !MAP_FLAGS != 0 {
            return err(
                EINVAL,
                format!(
                    "Unknown MAP_DMA flag bits {:#x} in {flags:#x}.",
                    flags & !MAP_FLAGS
                ),
            );
        }
        self.ready()?;
        if size == 0 {
            return err(EINVAL, "MAP_DMA of zero bytes.");
        }
        let last = end(iova, size)?;
        end(vaddr, size)?;
        let rw = flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) != 0;
        let vaddr_update = flags & VFIO_DMA_MAP_FLAG_VADDR != 0;
        if rw == vaddr_update {
            return err(EINVAL, "MAP_DMA needs READ and/or WRITE, or VADDR alone.");
        }
        if !page_aligned(size | iova | vaddr) {
            return err(
                EINVAL,
                format!(
                    "iova {iova:#x}, vaddr {vaddr:#x} and size {size:#x} must be multiples of \
                     {PAGE_SIZE:#x}."
                ),
            );
        }
        let t = table(iopt)?;
        if vaddr_update {
            self.update_vaddr(t, iova, size, vaddr)?;
            return Ok(None);
        }
        self.check_room(t, iova, last)?;
        let mut prot = 0;
        if flags & VFIO_DMA_MAP_FLAG_READ != 0 {
            prot |= IOMMU_IOAS_MAP_READABLE;
        }
        if flags & VFIO_DMA_MAP_FLAG_WRITE != 0 {
            prot |= IOMMU_IOAS_MAP_WRITEABLE;
        }
        Ok(Some(PendingMap {
            vaddr,
            iova,
            size,
            last,
            prot,
        }))
    }

    /// Make a prepared mapping. The state-dependent checks are repeated
    /// because the table or this state may have changed while the caller
    /// charged; the table's own refusals (a reserved range: EINVAL, as
    /// type1 reports it) come through unchanged.
    pub fn map_dma_commit(&mut self, iopt: &mut IoPagetable, p: PendingMap) -> Result<()> {
        self.ready()?;
        self.check_room(iopt, p.iova, p.last)?;
        iopt.map(IOMMU_IOAS_MAP_FIXED_IOVA | p.prot, p.vaddr, p.size, p.iova)?;
        self.dma_avail -= 1;
        Ok(())
    }

    /// MAP_DMA(VADDR): give an invalidated mapping its new user address.
    /// Its IOVA range, permissions and dirty bits stay.
    fn update_vaddr(
        &mut self,
        t: &mut IoPagetable,
        iova: u64,
        size: u64,
        vaddr: u64,
    ) -> Result<()> {
        let Some(area) = t.area_at(iova) else {
            return err(ENOENT, format!("No mapping at {iova:#x} to update."));
        };
        if area.iova != iova || area.length() != size || !self.invalid_vaddr.contains(&iova) {
            return err(
                EINVAL,
                format!(
                    "The mapping at {:#x} (size {:#x}) is not an invalidated mapping of exactly \
                     {iova:#x}+{size:#x}.",
                    area.iova,
                    area.length()
                ),
            );
        }
        t.set_area_user_va(iova, vaddr)?;
        self.invalid_vaddr.remove(&iova);
        Ok(())
    }

    /// UNMAP_DMA(VADDR): mark every mapping from the one holding `iova` up
    /// to `last` invalid; one that already is makes the whole call EINVAL
    /// with nothing marked. Returns the bytes those mappings cover.
    fn invalidate_vaddr(&mut self, t: &IoPagetable, iova: u64, last: u64) -> Result<u64> {
        let mut hits = Vec::new();
        let mut bytes = 0u64;
        let mut next = t.area_from(iova);
        while let Some(area) = next.filter(|a| a.iova <= last) {
            if self.invalid_vaddr.contains(&area.iova) {
                return err(
                    EINVAL,
                    format!(
                        "The vaddr of the mapping at {:#x} is already invalid.",
                        area.iova
                    ),
                );
            }
            hits.push(area.iova);
            bytes = bytes.saturating_add(area.length());
            next = area.last.checked_add(1).and_then(|n| t.area_from(n));
        }
        self.invalid_vaddr.extend(hits);
        Ok(bytes)
    }

    /// GET_DIRTY_BITMAP's checks of the tracking state and the user's bitmap.
    fn bitmap_check(&self, size: u64, pgsize: u64, bitmap_size: u64) -> Result<()> {
        if !self.dirty_started {
            return err(
                EINVAL,
                "Dirty page tracking is not started on this container.",
            );
        }
        if pgsize != PAGE_SIZE {
            return err(
                EINVAL,
                format!("The bitmap page size must be {PAGE_SIZE:#x}, not {pgsize:#x}."),
            );
        }
        let need = (size / pgsize).div_ceil(64) * 8;
        if bitmap_size < need || bitmap_size > DIRTY_BITMAP_SIZE_MAX || bitmap_size == 0 {
            return err(
                EINVAL,
                format!(
                    "A bitmap of {bitmap_size:#x} bytes cannot describe {size:#x} bytes (needs \
                     {need:#x})."
                ),
            );
        }
        Ok(())
    }

    /// Unmap `[iova, last]`, which holds whole areas only, giving their dma
    /// entries back and dropping the range's invalid-vaddr marks.
    fn unmap_counted(&mut self, t: &mut IoPagetable, iova: u64, last: u64) -> Result<u64> {
        let before = t.num_areas();
        let unmapped = match (last - iova).checked_add(1) {
            Some(length) => t.unmap(iova, length),
            // [0, 2^64-1]: a length the table's unmap spells as unmap-all.
            None => Ok(t.unmap_all()),
        };
        self.dma_avail += (before - t.num_areas()) as u64;
        self.invalid_vaddr.retain(|&i| i < iova || i > last);
        unmapped
    }

    /// VFIO_IOMMU_UNMAP_DMA: (bytes unmapped, or invalidated with VADDR;
    /// the dirty bitmap words with GET_DIRTY_BITMAP, else empty).
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    pub fn unmap_dma(
        &mut self,
        iopt: Option<&mut IoPagetable>,
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        bitmap_pgsize: u64,
        bitmap_size: u64,
    ) -> Result<(u64, Vec<u64>)> {
        check_argsz(argsz, UNMAP_MINSZ, "VFIO_IOMMU_UNMAP_DMA")?;
        if flags & !UNMAP_FLAGS != 0 {
            return err(
                EINVAL,
                format!(
                    "Unknown UNMAP_DMA flag bits {:#x} in {flags:#x}.",
                    flags & !UNMAP_FLAGS
                ),
            );
        }
        let get_bitmap = flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0;
        let vaddr = flags & VFIO_DMA_UNMAP_FLAG_VADDR != 0;
        let all = flags & VFIO_DMA_UNMAP_FLAG_ALL != 0;
        if get_bitmap && (all || vaddr) {
            return err(
                EINVAL,
                "GET_DIRTY_BITMAP cannot be combined with ALL or VADDR.",
            );
        }
        self.ready()?;
        let t = table(iopt)?;
        if all {
            if iova != 0 || size != 0 {
                return err(EINVAL, "UNMAP_DMA with ALL takes iova 0 and size 0.");
            }
            if vaddr {
                return Ok((self.invalidate_vaddr(t, 0, u64::MAX)?, Vec::new()));
            }
            let areas = t.num_areas() as u64;
            let total = t.unmap_all();
            self.dma_avail += areas;
            self.invalid_vaddr.clear();
            return Ok((total, Vec::new()));
        }
        if size == 0 || !page_aligned(iova | size) {
            return err(
                EINVAL,
                format!(
                    "iova {iova:#x} and size {size:#x} must be non-zero multiples of \
                     {PAGE_SIZE:#x}."
                ),
            );
        }
        let mut last = end(iova, size)?;
        if get_bitmap {
            self.bitmap_check(size, bitmap_pgsize, bitmap_size)?;
        }
        if self.v2() {
            if bisects(t, iova, last) {
                return err(
                    EINVAL,
                    format!(
                        "{iova:#x}..{last:#x} bisects a mapping; v2 unmaps whole mappings only."
                    ),
                );
            }
        } else {
            // v1: a request starting inside a mapping unmaps nothing; one
            // covering a mapping's first IOVA takes the whole mapping, even
            // past the request's end.
            if t.area_at(iova).is_some_and(|a| a.iova < iova) {
                return Ok((0, Vec::new()));
            }
            if let Some(tail) = t.area_at(last).filter(|a| iova <= a.iova) {
                last = last.max(tail.last);
            }
        }
        if vaddr {
            return Ok((self.invalidate_vaddr(t, iova, last)?, Vec::new()));
        }
        if t.area_from(iova).is_none_or(|a| a.iova > last) {
            return Ok((0, Vec::new()));
        }
        let bitmap = if get_bitmap {
            t.read_dirty_bitmap(iova, size, PAGE_SIZE, true)?
        } else {
            Vec::new()
        };
        Ok((self.unmap_counted(t, iova, last)?, bitmap))
    }

    /// VFIO_IOMMU_DIRTY_PAGES: START and STOP (idempotent) give no words;
    /// GET_BITMAP gives the range's dirty bitmap and cleans it.
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    pub fn dirty_pages(
        &mut self,
        iopt: Option<&mut IoPagetable>,
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        bitmap_pgsize: u64,
        bitmap_size: u64,
    ) -> Result<Vec<u64>> {
        self.ready()?;
        if !self.v2() {
            return err(EACCES, "Dirty page tracking needs a TYPE1v2 container.");
        }
        check_argsz(argsz, DIRTY_MINSZ, "VFIO_IOMMU_DIRTY_PAGES")?;
        if ![
            VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
            VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
            VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
        ]
        .contains(&flags)
        {
            return err(
                EINVAL,
                format!(
                    "DIRTY_PAGES takes exactly one of START, STOP and GET_BITMAP, not {flags:#x}."
                ),
            );
        }
        let t = table(iopt)?;
        match flags {
            VFIO_IOMMU_DIRTY_PAGES_FLAG_START => {
                if !self.dirty_started {
                    t.set_dirty_tracking(true);
                    self.dirty_started = true;
                }
                return Ok(Vec::new());
            }
            VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP => {
                if self.dirty_started {
                    t.set_dirty_tracking(false);
                    self.dirty_started = false;
                }
                return Ok(Vec::new());
            }
            _ => {}
        }
        if size == 0 {
            return err(EINVAL, "GET_BITMAP of zero bytes.");
        }
        let last = end(iova, size)?;
        if !page_aligned(iova | size) {
            return err(
                EINVAL,
                format!("iova {iova:#x} and size {size:#x} must be multiples of {PAGE_SIZE:#x}."),
            );
        }
        self.bitmap_check(size, bitmap_pgsize, bitmap_size)?;
        if bisects(t, iova, last) {
            return err(EINVAL, format!("{iova:#x}..{last:#x} bisects a mapping."));
        }
        t.read_dirty_bitmap(iova, size, PAGE_SIZE, true)
    }
}
