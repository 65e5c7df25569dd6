//! Dirty tracking: pages written by device DMA while tracking is on.
//!
//! The state is one bit per 4 KiB page of each area a device wrote to,
//! made on the area's first write while tracking is on and dropped when the
//! area is unmapped or tracking is turned off: at most one bit per page,
//! and nothing at all for areas never written or while tracking is off.
//! The bitmap read-out follows IOMMU_HWPT_GET_DIRTY_BITMAP: one bit per
//! `page_size` unit of the range, bit i of u64 word i/64.

use std::collections::BTreeMap;

use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{
    Area, IoPagetable, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE,
};

/// Most bits one bitmap read may produce (64 MiB of bitmap).
pub const MAX_BITMAP_BITS: u64 = 1 << 29;

/// The written pages of one area: bit i is page `first_page + i`.
#[derive(Debug)]
pub(crate) struct AreaBits {
    pub(crate) first_page: u64,
    pub(crate) pages: u64,
    pub(crate) words: Vec<u64>,
}

impl AreaBits {
    fn last_page(&self) -> u64 {
        self.first_page + (self.pages - 1)
    }
}

#[derive(Default, Debug)]
pub struct DirtyTracker {
    pub(crate) enabled: bool,
    /// Keyed by the area's start IOVA; areas are disjoint, so the entries'
    /// page ranges are sorted by key too (adjacent unaligned areas may
    /// share a page, each with its own bit).
    pub(crate) areas: BTreeMap<u64, AreaBits>,
    /// The words held by `areas`, kept as they change, so that a memory
    /// budget checked on every map costs nothing however many areas are
    /// tracked.
    pub(crate) words: usize,
}

impl DirtyTracker {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Enabling starts from a clean snapshot; disabling frees the state.
    pub fn set(&mut self, on: bool) {
        self.clear();
        self.enabled = on;
    }

    /// A write to [start, last], which lies inside `area`.
    pub(crate) fn mark(&mut self, area: &Area, start: u64, last: u64) {
        if !self.enabled {
            return;
        }
        let words = &mut self.words;
        let bits = self.areas.entry(area.iova).or_insert_with(|| {
            let (first, last_page) = (area.iova / PAGE_SIZE, area.last / PAGE_SIZE);
            let pages = last_page - first + 1;
            *words += pages.div_ceil(64) as usize;
            AreaBits {
                first_page: first,
                pages,
                words: vec![0; pages.div_ceil(64) as usize],
            }
        });
        for page in start / PAGE_SIZE..=last / PAGE_SIZE {
            let i = page - bits.first_page;
            bits.words[(i / 64) as usize] |= 1 << (i % 64);
        }
    }

    /// Drop the state of an unmapped area.
    pub fn forget(&mut self, area_iova: u64) {
        if let Some(old) = self.areas.remove(&area_iova) {
            self.words -= old.words.len();
        }
    }

    /// `area` became [area.iova, p] and [p + 1, area.last] (a cut): each
    /// half keeps the bits of its own pages; a page both halves share keeps
    /// its bit in both.
    pub(crate) fn split(&mut self, area: &Area, p: u64) {
        let Some(old) = self.areas.remove(&area.iova) else {
            return;
        };
        self.words -= old.words.len();
        let part = |first_page: u64, last_page: u64| {
            let pages = last_page - first_page + 1;
            let mut words = vec![0u64; pages.div_ceil(64) as usize];
            for (w, &word) in old.words.iter().enumerate() {
                let mut set = word;
                while set != 0 {
                    let page = old.first_page + w as u64 * 64 + u64::from(set.trailing_zeros());
                    set &= set - 1;
                    if (first_page..=last_page).contains(&page) {
                        let i = page - first_page;
                        words[(i / 64) as usize] |= 1 << (i % 64);
                    }
                }
            }
            AreaBits {
                first_page,
                pages,
                words,
            }
        };
        let (low, high) = (
            part(area.iova / PAGE_SIZE, p / PAGE_SIZE),
            part((p + 1) / PAGE_SIZE, area.last / PAGE_SIZE),
        );
        self.words += low.words.len() + high.words.len();
        self.areas.insert(area.iova, low);
        self.areas.insert(p + 1, high);
    }

    pub fn clear(&mut self) {
        self.areas.clear();
        self.words = 0;
    }

    /// Bytes of dirty state held (the one-bit-per-page bound, tested); O(1).
    pub fn state_bytes(&self) -> usize {
        self.words * 8
    }

    /// Heap bytes held: the bits and the map's nodes (an upper estimate).
    pub fn heap_bytes(&self) -> usize {
        self.state_bytes()
            + crate::domain::btree_heap_bytes(
                self.areas.len(),
                std::mem::size_of::<(u64, AreaBits)>(),
            )
    }

