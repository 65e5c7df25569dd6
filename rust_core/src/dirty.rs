//! Dirty tracking: pages written by device DMA while tracking is on.
//!
//! Only written pages are stored (one set entry per dirty 4 KiB page), and
//! only while tracking is enabled; clean mappings cost nothing. The bitmap
//! read-out follows IOMMU_HWPT_GET_DIRTY_BITMAP: one bit per `page_size`
//! unit of the range, bit i of u64 word i/64.

use std::collections::BTreeSet;

use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{IoPagetable, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, ULONG_MAX};

/// Most bits one bitmap read may produce (64 MiB of bitmap).
pub const MAX_BITMAP_BITS: u64 = 1 << 29;

#[derive(Default, Debug)]
pub struct DirtyTracker {
    enabled: bool,
    /// Dirty page numbers (iova / PAGE_SIZE).
    pages: BTreeSet<u64>,
}

impl DirtyTracker {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Enabling starts from a clean snapshot; disabling frees the state.
    pub fn set(&mut self, on: bool) {
        self.pages.clear();
        self.enabled = on;
    }

    pub fn mark(&mut self, start: u64, last: u64) {
        if self.enabled {
            self.pages.extend(start / PAGE_SIZE..=last / PAGE_SIZE);
        }
    }

    /// Drop the state of an unmapped range.
    pub fn forget(&mut self, start: u64, last: u64) {
        if !self.pages.is_empty() {
            let doomed: Vec<u64> = self.pages.range(start / PAGE_SIZE..=last / PAGE_SIZE).copied().collect();
            for p in doomed {
                self.pages.remove(&p);
            }
        }
    }

    pub fn clear(&mut self) {
        self.pages.clear();
    }

    pub fn dirty_pages(&self) -> usize {
        self.pages.len()
    }
}

impl IoPagetable {
    pub fn set_dirty_tracking(&mut self, enable: bool) {
        self.dirty.set(enable);
    }

    pub fn dirty_tracking(&self) -> bool {
        self.dirty.enabled()
    }

    /// One DMA access of `length` bytes at `iova` by a device attached to
    /// this table. Every byte must be mapped (ENOENT) with the needed
    /// permission (EPERM). A write while tracking marks its pages dirty.
    /// Returns the user address of the first byte.
    pub fn dma(&mut self, iova: u64, length: u64, write: bool) -> Result<u64> {
        if length == 0 {
            return err(EINVAL, "A DMA access of zero bytes.");
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(EOVERFLOW, format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."));
        };
        let need = if write { IOMMU_IOAS_MAP_WRITEABLE } else { IOMMU_IOAS_MAP_READABLE };
        let mut p = iova;
        let mut first = None;
        loop {
            let Some(area) = self.area_at(p) else {
                return err(ENOENT, format!("DMA to {iova:#x}..={last:#x} hits unmapped IOVA {p:#x}."));
            };
            if area.prot & need == 0 {
                let what = if write { "write" } else { "read" };
                return err(EPERM, format!("DMA {what} at {p:#x} is not permitted by its mapping."));
            }
            if first.is_none() {
                first = Some(area.user_va.wrapping_add(iova - area.iova));
            }
            if area.last >= last {
                break;
            }
            p = area.last + 1;
        }
        if write {
            self.dirty.mark(iova, last);
        }
        Ok(first.unwrap_or(0))
    }

    /// The dirty bitmap of `[iova, iova + length)` at `page_size` granularity;
    /// with `clear` the reported pages become clean.
    pub fn read_dirty_bitmap(&mut self, iova: u64, length: u64, page_size: u64, clear: bool) -> Result<Vec<u64>> {
        if length == 0 || length > ULONG_MAX {
            return err(EINVAL, "A dirty bitmap of zero bytes.");
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(EOVERFLOW, format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."));
        };
        let align = self.iova_alignment;
        let end = last.wrapping_add(1); // 0 when the range reaches 2^64-1
        if iova % align != 0 || end % align != 0 {
            return err(EINVAL, format!("The range {iova:#x}..={last:#x} is not aligned to the IOAS alignment {align:#x}."));
        }
        if page_size == 0 || !page_size.is_power_of_two() {
            return err(EINVAL, format!("Page size {page_size:#x} is not a power of two."));
        }
        if iova % page_size != 0 || end % page_size != 0 {
            return err(EINVAL, format!("The range {iova:#x}..={last:#x} is not aligned to the page size {page_size:#x}."));
        }
        let bits = (last - iova) / page_size + 1;
        if bits > MAX_BITMAP_BITS {
            return err(ENOMEM, format!("A bitmap of {bits:#x} bits is too large."));
        }
        let mut words = vec![0u64; bits.div_ceil(64) as usize];
        let pages: Vec<u64> = self.dirty.pages.range(iova / PAGE_SIZE..=last / PAGE_SIZE).copied().collect();
        for &page in &pages {
            let p_start = (page * PAGE_SIZE).max(iova);
            let p_last = page.checked_mul(PAGE_SIZE).and_then(|s| s.checked_add(PAGE_SIZE - 1)).unwrap_or(u64::MAX).min(last);
            for bit in (p_start - iova) / page_size..=(p_last - iova) / page_size {
                words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        if clear {
            for page in pages {
                self.dirty.pages.remove(&page);
            }
        }
        Ok(words)
    }
}
