//! The IO page table of one IOAS: its areas (IOVA -> user address), its
//! reserved ranges, its allowed list and its alignment, with the kernel's
//! IOMMU_IOAS_MAP / UNMAP / IOVA_RANGES rules (io_pagetable.c, ioas.c).
//!
//! Invariants:
//! - areas are disjoint and never empty; unmap removes whole areas only and
//!   only `cut` (compat unmap's iopt_cut_iova) splits one; `last` is
//!   inclusive so an area may end at 2^64-1;
//! - no area intersects a reserved range, and no reserved range intersects
//!   an allowed range (both enforced when either side is added);
//! - every area's iova, length and user_va page offset are multiples of
//!   `iova_alignment` (enforced when the alignment is raised);
//! - `mapped_bytes` is the sum of the area lengths;
//! - every domain in `domains` holds exactly one entry per area, with the
//!   area's range and prot (domain.rs): maps, copies, unmaps and cuts keep
//!   them in step, all or nothing.
//!
//! Lock order (the PyO3 layer): the table, then its domains. Everything
//! here that touches a domain runs with the table borrowed, so with the
//! table's lock held, and takes the domain's lock inside it.
//!
//! The areas live in an `AreaMap` (area_map.rs): a translation is one
//! predecessor search over it, and unmap walks only the areas it removes.

use crate::area_map::AreaMap;
use crate::dirty::DirtyTracker;
use crate::domain::SharedDomain;
use crate::errno::{err, Errno::*, Result};

pub const PAGE_SIZE: u64 = 4096;
pub const HPAGE_SIZE: u64 = 2 << 20;
pub const ULONG_MAX: u64 = u64::MAX;

pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 2;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 4;
pub const MAP_FLAGS: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
pub const PROT_MASK: u32 = IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/// One mapping: `[iova, last]` translates to `user_va + (addr - iova)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub iova: u64,
    pub last: u64,
    pub user_va: u64,
    /// READABLE (4) | WRITEABLE (2), as the IOAS_MAP flags.
    pub prot: u32,
}

impl Area {
    pub fn length(&self) -> u64 {
        // An area never covers all 2^64 bytes (length < ULONG_MAX), so +1 fits.
        self.last - self.iova + 1
    }
}

/// A reserved IOVA range, owned by whoever reserved it (a device, a domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub start: u64,
    pub last: u64,
    pub owner: u64,
}

/// Batches at least this long are split across the machine's cores.
pub const PARALLEL_BATCH: usize = 1 << 16;

#[derive(Default, Debug)]
pub struct IoPagetable {
    pub(crate) areas: AreaMap,
    /// Sorted by (start, last), which the allocator's walk relies on.
    pub(crate) reserved: Vec<Reserved>,
    pub(crate) allowed: Vec<(u64, u64)>,
    pub(crate) iova_alignment: u64,
    pub(crate) mapped_bytes: u64,
    pub(crate) dirty: DirtyTracker,
    /// Most areas this table may hold (the daemon's per-IOAS limit); None is unlimited.
    pub(crate) max_areas: Option<usize>,
    /// The domains attached (iopt->domains), each filled with every area.
    pub(crate) domains: Vec<SharedDomain>,
    /// IOMMU_OPTION HUGE_PAGES off (iopt->disable_large_pages): fills map
    /// one PAGE_SIZE at a time.
    pub(crate) large_pages_disabled: bool,
}

/// Whether a uAPI IOVA or length is out of the kernel's range: the ioctls
/// refuse values that do not fit below ULONG_MAX (EOVERFLOW). With a 64-bit
/// unsigned long only the all-ones value is refused; every other u64 fits.
pub(crate) fn reaches_ulong_max(v: u64) -> bool {
    v == ULONG_MAX
}

pub(crate) fn intersects(a_start: u64, a_last: u64, b_start: u64, b_last: u64) -> bool {
    a_start <= b_last && b_start <= a_last
}

/// IOMMU_IOAS_MAP steps 1-3, which the kernel runs before looking up the IOAS.
pub fn check_map_args(flags: u32, iova: u64, length: u64) -> Result<()> {
    if flags & !MAP_FLAGS != 0 {
        return err(
            EOPNOTSUPP,
            format!("Unknown IOAS_MAP flag bits {:#x}.", flags & !MAP_FLAGS),
        );
    }
    if reaches_ulong_max(iova) || reaches_ulong_max(length) {
        return err(
            EOVERFLOW,
            format!("IOVA {iova:#x} or length {length:#x} reaches 2^64-1."),
        );
    }
    if flags & PROT_MASK == 0 {
        return err(EINVAL, "A mapping must be READABLE, WRITEABLE or both.");
    }
    Ok(())
}