    /// Call `each(page)` for every dirty page from `first` to `last` (page
    /// numbers, inclusive), clearing it when `clear`. Entries are visited
    /// from the last one starting at or below the range's end backwards,
    /// until one ends below the range.
    fn take_pages(&mut self, first: u64, last: u64, clear: bool, mut each: impl FnMut(u64)) {
        for (_, bits) in self
            .areas
            .range_mut(..=last.saturating_mul(PAGE_SIZE).saturating_add(PAGE_SIZE - 1))
            .rev()
        {
            if bits.last_page() < first {
                break;
            }
            let lo = first.max(bits.first_page) - bits.first_page;
            let hi = last.min(bits.last_page()) - bits.first_page;
            if lo > hi {
                continue;
            }
            for w in (lo / 64)..=(hi / 64) {
                let word = &mut bits.words[w as usize];
                let mut mask = u64::MAX;
                if w == lo / 64 {
                    mask &= u64::MAX << (lo % 64);
                }
                if w == hi / 64 && hi % 64 != 63 {
                    mask &= (1u64 << (hi % 64 + 1)) - 1;
                }
                let mut set = *word & mask;
                if clear {
                    *word &= !mask;
                }
                while set != 0 {
                    each(bits.first_page + w * 64 + u64::from(set.trailing_zeros()));
                    set &= set - 1;
                }
            }
        }
    }
}

impl IoPagetable {
    pub fn set_dirty_tracking(&mut self, enable: bool) {
        self.dirty.set(enable);
    }

    pub fn dirty_tracking(&self) -> bool {
        self.dirty.enabled()
    }

    /// Bytes of dirty state held: at most one bit per page of the areas
    /// written while tracking, nothing otherwise.
    pub fn dirty_state_bytes(&self) -> usize {
        self.dirty.state_bytes()
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
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        let need = if write {
            IOMMU_IOAS_MAP_WRITEABLE
        } else {
            IOMMU_IOAS_MAP_READABLE
        };
        let mut p = iova;
        let mut first = None;
        let mut touched: Vec<Area> = Vec::new();
        loop {
            let Some(area) = self.area_at(p) else {
                return err(
                    ENOENT,
                    format!("DMA to {iova:#x}..={last:#x} hits unmapped IOVA {p:#x}."),
                );
            };
            if area.prot & need == 0 {
                let what = if write { "write" } else { "read" };
                return err(
                    EPERM,
                    format!("DMA {what} at {p:#x} is not permitted by its mapping."),
                );
            }
            if first.is_none() {
                first = Some(area.user_va.wrapping_add(iova - area.iova));
            }
            touched.push(area);
            if area.last >= last {
                break;
            }
            p = area.last + 1;
        }
        // Marked only once every byte was found permitted: a fault marks nothing.
        if write {
            for area in &touched {
                self.dirty
                    .mark(area, iova.max(area.iova), area.last.min(last));
            }
        }
        Ok(first.unwrap_or(0))
    }

    /// The dirty bitmap of `[iova, iova + length)` at `page_size` granularity;
    /// with `clear` the reported pages become clean.
    pub fn read_dirty_bitmap(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        clear: bool,
    ) -> Result<Vec<u64>> {
        if length == 0 {
            return err(EINVAL, "A dirty bitmap of zero bytes.");
        }
        // Any u64 length is representable; only the range's end can overflow.
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        let align = self.iova_alignment;
        let end = last.wrapping_add(1); // 0 when the range reaches 2^64-1
        if !iova.is_multiple_of(align) || !end.is_multiple_of(align) {
            return err(EINVAL, format!("The range {iova:#x}..={last:#x} is not aligned to the IOAS alignment {align:#x}."));
        }
        if page_size == 0 || !page_size.is_power_of_two() {
            return err(
                EINVAL,
                format!("Page size {page_size:#x} is not a power of two."),
            );
        }
        if !iova.is_multiple_of(page_size) || !end.is_multiple_of(page_size) {
            return err(EINVAL, format!("The range {iova:#x}..={last:#x} is not aligned to the page size {page_size:#x}."));
        }
        let bits = (last - iova) / page_size + 1;
        if bits > MAX_BITMAP_BITS {
            return err(ENOMEM, format!("A bitmap of {bits:#x} bits is too large."));
        }
        let mut words = vec![0u64; bits.div_ceil(64) as usize];
        self.dirty
            .take_pages(iova / PAGE_SIZE, last / PAGE_SIZE, clear, |page| {
                let p_start = (page * PAGE_SIZE).max(iova);
                let p_last = page
                    .checked_mul(PAGE_SIZE)
                    .and_then(|s| s.checked_add(PAGE_SIZE - 1))
                    .unwrap_or(u64::MAX)
                    .min(last);
                for bit in (p_start - iova) / page_size..=(p_last - iova) / page_size {
                    words[(bit / 64) as usize] |= 1 << (bit % 64);
                }
            });
        Ok(words)
    }
}
