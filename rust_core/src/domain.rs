//! IOMMU domains: the IO page table of one paging HWPT, filled from the
//! IOAS it is attached to, as the kernel's iommu_domain is (io_pagetable.c
//! iopt_table_add_domain / iopt_fill_domain, pages.c batch_to_domain, the
//! selftest mock's generic page table in generic_pt/iommu_pt.h).
//!
//! A domain holds one entry per IOAS area filled into it: (iova, last, pa,
//! prot, leaf cap). The model's physical address of a user address is the
//! user address itself, so an entry's pa is the area's user_va at the time
//! of the fill. Leaves (the IOPTEs) are not stored: they follow from the
//! entry, as the greedy choice the page table makes when it is filled
//! (iommu_pgsize, generic_pt pt_compute_best_pgsize): at each position the
//! largest size of `pgsize_bitmap` to which both the IOVA and the PA are
//! aligned and which fits in what remains of the fill. With large pages
//! disabled on the IOAS the fill maps one PAGE_SIZE at a time
//! (batch_iommu_map_small), so the leaves are chosen within PAGE_SIZE chunks
//! of the fill (the entry's leaf cap).
//!
//! Dirty state follows the generic page table's D bits: a leaf is dirty when
//! any of its items was written while tracking was on
//! (amdv1pt_entry_is_write_dirty on a contiguous entry), it is reported
//! whole at its own size (record_dirty → iova_bitmap_set) and cleaning it
//! cleans all of it. The state is kept as a set of disjoint dirty IOVA
//! ranges, each made of whole leaves clipped to their entry, so a long
//! write costs one range, not one bit per leaf.
//!
//! Invariants:
//! - entries are disjoint and never empty; every entry's iova, length and
//!   pa are multiples of the smallest page size and its leaf cap (if any)
//!   is at least that size, so the leaves tile its fill range;
//! - `mapped_bytes` is the sum of the entry lengths;
//! - every dirty range lies inside one entry;
//! - a domain holds entries only while it is attached to a table (`attached`).
//!
//! Locking: a domain is shared (`SharedDomain`) between its table and the
//! Python object of the HWPT. Lock order: the table, then its domains; a
//! caller that holds a domain's lock never takes its table's.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{
    Area, IoPagetable, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE,
};

/// A domain as its table and its HWPT hold it.
pub type SharedDomain = Arc<RwLock<Domain>>;

/// Read access to a shared domain. State changes only after every check
/// passed, so a poisoned lock (a core bug) still guards a consistent domain.
pub fn read_domain(d: &SharedDomain) -> RwLockReadGuard<'_, Domain> {
    d.read().unwrap_or_else(|e| e.into_inner())
}

/// Write access to a shared domain (see read_domain). Every write lock
/// counts as a change (`Domain::generation`): it is the one way to one.
pub fn write_domain(d: &SharedDomain) -> RwLockWriteGuard<'_, Domain> {
    let mut dom = d.write().unwrap_or_else(|e| e.into_inner());
    dom.generation = dom.generation.wrapping_add(1);
    dom
}

/// Heap bytes of a std BTreeMap of `len` entries of `entry` bytes each, an
/// upper estimate for memory budgets: its nodes hold up to 11 entries (with
/// a 16-byte header, internal nodes 12 child pointers more) and every node
/// but the root holds at least 5, so there are at most len / 5 leaves and
/// a fifth as many internal nodes.
pub fn btree_heap_bytes(len: usize, entry: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let leaf = 16 + 11 * entry;
    let leaves = len.div_ceil(5);
    leaves * leaf + leaves.div_ceil(5) * (leaf + 12 * 8)
}

/// Most bits one IOMMU_TEST_OP_DIRTY bitmap may hold (iommufd_test_dirty:
/// 16 MiB of bitmap); more is EOVERFLOW.
pub const TEST_DIRTY_MAX_BITS: u64 = (16 << 20) * 8;

/// Entries past which an emptied domain's map is freed by another thread:
/// freeing a million-entry BTreeMap takes about 17 ms (measured by
/// bench/loop_stall_bench.py), 16K entries well under one.
pub const FREE_ASIDE_ENTRIES: usize = 1 << 14;

/// Drop `value`, which holds `entries` entries: here when it is small, else
/// on a short-lived thread. The state it held is already gone from the
/// domain; only the memory comes back later. Without a thread to be had it
/// is dropped here (spawn hands the closure back by dropping it).
fn free_aside<T: Send + 'static>(entries: usize, value: T) {
    if entries < FREE_ASIDE_ENTRIES {
        drop(value);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("iommud-free".into())
        .spawn(move || drop(value));
}