impl IoPagetable {
    pub fn new() -> Self {
        IoPagetable {
            iova_alignment: 1,
            ..Default::default()
        }
    }

    pub fn iova_alignment(&self) -> u64 {
        self.iova_alignment
    }

    pub fn num_areas(&self) -> usize {
        self.areas.len()
    }

    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    pub fn areas(&self) -> impl Iterator<Item = Area> + '_ {
        self.areas.iter()
    }

    /// Heap bytes held by the area map (the memory benchmark's figure).
    pub fn area_heap_bytes(&self) -> usize {
        self.areas.heap_bytes()
    }

    /// Heap bytes this table holds, for a per-session memory budget: the
    /// area map, the dirty state, the reserved and allowed lists, and every
    /// attached domain (`Domain::memory_bytes`: its entries and dirty
    /// ranges). Takes each domain's lock inside, after the table's.
    pub fn memory_bytes(&self) -> usize {
        self.areas.heap_bytes()
            + self.dirty.heap_bytes()
            + self.reserved.capacity() * std::mem::size_of::<Reserved>()
            + self.allowed.capacity() * 16
            + self.domains.capacity() * std::mem::size_of::<SharedDomain>()
            + self
                .domains
                .iter()
                .map(|d| crate::domain::read_domain(d).memory_bytes())
                .sum::<usize>()
    }

    pub fn reserved(&self) -> &[Reserved] {
        &self.reserved
    }

    pub fn allowed(&self) -> &[(u64, u64)] {
        &self.allowed
    }

    /// The area containing `iova`, if any.
    pub fn area_at(&self, iova: u64) -> Option<Area> {
        self.areas.floor(iova).filter(|a| iova <= a.last)
    }

    /// The area containing `iova`, else the first area above it.
    pub fn area_from(&self, iova: u64) -> Option<Area> {
        self.area_at(iova).or_else(|| self.areas.ceil(iova))
    }

    /// Whether any area intersects `[start, last]`.
    pub(crate) fn any_area_in(&self, start: u64, last: u64) -> bool {
        if self.area_at(start).is_some() {
            return true;
        }
        self.areas.ceil(start).is_some_and(|a| a.iova <= last)
    }

    pub(crate) fn reserved_hit(&self, start: u64, last: u64) -> Option<&Reserved> {
        self.reserved
            .iter()
            .find(|r| intersects(r.start, r.last, start, last))
    }

    /// IOVA -> (user address, prot). None when nothing is mapped there.
    #[inline]
    pub fn translate(&self, iova: u64) -> Option<(u64, u32)> {
        self.areas.translate(iova)
    }

    /// Translate every IOVA of `iovas`; unmapped ones get pa 0 and prot 0.
    /// Returns how many were mapped. Large batches use every core.
    pub fn translate_batch(&self, iovas: &[u64], pas: &mut [u64], prots: &mut [u8]) -> usize {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        self.translate_batch_on(iovas, pas, prots, threads)
    }

    /// `translate_batch` on at most `threads` threads (1: the caller's only).
    pub fn translate_batch_on(
        &self,
        iovas: &[u64],
        pas: &mut [u64],
        prots: &mut [u8],
        threads: usize,
    ) -> usize {
        let index = &self.areas;
        let n = iovas.len().min(pas.len()).min(prots.len());
        if n < PARALLEL_BATCH || threads < 2 {
            return index.translate_run(&iovas[..n], &mut pas[..n], &mut prots[..n]);
        }
        let chunk = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = iovas[..n]
                .chunks(chunk)
                .zip(pas[..n].chunks_mut(chunk))
                .zip(prots[..n].chunks_mut(chunk))
                .map(|((i, p), r)| scope.spawn(move || index.translate_run(i, p, r)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("translate worker"))
                .sum()
        })
    }

    /// IOMMU_IOAS_MAP after the IOAS lookup. Returns the IOVA of the new area.
    pub fn map(&mut self, flags: u32, user_va: u64, length: u64, iova: u64) -> Result<u64> {
        check_map_args(flags, iova, length)?;
        self.map_user_pages(flags, user_va, length, iova)
    }

    /// iopt_map_user_pages: IOMMU_IOAS_MAP without the ioctl's own checks
    /// of steps 1-3, which compat MAP_DMA (iommufd_vfio_map_dma) does not
    /// make: flags with neither READABLE nor WRITEABLE make an area that
    /// no domain can map (a fill refuses it with EINVAL). Unknown flag bits
    /// are still EOPNOTSUPP and an IOVA or length of 2^64-1 EOVERFLOW. The
    /// new area is filled into every domain; if a fill fails nothing stays.
    pub fn map_user_pages(
        &mut self,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64> {
        if flags & !MAP_FLAGS != 0 {
            return err(
                EOPNOTSUPP,
                format!("Unknown IOAS_MAP flag bits {:#x}.", flags & !MAP_FLAGS),
            );
        }
        if reaches_ulong_max(iova) || reaches_ulong_max(length) {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} or length {length:#x} reaches 2^64-1."),
            );
        }
        if user_va.checked_add(length).is_none() {
            return err(
                EOVERFLOW,
                format!("user_va {user_va:#x} + length {length:#x} wraps past 2^64."),
            );
        }
        if length == 0 || length > ULONG_MAX - PAGE_SIZE {
            return err(
                EINVAL,
                format!("Length {length:#x} is zero or too large to map."),
            );
        }
        if !length.is_multiple_of(self.iova_alignment) {
            return err(
                EINVAL,
                format!(
                    "Length {length:#x} is not a multiple of the IOAS alignment {:#x}.",
                    self.iova_alignment
                ),
            );
        }
        let iova = if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
            self.check_fixed(iova, length)?;
            iova
        } else {
            self.alloc_iova(length, user_va)?
        };
        self.check_user_offset(user_va)?;
        self.check_room(1)?;
        self.insert_filled(Area {
            iova,
            last: iova + (length - 1),
            user_va,
            prot: flags & PROT_MASK,
        })?;
        Ok(iova)
    }

    /// Many IOMMU_IOAS_MAPs with one flags value, all or nothing: `reqs`
    /// holds (user_va, length, iova) triples (iova is used with FIXED_IOVA
    /// only). Returns each new area's IOVA. On the first failure every area
    /// this call made is removed again and the error names the request's
    /// index, so the table is as it was.
    pub fn map_batch(&mut self, flags: u32, reqs: &[(u64, u64, u64)]) -> Result<Vec<u64>> {
        let mut done: Vec<u64> = Vec::with_capacity(reqs.len());
        for (i, &(user_va, length, iova)) in reqs.iter().enumerate() {
            match self.map(flags, user_va, length, iova) {
                Ok(at) => done.push(at),
                Err(mut e) => {
                    for (&at, &(_, len, _)) in done.iter().zip(reqs).rev() {
                        self.unmap(at, len)
                            .expect("an area this call made unmaps whole");
                    }
                    e.message = format!("Request {i:#x} of the batch: {}", e.message);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Many IOMMU_IOAS_UNMAPs of (iova, length) pairs, in order; returns the
    /// bytes unmapped. Like the kernel's unmap (and like issuing the calls one
    /// by one) it is not atomic: on a failure the error names the request's
    /// index and the ones before it stay done.
    pub fn unmap_batch(&mut self, reqs: &[(u64, u64)]) -> Result<u64> {
        let mut total = 0u64;
        for (i, &(iova, length)) in reqs.iter().enumerate() {
            match self.unmap(iova, length) {
                Ok(bytes) => total = total.saturating_add(bytes),
                Err(mut e) => {
                    e.message = format!("Request {i:#x} of the batch: {}", e.message);
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    /// ENOSPC when `more` areas would pass the table's limit. Checked last,
    /// after every argument rule, so that a refused call changes nothing.
    pub(crate) fn check_room(&self, more: usize) -> Result<()> {
        match self.max_areas {
            Some(max) if self.areas.len().saturating_add(more) > max => err(
                ENOSPC,
                format!(
                    "The IOAS holds {:#x} areas; {:#x} more would pass its limit of {:#x}.",
                    self.areas.len(),
                    more,
                    max
                ),
            ),
            _ => Ok(()),
        }
    }

    pub fn set_max_areas(&mut self, max: Option<usize>) {
        self.max_areas = max;
    }

    /// Placement checks of a FIXED_IOVA range (iopt_check_iova + overlap).
    pub(crate) fn check_fixed(&self, iova: u64, length: u64) -> Result<()> {
        if !iova.is_multiple_of(self.iova_alignment) {
            return err(
                EINVAL,
                format!(
                    "IOVA {iova:#x} is not a multiple of the IOAS alignment {:#x}.",
                    self.iova_alignment
                ),
            );
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        if let Some(r) = self.reserved_hit(iova, last) {
            return err(
                EINVAL,
                format!(
                    "IOVA range {iova:#x}..={last:#x} touches the reserved range {:#x}..={:#x}.",
                    r.start, r.last
                ),
            );
        }
        if self.any_area_in(iova, last) {
            return err(
                EEXIST,
                format!("IOVA range {iova:#x}..={last:#x} overlaps an existing area."),
            );
        }
        Ok(())
    }

    pub(crate) fn check_user_offset(&self, user_va: u64) -> Result<()> {
        if !(user_va % PAGE_SIZE).is_multiple_of(self.iova_alignment) {
            return err(
                EINVAL,
                format!(
                    "The page offset of user_va {user_va:#x} is not a multiple of the IOAS \
                     alignment {:#x}.",
                    self.iova_alignment
                ),
            );
        }
        Ok(())
    }

    /// Point the area starting exactly at `iova` at `user_va`: its range,
    /// prot and dirty bits stay, so a device never sees the IOVA unmapped
    /// (type1's UPDATE_VADDR). The model names a page by its user address,
    /// so the domains' entries take the new address too: a device and a
    /// translation see one answer. The new address obeys the map rules (no wrap
    /// past 2^64, page offset aligned); a refusal changes nothing. Returns
    /// the area as it was.
    pub fn set_area_user_va(&mut self, iova: u64, user_va: u64) -> Result<Area> {
        let Some(old) = self.area_at(iova).filter(|a| a.iova == iova) else {
            return err(ENOENT, format!("No area starts at IOVA {iova:#x}."));
        };
        if user_va.checked_add(old.length()).is_none() {
            return err(
                EOVERFLOW,
                format!(
                    "user_va {user_va:#x} + length {:#x} wraps past 2^64.",
                    old.length()
                ),
            );
        }
        self.check_user_offset(user_va)?;
        self.areas.remove(iova);
        self.areas.insert(Area { user_va, ..old });
        for d in &self.domains {
            crate::domain::write_domain(d).repoint(iova, user_va);
        }
        Ok(old)
    }

    pub(crate) fn insert_area(&mut self, area: Area) {
        self.mapped_bytes += area.length();
        self.areas.insert(area);
    }

    /// Fill a new area into every domain, then add it; a failed fill
    /// leaves the table and its domains as they were.
    pub(crate) fn insert_filled(&mut self, area: Area) -> Result<()> {
        self.fill_domains(&area)?;
        self.insert_area(area);
        Ok(())
    }

    /// Remove an area, its dirty bits and its domain entries.
    pub(crate) fn remove_area(&mut self, iova: u64) -> Area {
        let area = self.areas.remove(iova).expect("area present");
        self.mapped_bytes -= area.length();
        self.dirty.forget(area.iova);
        self.unfill_domains(area.iova);
        area
    }

    /// IOMMU_IOAS_UNMAP after the IOAS lookup; returns the bytes unmapped.
    ///
    /// Like the kernel this is not atomic: areas removed before a split is
    /// found stay removed (checklist rule 33).
    pub fn unmap(&mut self, iova: u64, length: u64) -> Result<u64> {
        if iova == 0 && length == u64::MAX {
            return Ok(self.unmap_all());
        }
        if reaches_ulong_max(iova) || reaches_ulong_max(length) {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} or length {length:#x} reaches 2^64-1."),
            );
        }
        if length == 0 {
            return err(EINVAL, "Unmap of zero bytes.");
        }
        let Some(last) = iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("IOVA {iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        let here = self.area_at(iova);
        // The common case, one whole area: areas are disjoint, so no other
        // area can lie inside its range and the walk below is not needed.
        if let Some(a) = here.filter(|a| a.iova == iova && a.last == last) {
            return Ok(self.remove_area(a.iova).length());
        }
        let mut unmapped = 0u64;
        let mut cursor = match here {
            Some(a) => a.iova,
            None => iova,
        };
        while let Some(area) = self.areas.ceil(cursor) {
            let start = area.iova;
            if start > last {
                break;
            }
            if area.iova < iova || area.last > last {
                return err(
                    ENOENT,
                    format!(
                        "Unmap of {iova:#x}..={last:#x} would split the area {:#x}..={:#x}.",
                        area.iova, area.last
                    ),
                );
            }
            unmapped += self.remove_area(start).length();
            match area.last.checked_add(1) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        if unmapped == 0 {
            return err(
                ENOENT,
                format!("No area lies within {iova:#x}..={last:#x}."),
            );
        }
        Ok(unmapped)
    }

    /// Drop every area; returns the bytes they covered.
    pub fn unmap_all(&mut self) -> u64 {
        let total = self.mapped_bytes;
        self.areas.clear();
        self.mapped_bytes = 0;
        self.dirty.clear();
        self.unfill_all_domains();
        total
    }

    /// IOMMU_IOAS_IOVA_RANGES: the holes of the reserved ranges over the
    /// whole 64-bit space (the allowed list is not subtracted).
    pub fn iova_ranges(&self) -> Vec<(u64, u64)> {
        let mut spans: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        spans.sort_unstable();
        let mut out = Vec::new();
        let mut next: Option<u64> = Some(0); // None: the reserved ranges reach 2^64-1
        for (start, last) in spans {
            let Some(from) = next else { break };
            if start > from {
                out.push((from, start - 1));
            }
            if last >= from {
                next = last.checked_add(1);
            }
        }
        if let Some(from) = next {
            out.push((from, ULONG_MAX));
        }
        out
    }

    /// Reserve `[start, last]` for `owner`. EADDRINUSE if an area or an
    /// allowed range is in the way; nothing changes on failure.
    pub fn add_reserved(&mut self, start: u64, last: u64, owner: u64) -> Result<()> {
        if start > last {
            return err(
                EINVAL,
                format!("Reserved range {start:#x}..={last:#x} ends before it starts."),
            );
        }
        if self.any_area_in(start, last) {
            return err(
                EADDRINUSE,
                format!("An existing mapping lies in the reserved range {start:#x}..={last:#x}."),
            );
        }
        if let Some(&(a, l)) = self
            .allowed
            .iter()
            .find(|&&(a, l)| intersects(a, l, start, last))
        {
            return err(
                EADDRINUSE,
                format!(
                    "The reserved range {start:#x}..={last:#x} intersects the allowed range \
                     {a:#x}..={l:#x}."
                ),
            );
        }
        let at = self
            .reserved
            .partition_point(|r| (r.start, r.last) <= (start, last));
        self.reserved.insert(at, Reserved { start, last, owner });
        Ok(())
    }

    /// Remove every range reserved by `owner`.
    pub fn remove_reserved(&mut self, owner: u64) {
        self.reserved.retain(|r| r.owner != owner);
    }

    /// Set the IOVA alignment (a power of two). Raising it fails with
    /// EADDRINUSE when an existing area would violate it.
    pub fn set_iova_alignment(&mut self, align: u64) -> Result<()> {
        if align == 0 || !align.is_power_of_two() {
            return err(
                EINVAL,
                format!("Alignment {align:#x} is not a power of two."),
            );
        }
        if let Some(a) = self.areas.iter().find(|a| {
            !a.iova.is_multiple_of(align)
                || !a.length().is_multiple_of(align)
                || !(a.user_va % PAGE_SIZE).is_multiple_of(align)
        }) {
            return err(
                EADDRINUSE,
                format!(
                    "The area {:#x}..={:#x} is not aligned to {align:#x}.",
                    a.iova, a.last
                ),
            );
        }
        self.iova_alignment = align;
        Ok(())
    }

    /// IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list atomically.
    pub fn allow_iovas(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        let mut sorted = ranges.to_vec();
        for &(start, last) in &sorted {
            if start >= last {
                return err(
                    EINVAL,
                    format!("Allowed range {start:#x}..={last:#x} must have start < last."),
                );
            }
        }
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            if pair[1].0 <= pair[0].1 {
                return err(
                    EINVAL,
                    format!(
                        "Allowed ranges {:#x}..={:#x} and {:#x}..={:#x} overlap.",
                        pair[0].0, pair[0].1, pair[1].0, pair[1].1
                    ),
                );
            }
        }
        for &(start, last) in &sorted {
            if let Some(r) = self.reserved_hit(start, last) {
                return err(
                    EADDRINUSE,
                    format!(
                        "Allowed range {start:#x}..={last:#x} intersects the reserved range \
                         {:#x}..={:#x}.",
                        r.start, r.last
                    ),
                );
            }
        }
        self.allowed = sorted;
        Ok(())
    }
}