/// Disjoint, non-adjacent inclusive ranges keyed by their start.
#[derive(Clone, Debug, Default)]
pub(crate) struct RangeSet(pub(crate) BTreeMap<u64, u64>);

impl RangeSet {
    /// Add [start, last], merging with the ranges it overlaps or abuts.
    fn insert(&mut self, mut start: u64, mut last: u64) {
        if let Some((&s, &l)) = self.0.range(..=start).next_back() {
            // l + 1 >= start, without overflow.
            if l >= start.saturating_sub(1) {
                if l >= last {
                    return;
                }
                self.0.remove(&s);
                start = s;
            }
        }
        loop {
            let next = match last.checked_add(1) {
                Some(end) => self.0.range(start..=end).next(),
                None => self.0.range(start..).next(),
            }
            .map(|(&s, &l)| (s, l));
            let Some((s, l)) = next else { break };
            self.0.remove(&s);
            last = last.max(l);
        }
        self.0.insert(start, last);
    }

    /// The ranges intersecting [start, last], unclipped, in order.
    fn overlapping(&self, start: u64, last: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if let Some((&s, &l)) = self.0.range(..start).next_back() {
            if l >= start {
                out.push((s, l));
            }
        }
        out.extend(self.0.range(start..=last).map(|(&s, &l)| (s, l)));
        out
    }

    /// Take [start, last] out, splitting the ranges that straddle it.
    fn remove(&mut self, start: u64, last: u64) {
        for (s, l) in self.overlapping(start, last) {
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, start - 1);
            }
            if l > last {
                self.0.insert(last + 1, l);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&s, &l)| (s, l))
    }

    fn heap_bytes(&self) -> usize {
        btree_heap_bytes(self.0.len(), 16)
    }
}

/// What one area filled into a domain became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainEntry {
    pub iova: u64,
    pub last: u64,
    /// The physical address of `iova`.
    pub pa: u64,
    /// READABLE (4) | WRITEABLE (2), as the IOAS_MAP flags.
    pub prot: u32,
    /// Leaves are chosen within chunks of this many bytes from `fill_iova`
    /// (PAGE_SIZE when the IOAS had large pages disabled); 0: no cap.
    pub leaf_cap: u64,
    /// The IOVA range the fill that made this entry covered. A cut keeps
    /// it, so both halves keep the leaves the fill chose.
    pub fill_iova: u64,
    pub fill_last: u64,
}

impl DomainEntry {
    pub fn length(&self) -> u64 {
        self.last - self.iova + 1
    }

    /// The physical address of `iova`, which lies in this entry.
    pub fn pa_of(&self, iova: u64) -> u64 {
        self.pa.wrapping_add(iova - self.iova)
    }
}

#[derive(Debug)]
pub struct Domain {
    pub(crate) pgsize_bitmap: u64,
    pub(crate) aperture_start: u64,
    pub(crate) aperture_last: u64,
    pub(crate) entries: BTreeMap<u64, DomainEntry>,
    pub(crate) mapped_bytes: u64,
    pub(crate) tracking: bool,
    pub(crate) dirty: RangeSet,
    pub(crate) attached: bool,
    /// Write locks taken so far (write_domain): equal generations mean
    /// equal states, so a snapshot may reuse the state it wrote before.
    pub(crate) generation: u64,
}

/// The bits of `words` from `lo` to `hi`, inclusive, set.
fn set_bits(words: &mut [u64], lo: u64, hi: u64) {
    let (lw, hw) = ((lo / 64) as usize, (hi / 64) as usize);
    for (w, word) in words.iter_mut().enumerate().take(hw + 1).skip(lw) {
        let mut mask = u64::MAX;
        if w == lw {
            mask &= u64::MAX << (lo % 64);
        }
        if w == hw && hi % 64 != 63 {
            mask &= (1u64 << (hi % 64 + 1)) - 1;
        }
        *word |= mask;
    }
}

impl Domain {
    /// A paging domain with these page sizes and this aperture. The aperture
    /// is kept for the caller, which reserves what lies outside it on the
    /// IOAS (iopt_table_add_domain); fills do not check it, as the page
    /// table's map does not.
    pub fn new(pgsize_bitmap: u64, aperture_start: u64, aperture_last: u64) -> Result<Domain> {
        if pgsize_bitmap == 0 {
            return err(EINVAL, "A domain needs at least one page size.");
        }
        if aperture_start > aperture_last {
            return err(
                EINVAL,
                format!("Aperture {aperture_start:#x}..={aperture_last:#x} ends before it starts."),
            );
        }
        Ok(Domain {
            pgsize_bitmap,
            aperture_start,
            aperture_last,
            entries: BTreeMap::new(),
            mapped_bytes: 0,
            tracking: false,
            dirty: RangeSet::default(),
            attached: false,
            generation: 0,
        })
    }

    /// How many times the domain was write-locked (write_domain).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn shared(self) -> SharedDomain {
        Arc::new(RwLock::new(self))
    }

    pub fn pgsize_bitmap(&self) -> u64 {
        self.pgsize_bitmap
    }

    pub fn aperture_start(&self) -> u64 {
        self.aperture_start
    }

    pub fn aperture_last(&self) -> u64 {
        self.aperture_last
    }

    /// The smallest page size: the lowest set bit of pgsize_bitmap (the
    /// step of iommufd_test_md_check_pa, min_pagesz of the IOMMU core).
    pub fn min_page_size(&self) -> u64 {
        1 << self.pgsize_bitmap.trailing_zeros()
    }

    pub fn num_entries(&self) -> usize {
        self.entries.len()
    }

    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Heap bytes held (an upper estimate, for memory budgets): the
    /// domain itself, its entries and its dirty ranges.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Domain>()
            + btree_heap_bytes(
                self.entries.len(),
                std::mem::size_of::<(u64, DomainEntry)>(),
            )
            + self.dirty.heap_bytes()
    }

    pub fn dirty_tracking(&self) -> bool {
        self.tracking
    }

    /// Whether a table holds this domain.
    pub fn attached(&self) -> bool {
        self.attached
    }

    pub fn entries(&self) -> impl Iterator<Item = DomainEntry> + '_ {
        self.entries.values().copied()
    }

    /// The dirty IOVA ranges, merged (tests and debugging).
    pub fn dirty_ranges(&self) -> Vec<(u64, u64)> {
        self.dirty.iter().collect()
    }

    /// The entry containing `iova`.
    pub fn entry_at(&self, iova: u64) -> Option<DomainEntry> {
        self.entries
            .range(..=iova)
            .next_back()
            .map(|(_, e)| *e)
            .filter(|e| iova <= e.last)
    }

    /// The page sizes an entry's leaves may have: those of pgsize_bitmap to
    /// which the IOVA-to-PA offset is aligned (iova | pa aligned together,
    /// as iommu_pgsize's addr_merge), not above the leaf cap.
    fn leaf_sizes(&self, e: &DomainEntry) -> u64 {
        let mut sizes = self.pgsize_bitmap;
        let delta = e.pa.wrapping_sub(e.iova);
        if delta != 0 {
            let low = delta & delta.wrapping_neg();
            sizes &= low | (low - 1);
        }
        if e.leaf_cap != 0 {
            sizes &= e.leaf_cap | (e.leaf_cap - 1);
        }
        sizes
    }

    /// The leaf of entry `e` holding `x`, as (start, size), in at most one
    /// step per page size.
    ///
    /// The greedy fill (pt_compute_best_pgsize at each position) places a
    /// leaf of the largest allowed size `s` whose `s`-aligned block around
    /// `x` lies inside the fill chunk: any aligned block of an allowed size
    /// inside the chunk is covered by one leaf, since at its first byte the
    /// greedy choice may take that block and takes the largest it may.
    fn leaf_of(&self, e: &DomainEntry, x: u64) -> (u64, u64) {
        let (mut lo, mut hi) = (e.fill_iova, e.fill_last);
        // batch_iommu_map_small: one iommu_map per chunk.
        if let Some(chunks) = (x - lo).checked_div(e.leaf_cap) {
            lo += chunks * e.leaf_cap;
            hi = hi.min(lo.saturating_add(e.leaf_cap - 1));
        }
        let mut sizes = self.leaf_sizes(e);
        while sizes != 0 {
            let size = 1u64 << (63 - sizes.leading_zeros());
            let start = x & !(size - 1);
            if start >= lo && size - 1 <= hi - start {
                return (start, size);
            }
            sizes &= !size;
        }
        // Not reached: fill() admits only entries the smallest size tiles.
        let min = self.min_page_size();
        (x & !(min - 1), min)
    }

    /// The last byte of the leaf starting at `start` of `size` bytes.
    fn leaf_last((start, size): (u64, u64)) -> u64 {
        start + (size - 1)
    }

    /// The leaf holding `iova`, as (start, size); None where nothing is filled.
    pub fn leaf_at(&self, iova: u64) -> Option<(u64, u64)> {
        self.entry_at(iova).map(|e| self.leaf_of(&e, iova))
    }

    /// Every leaf that meets [iova, last], in order (one step per leaf: for
    /// tests and small ranges).
    pub fn leaves(&self, iova: u64, last: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut p = iova;
        while p <= last {
            let e = match self.entry_at(p) {
                Some(e) => e,
                None => match self.entries.range(p..).next() {
                    Some((&s, _)) if s <= last => {
                        p = s;
                        continue;
                    }
                    _ => break,
                },
            };
            let leaf = self.leaf_of(&e, p);
            // After a cut inside a leaf, both entries hold it: list it once.
            if out.last() != Some(&leaf) {
                out.push(leaf);
            }
            match Domain::leaf_last(leaf).min(e.last).checked_add(1) {
                Some(next) => p = next,
                None => break,
            }
        }
        out
    }

    /// (pa, prot) of `iova` (the page table's iova_to_phys); None where
    /// nothing is filled.
    pub fn translate(&self, iova: u64) -> Option<(u64, u32)> {
        self.entry_at(iova).map(|e| (e.pa_of(iova), e.prot))
    }

    /// Map `area` into the domain, its leaves capped by `leaf_cap` (0: no
    /// cap). Refused, with nothing changed:
    /// - neither READ nor WRITE: EINVAL (generic_pt map_range WARNs and
    ///   refuses; compat MAP_DMA can make such an area);
    /// - iova, length or pa not a multiple of the smallest page size, or a
    ///   cap below it: ENXIO (pt_compute_best_pgsize finds no size; the
    ///   kernel's iopt_table_add_domain raises the IOAS alignment first, so
    ///   only a table whose caller skipped that gets here);
    /// - an entry already there: EADDRINUSE (generic_pt __map_range).
    pub(crate) fn fill(&mut self, area: &Area, leaf_cap: u64) -> Result<()> {
        if area.prot & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE) == 0 {
            return err(
                EINVAL,
                format!(
                    "The area {:#x}..={:#x} is neither readable nor writeable; the domain \
                     cannot map it.",
                    area.iova, area.last
                ),
            );
        }
        let min = self.min_page_size();
        if (area.iova | area.user_va | area.length()) & (min - 1) != 0
            || (leaf_cap != 0 && leaf_cap < min)
        {
            return err(
                ENXIO,
                format!(
                    "The area {:#x}..={:#x} at pa {:#x} is not aligned to the domain's page \
                     size {min:#x}.",
                    area.iova, area.last, area.user_va
                ),
            );
        }
        let taken = self.entry_at(area.iova).is_some()
            || self
                .entries
                .range(area.iova..)
                .next()
                .is_some_and(|(&s, _)| s <= area.last);
        if taken {
            return err(
                EADDRINUSE,
                format!(
                    "The domain already maps part of {:#x}..={:#x}.",
                    area.iova, area.last
                ),
            );
        }
        self.entries.insert(
            area.iova,
            DomainEntry {
                iova: area.iova,
                last: area.last,
                pa: area.user_va,
                prot: area.prot,
                leaf_cap,
                fill_iova: area.iova,
                fill_last: area.last,
            },
        );
        self.mapped_bytes += area.length();
        Ok(())
    }

    /// Unmap the entry starting at `iova` and drop its dirty state
    /// (iopt_area_unfill_domain).
    pub(crate) fn unfill(&mut self, iova: u64) -> Option<DomainEntry> {
        let e = self.entries.remove(&iova)?;
        self.mapped_bytes -= e.length();
        self.dirty.remove(e.iova, e.last);
        Some(e)
    }

    /// Give the entry starting at `iova` a new physical address, keeping its
    /// IOVA range, permissions and dirty state (type1's UPDATE_VADDR: the
    /// model names a page by its user address, so the new address is the
    /// page's name from now on, in the IOAS and its domains alike).
    pub(crate) fn repoint(&mut self, iova: u64, pa: u64) {
        if let Some(e) = self.entries.get_mut(&iova) {
            e.pa = pa;
        }
    }

    /// Unmap everything (iopt_unfill_domain, or unmap-all).
    /// Empty the domain at once; a large map's memory is given back by a
    /// thread of its own (`free_aside`), so that the caller, the daemon's
    /// event loop when a detach or a destroy empties a domain, never pays
    /// for the freeing.
    pub(crate) fn unfill_all(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        let dirty = std::mem::take(&mut self.dirty);
        self.mapped_bytes = 0;
        free_aside(entries.len(), (entries, dirty));
    }

    /// Split the entry holding `p` into [iova, p] and [p + 1, last], each
    /// keeping the fill's leaves (iopt_area_split leaves the domain alone).
    pub(crate) fn split_at(&mut self, p: u64) {
        let Some(e) = self.entry_at(p).filter(|e| p < e.last) else {
            return;
        };
        self.entries.insert(e.iova, DomainEntry { last: p, ..e });
        self.entries.insert(
            p + 1,
            DomainEntry {
                iova: p + 1,
                pa: e.pa_of(p + 1),
                ..e
            },
        );
    }

    /// Mark dirty the leaves of entry `e` that meet [lo, hi] (both inside e).
    fn mark_leaves(&mut self, e: &DomainEntry, lo: u64, hi: u64) {
        let start = self.leaf_of(e, lo).0.max(e.iova);
        let last = Domain::leaf_last(self.leaf_of(e, hi)).min(e.last);
        self.dirty.insert(start, last);
    }

    /// A device access of [iova, last] through the domain: every byte
    /// filled (ENOENT) with the needed permission (EPERM); a write while
    /// tracking dirties the leaves it touches (the IOMMU setting the D bit).
    /// Returns the PA of the first byte; a fault marks nothing.
    pub(crate) fn access(&mut self, iova: u64, last: u64, write: bool) -> Result<u64> {
        let need = if write {
            IOMMU_IOAS_MAP_WRITEABLE
        } else {
            IOMMU_IOAS_MAP_READABLE
        };
        let mut p = iova;
        let mut touched = Vec::new();
        loop {
            let Some(e) = self.entry_at(p) else {
                return err(
                    ENOENT,
                    format!("DMA to {iova:#x}..={last:#x} hits IOVA {p:#x}, which the domain does not map."),
                );
            };
            if e.prot & need == 0 {
                let what = if write { "write" } else { "read" };
                return err(
                    EPERM,
                    format!("DMA {what} at {p:#x} is not permitted by the domain's mapping."),
                );
            }
            touched.push(e);
            if e.last >= last {
                break;
            }
            p = e.last + 1;
        }
        if write && self.tracking {
            for e in &touched {
                self.mark_leaves(e, iova.max(e.iova), last.min(e.last));
            }
        }
        Ok(touched[0].pa_of(iova))
    }

    /// IOMMU_TEST_OP_MD_CHECK_MAP (iommufd_test_md_check_pa): every step of
    /// the smallest page size from `iova` must translate to `user_va` plus
    /// the same offset. EINVAL when iova, length or user_va is not a multiple
    /// of the step, when user_va + length overflows, or on any mismatch or
    /// hole. Length 0 succeeds.
    pub fn check_map(&self, iova: u64, length: u64, user_va: u64) -> Result<()> {
        let step = self.min_page_size();
        if !iova.is_multiple_of(step)
            || !length.is_multiple_of(step)
            || !user_va.is_multiple_of(step)
            || user_va.checked_add(length).is_none()
        {
            return err(
                EINVAL,
                format!(
                    "iova {iova:#x}, length {length:#x} and user_va {user_va:#x} must be \
                     multiples of {step:#x}, and user_va + length must not overflow."
                ),
            );
        }
        if length == 0 {
            return Ok(());
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EINVAL,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        // Within an entry the PA moves with the IOVA, so one comparison per
        // entry answers for every step in it.
        let mut p = iova;
        loop {
            let want = user_va + (p - iova);
            match self.entry_at(p) {
                Some(e) if e.pa_of(p) == want => {
                    if e.last >= last {
                        return Ok(());
                    }
                    p = e.last + 1;
                }
                Some(e) => {
                    return err(
                        EINVAL,
                        format!(
                            "IOVA {p:#x} translates to {:#x}, not {want:#x}.",
                            e.pa_of(p)
                        ),
                    )
                }
                None => return err(EINVAL, format!("IOVA {p:#x} is not mapped by the domain.")),
            }
        }
    }

    /// Turn dirty tracking on or off. Enabling starts from a clean snapshot
    /// (iopt_set_dirty_tracking clears every D bit first, even when it was
    /// on already); disabling keeps the D bits (mock_domain_set_dirty_tracking
    /// only drops the flag).
    pub fn set_dirty_tracking(&mut self, enable: bool) {
        if enable {
            self.dirty = RangeSet::default();
        }
        self.tracking = enable;
    }

    /// IOMMU_TEST_OP_DIRTY (iommufd_test_dirty), after the HWPT lookup: for
    /// every set bit i of `bitmap` (bit i is bit i % 8 of byte i / 8), dirty
    /// the leaf holding `iova + i * page_size`; IOVAs the domain does not map
    /// are skipped silently. Returns the number of set bits among the
    /// length / page_size that are read, whatever was marked. Errors:
    /// page_size or length 0, iova or length not a multiple of page_size, or
    /// an empty bitmap (the kernel's NULL uptr): EINVAL; more than
    /// TEST_DIRTY_MAX_BITS bits: EOVERFLOW; tracking off: EINVAL; a bitmap
    /// shorter than the bits it must hold: EFAULT (copy_from_user).
    pub fn mark_dirty(
        &mut self,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u8],
    ) -> Result<u64> {
        if page_size == 0
            || length == 0
            || !iova.is_multiple_of(page_size)
            || !length.is_multiple_of(page_size)
            || bitmap.is_empty()
        {
            return err(
                EINVAL,
                format!(
                    "iova {iova:#x} and length {length:#x} must be non-zero multiples of a \
                     non-zero page size ({page_size:#x}), with a bitmap."
                ),
            );
        }
        let bits = length / page_size;
        if bits > TEST_DIRTY_MAX_BITS {
            return err(
                EOVERFLOW,
                format!("{bits:#x} bits pass the limit of {TEST_DIRTY_MAX_BITS:#x}."),
            );
        }
        if !self.tracking {
            return err(EINVAL, "Dirty tracking is off on this domain.");
        }
        let need = bits.div_ceil(8);
        if (bitmap.len() as u64) < need {
            return err(
                EFAULT,
                format!(
                    "The bitmap holds {:#x} bytes; {bits:#x} bits need {need:#x}.",
                    bitmap.len()
                ),
            );
        }
        let mut count = 0u64;
        for (byte, &b) in bitmap[..need as usize].iter().enumerate() {
            let mut set = u64::from(b);
            let first = byte as u64 * 8;
            if first + 8 > bits {
                set &= (1 << (bits - first)) - 1;
            }
            while set != 0 {
                let i = first + u64::from(set.trailing_zeros());
                set &= set - 1;
                count += 1;
                let x = iova.wrapping_add(i.wrapping_mul(page_size));
                if let Some(e) = self.entry_at(x) {
                    self.mark_leaves(&e, x, x);
                }
            }
        }
        Ok(count)
    }

    /// The domain's read_and_clear_dirty over [lo, hi], which lies in one
    /// entry: every dirty leaf meeting it is recorded into `words` as
    /// iova_bitmap_set would, for a bitmap based at `base` whose last IOVA
    /// is `bitmap_last`, at 1 << pgshift bytes per bit; with `clear` every
    /// leaf meeting the range is cleaned, recorded or not.
    #[allow(clippy::too_many_arguments)] // the bitmap's geometry, one argument each
    fn read_and_clear(
        &mut self,
        lo: u64,
        hi: u64,
        base: u64,
        bitmap_last: u64,
        pgshift: u32,
        clear: bool,
        words: &mut [u64],
    ) {
        let Some(e) = self.entry_at(lo) else {
            return;
        };
        let hi = hi.min(e.last);
        let span_lo = self.leaf_of(&e, lo).0.max(e.iova);
        let span_hi = Domain::leaf_last(self.leaf_of(&e, hi)).min(e.last);
        for (a, b) in self.dirty.overlapping(span_lo, span_hi) {
            let first = self.leaf_of(&e, a.max(span_lo));
            let last_leaf = self.leaf_of(&e, b.min(span_hi));
            // record_dirty reports whole leaves from their aligned start;
            // iova_bitmap_set drops a leaf starting below the bitmap's base
            // entirely (advancing to it fails), and only the first leaf of
            // the range can.
            let from = if first.0 < base {
                match first.0.checked_add(first.1) {
                    Some(next) => next,
                    None => continue,
                }
            } else {
                first.0
            };
            let to = Domain::leaf_last(last_leaf).min(bitmap_last);
            if from > to {
                continue;
            }
            set_bits(words, (from - base) >> pgshift, (to - base) >> pgshift);
        }
        if clear {
            self.dirty.remove(span_lo, span_hi);
        }
    }
}

impl IoPagetable {
    pub fn num_domains(&self) -> usize {
        self.domains.len()
    }

    /// Whether fills may use large leaves (IOMMU_OPTION HUGE_PAGES; off
    /// after the compat SET_IOMMU(TYPE1)).
    pub fn large_pages(&self) -> bool {
        !self.large_pages_disabled
    }

    /// Allow or forbid large leaves in the fills made from now on; existing
    /// entries keep their leaves. The kernel's rules on changing it
    /// (iopt_disable_large_pages: EINVAL with a domain and an area, the
    /// alignment raised to PAGE_SIZE) are the caller's.
    pub fn set_large_pages(&mut self, enabled: bool) {
        self.large_pages_disabled = !enabled;
    }

    /// The leaf cap of a fill made now: with large pages disabled pages.c
    /// maps one PAGE_SIZE at a time (batch_iommu_map_small).
    fn leaf_cap(&self) -> u64 {
        if self.large_pages_disabled {
            PAGE_SIZE
        } else {
            0
        }
    }

    /// Fill `area` into every domain, or into none: on a failure the
    /// domains already filled are unfilled again (iopt_fill_domains_pages).
    pub(crate) fn fill_domains(&self, area: &Area) -> Result<()> {
        let cap = self.leaf_cap();
        for (i, d) in self.domains.iter().enumerate() {
            if let Err(e) = write_domain(d).fill(area, cap) {
                for done in &self.domains[..i] {
                    write_domain(done).unfill(area.iova);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Remove the area starting at `iova` from every domain.
    pub(crate) fn unfill_domains(&self, iova: u64) {
        for d in &self.domains {
            write_domain(d).unfill(iova);
        }
    }

    pub(crate) fn unfill_all_domains(&self) {
        for d in &self.domains {
            write_domain(d).unfill_all();
        }
    }

    fn holds(&self, d: &SharedDomain) -> bool {
        self.domains.iter().any(|x| Arc::ptr_eq(x, d))
    }

    fn check_holds(&self, d: &SharedDomain) -> Result<()> {
        if !self.holds(d) {
            return err(EINVAL, "The domain is not attached to this IOAS.");
        }
        Ok(())
    }

    /// iopt_table_add_domain's fill step: fill every area into `d`, all or
    /// nothing (an area neither readable nor writeable: EINVAL), and from
    /// then on every map and copy fills it too. EEXIST when this table
    /// already holds it, EBUSY when another does. The alignment and the
    /// aperture's reserved ranges, which the kernel sets up first, are the
    /// caller's.
    pub fn add_domain(&mut self, d: &SharedDomain) -> Result<()> {
        if self.holds(d) {
            return err(EEXIST, "The domain is already attached to this IOAS.");
        }
        let mut dom = write_domain(d);
        if dom.attached {
            return err(EBUSY, "The domain is attached to another IOAS.");
        }
        let cap = self.leaf_cap();
        for area in self.areas.iter() {
            if let Err(e) = dom.fill(&area, cap) {
                dom.unfill_all();
                return Err(e);
            }
        }
        dom.attached = true;
        drop(dom);
        self.domains.push(Arc::clone(d));
        Ok(())
    }

    /// iopt_table_remove_domain: unmap everything from `d` (its dirty state
    /// goes) and let it go; ENOENT when this table does not hold it. Its
    /// reserved ranges and the alignment are the caller's.
    pub fn remove_domain(&mut self, d: &SharedDomain) -> Result<()> {
        let Some(at) = self.domains.iter().position(|x| Arc::ptr_eq(x, d)) else {
            return err(ENOENT, "The domain is not attached to this IOAS.");
        };
        let d = self.domains.remove(at);
        let mut dom = write_domain(&d);
        dom.unfill_all();
        dom.attached = false;
        Ok(())
    }

    /// iopt_cut_iova: for each IOVA p in order, split the area holding it
    /// into [start, p] and [p + 1, last] (iopt_area_split), with its dirty
    /// bits and its domain entries, which keep their leaves. An IOVA in no
    /// area is skipped, and p at an area's first or last IOVA changes
    /// nothing. EINVAL when p + 1 or its user address's page offset is not
    /// a multiple of the IOAS alignment, or when the area is filled into a
    /// domain while large pages are enabled (a leaf might cross p). Not
    /// atomic, as the kernel's: the cuts before a failing one stay done.
    /// The area limit (set_max_areas) is not applied: the kernel has none,
    /// and compat unmap cuts only to remove the pieces.
    pub fn cut(&mut self, iovas: &[u64]) -> Result<()> {
        for &p in iovas {
            let Some(area) = self.area_at(p) else {
                continue;
            };
            if p == area.iova || p == area.last {
                continue;
            }
            let next = p + 1;
            let align = self.iova_alignment;
            let start_byte = area.user_va.wrapping_add(next - area.iova) % PAGE_SIZE;
            if next & (align - 1) != 0 || start_byte & (align - 1) != 0 {
                return err(
                    EINVAL,
                    format!(
                        "A cut after {p:#x} leaves an area at {next:#x} (page offset \
                         {start_byte:#x}) that is not aligned to the IOAS alignment {align:#x}."
                    ),
                );
            }
            if !self.domains.is_empty() && !self.large_pages_disabled {
                return err(
                    EINVAL,
                    format!(
                        "The area {:#x}..={:#x} is filled into a domain with large pages \
                         enabled; it cannot be cut at {p:#x}.",
                        area.iova, area.last
                    ),
                );
            }
            self.areas.remove(area.iova);
            self.areas.insert(Area { last: p, ..area });
            self.areas.insert(Area {
                iova: next,
                user_va: area.user_va.wrapping_add(next - area.iova),
                ..area
            });
            self.dirty.split(&area, p);
            for d in &self.domains {
                write_domain(d).split_at(p);
            }
        }
        Ok(())
    }

    /// One DMA access of `length` bytes at `iova` by a device attached to
    /// domain `d` of this table: translated and permission-checked through
    /// the domain (ENOENT where it maps nothing, EPERM), a write dirtying
    /// the domain's leaves it touches while the domain tracks, and the
    /// table's own dirty pages while the table tracks (type1 reads those),
    /// all under the caller's one table lock. EINVAL for length 0 or a
    /// domain this table does not hold, EOVERFLOW for a range past 2^64.
    /// Returns the domain's PA of the first byte.
    pub fn dma_domain(
        &mut self,
        d: &SharedDomain,
        iova: u64,
        length: u64,
        write: bool,
    ) -> Result<u64> {
        if length == 0 {
            return err(EINVAL, "A DMA access of zero bytes.");
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        self.check_holds(d)?;
        let first = write_domain(d).access(iova, last, write)?;
        if write && self.dirty.enabled() {
            let mut p = iova;
            while let Some(area) = self.area_from(p).filter(|a| a.iova <= last) {
                self.dirty
                    .mark(&area, iova.max(area.iova), area.last.min(last));
                match area.last.checked_add(1) {
                    Some(next) if area.last < last => p = next,
                    _ => break,
                }
            }
        }
        Ok(first)
    }

    /// IOMMU_HWPT_GET_DIRTY_BITMAP of domain `d` after the HWPT lookup
    /// (iopt_read_and_clear_dirty_data): one bit per `page_size` unit of
    /// [iova, iova + length), packed in u64 words, bit i of word i / 64.
    ///
    /// Checks (iommufd_check_iova_range): length 0 EINVAL; iova + length - 1
    /// past 2^64-1 EOVERFLOW; iova or the range's end not aligned to the IOAS
    /// alignment EINVAL; page_size 0 EINVAL; iova or end not aligned to
    /// page_size EINVAL (masks of `x - 1`, as the kernel's). Then EINVAL for
    /// a domain this table does not hold and ENOMEM past MAX_BITMAP_BITS
    /// (the model's bound). Whether tracking is on is not checked.
    ///
    /// The read walks the areas contiguous from `iova` and stops at the
    /// first hole, whose error the kernel drops (__iommu_read_and_clear_dirty
    /// → iommu_read_and_clear_dirty returns 0). Each dirty leaf meeting the
    /// range sets the bits from `(leaf_start - iova) >> s` to
    /// `(leaf_last - iova) >> s`, s being page_size's lowest set bit,
    /// clipped to the bitmap; a leaf starting below `iova` sets none. With
    /// `clear` every leaf read is cleaned (NO_CLEAR unset).
    pub fn read_domain_dirty_bitmap(
        &self,
        d: &SharedDomain,
        iova: u64,
        length: u64,
        page_size: u64,
        clear: bool,
    ) -> Result<Vec<u64>> {
        if length == 0 {
            return err(EINVAL, "A dirty bitmap of zero bytes.");
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        let end = last.wrapping_add(1);
        let align = self.iova_alignment;
        if (iova | end) & (align - 1) != 0 {
            return err(
                EINVAL,
                format!(
                    "The range {iova:#x}..={last:#x} is not aligned to the IOAS alignment \
                     {align:#x}."
                ),
            );
        }
        if page_size == 0 {
            return err(EINVAL, "Page size 0.");
        }
        if (iova | end) & (page_size - 1) != 0 {
            return err(
                EINVAL,
                format!(
                    "The range {iova:#x}..={last:#x} is not aligned to the page size \
                     {page_size:#x}."
                ),
            );
        }
        self.check_holds(d)?;
        let pgshift = page_size.trailing_zeros();
        let bits = ((last - iova) >> pgshift) + 1;
        if bits > crate::dirty::MAX_BITMAP_BITS {
            return err(ENOMEM, format!("A bitmap of {bits:#x} bits is too large."));
        }
        let mut words = vec![0u64; bits.div_ceil(64) as usize];
        let mut dom = write_domain(d);
        let mut cur = iova;
        while let Some(area) = self.area_at(cur) {
            let hi = area.last.min(last);
            dom.read_and_clear(cur, hi, iova, last, pgshift, clear, &mut words);
            if hi == last {
                break;
            }
            // iopt_area_contig_next: the next area must start right here.
            cur = hi + 1;
        }
        Ok(words)
    }
}
