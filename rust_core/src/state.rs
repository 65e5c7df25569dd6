//! The core's state as bytes, for the daemon's journal snapshots
//! (daemon/iommud/snapshot.py): a table, a domain and a type1 state each
//! become one compact little-endian record, and come back from it. A
//! snapshot holds what a restart cannot rebuild cheaply (a million areas
//! replay in seconds as calls, but load in a fraction of one as records).
//!
//! A record holds the logical state only: the areas, reserved and allowed
//! ranges, options and dirty bits of a table; the entries and dirty ranges
//! of a domain. The search structures are rebuilt on load, and a table's
//! domains are attached again by the daemon (`IoPagetable::attach_filled`)
//! from the HWPTs that hold them, since the link lives in both objects.
//!
//! Loading checks what the structures rely on (sorted, disjoint, in range,
//! counts that fit the bytes) and refuses anything else with EINVAL: the
//! journal checksums every snapshot, so a failure here is a bug or a file
//! written by another version, never something to half-load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::dirty::AreaBits;
use crate::domain::{write_domain, Domain, DomainEntry, RangeSet, SharedDomain};
use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{Area, IoPagetable, Reserved, PROT_MASK};
use crate::type1::Type1Dma;

const IOPT_TAG: u32 = 0x5450_4F49; // "IOPT"
const DOMAIN_TAG: u32 = 0x4E4D_4F44; // "DOMN"
const TYPE1_TAG: u32 = 0x3145_5954; // "TYE1"
/// Bumped whenever a record's layout changes; older records are refused.
const VERSION: u32 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u32, capacity: usize) -> Writer {
        let mut w = Writer(Vec::with_capacity(capacity + 8));
        w.u32(tag);
        w.u32(VERSION);
        w
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], tag: u32, what: &'static str) -> Result<Reader<'a>> {
        let mut r = Reader { data, at: 0, what };
        if r.u32()? != tag {
            return r.bad("it is not such a record");
        }
        let version = r.u32()?;
        if version != VERSION {
            return r.bad(&format!(
                "record version {version}, this core reads {VERSION}"
            ));
        }
        Ok(r)
    }
    fn bad<T>(&self, why: &str) -> Result<T> {
        err(
            EINVAL,
            format!(
                "The snapshot's {} does not load at byte {:#x}: {why}.",
                self.what, self.at
            ),
        )
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.at < n {
            return self.bad("it is cut short");
        }
        let out = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.bad("a flag is neither 0 nor 1"),
        }
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// A count of items of at least `item` bytes each, which the remaining
    /// bytes must be able to hold (so a bad count cannot allocate much).
    fn len(&mut self, item: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.data.len() - self.at) as u64;
        if n > left / item as u64 {
            return self.bad(&format!("a count of {n:#x} does not fit the record"));
        }
        Ok(n as usize)
    }
    fn done(&self) -> Result<()> {
        if self.at != self.data.len() {
            return self.bad("bytes follow the record");
        }
        Ok(())
    }
}

impl IoPagetable {
    /// The table's state as one record (see the module comment). Attached
    /// domains are not in it: each is its own record.
    pub fn to_state(&self) -> Vec<u8> {
        let dirty_words: usize = self.dirty.areas.values().map(|b| b.words.len()).sum();
        let mut w = Writer::new(
            IOPT_TAG,
            64 + self.areas.len() * 28
                + (self.reserved.len() + self.allowed.len()) * 24
                + self.dirty.areas.len() * 24
                + dirty_words * 8,
        );
        w.u64(self.iova_alignment);
        w.u8(self.large_pages_disabled as u8);
        match self.max_areas {
            Some(max) => {
                w.u8(1);
                w.u64(max as u64);
            }
            None => {
                w.u8(0);
                w.u64(0);
            }
        }
        w.len(self.allowed.len());
        for &(start, last) in &self.allowed {
            w.u64(start);
            w.u64(last);
        }
        w.len(self.reserved.len());
        for r in &self.reserved {
            w.u64(r.start);
            w.u64(r.last);
            w.u64(r.owner);
        }
        w.len(self.areas.len());
        for a in self.areas.iter() {
            w.u64(a.iova);
            w.u64(a.last);
            w.u64(a.user_va);
            w.u32(a.prot);
        }
        w.u8(self.dirty.enabled as u8);
        w.len(self.dirty.areas.len());
        for (&iova, bits) in &self.dirty.areas {
            w.u64(iova);
            w.u64(bits.first_page);
            w.u64(bits.pages);
            w.len(bits.words.len());
            for &word in &bits.words {
                w.u64(word);
            }
        }
        w.0
    }

    /// A table from `to_state`'s record, with no domain attached.
    pub fn from_state(data: &[u8]) -> Result<IoPagetable> {
        let mut r = Reader::new(data, IOPT_TAG, "IO page table")?;
        let mut t = IoPagetable::new();
        t.iova_alignment = r.u64()?;
        if !t.iova_alignment.is_power_of_two() {
            return r.bad("the IOVA alignment is not a power of two");
        }
        t.large_pages_disabled = r.bool()?;
        let limited = r.bool()?;
        let max = r.u64()?;
        t.max_areas = limited.then_some(max as usize);
        let n = r.len(16)?;
        t.allowed.reserve(n);
        for _ in 0..n {
            let (start, last) = (r.u64()?, r.u64()?);
            if start > last {
                return r.bad("an allowed range ends before it starts");
            }
            t.allowed.push((start, last));
        }
        let n = r.len(24)?;
        t.reserved.reserve(n);
        for _ in 0..n {
            let res = Reserved {
                start: r.u64()?,
                last: r.u64()?,
                owner: r.u64()?,
            };
            if res.start > res.last {
                return r.bad("a reserved range ends before it starts");
            }
            if t.reserved
                .last()
                .is_some_and(|p| (p.start, p.last) > (res.start, res.last))
            {
                return r.bad("the reserved ranges are out of order");
            }
            t.reserved.push(res);
        }
        let n = r.len(28)?;
        let mut prev_last: Option<u64> = None;
        for _ in 0..n {
            let a = Area {
                iova: r.u64()?,
                last: r.u64()?,
                user_va: r.u64()?,
                prot: r.u32()?,
            };
            if a.iova > a.last || a.prot & !PROT_MASK != 0 {
                return r.bad("an area is malformed");
            }
            if prev_last.is_some_and(|p| p >= a.iova) {
                return r.bad("the areas overlap or are out of order");
            }
            prev_last = Some(a.last);
            t.mapped_bytes += a.length();
            t.areas.insert(a);
        }
        t.dirty.enabled = r.bool()?;
        let n = r.len(32)?;
        for _ in 0..n {
            let iova = r.u64()?;
            let (first_page, pages) = (r.u64()?, r.u64()?);
            let nwords = r.len(8)?;
            if pages == 0 || nwords as u64 != pages.div_ceil(64) {
                return r.bad("an area's dirty bits do not match its pages");
            }
            let Some(area) = t.areas.floor(iova).filter(|a| a.iova == iova) else {
                return r.bad("dirty bits name no area");
            };
            if first_page != area.iova / crate::PAGE_SIZE
                || pages != area.last / crate::PAGE_SIZE - first_page + 1
            {
                return r.bad("an area's dirty bits do not match its pages");
            }
            let mut words = Vec::with_capacity(nwords);
            for _ in 0..nwords {
                words.push(r.u64()?);
            }
            t.dirty.words += words.len();
            t.dirty.areas.insert(
                iova,
                AreaBits {
                    first_page,
                    pages,
                    words,
                },
            );
        }
        r.done()?;
        Ok(t)
    }

    /// Attach a domain that already holds this table's areas (a domain and
    /// a table loaded from one snapshot), without filling it again: the
    /// state iopt_table_add_domain leaves behind. EBUSY when it is attached
    /// elsewhere, EEXIST when here; EINVAL when its entries are not exactly
    /// the table's areas.
    pub fn attach_filled(&mut self, d: &SharedDomain) -> Result<()> {
        if self.domains.iter().any(|x| Arc::ptr_eq(x, d)) {
            return err(EEXIST, "The domain is already attached to this IOAS.");
        }
        let mut dom = write_domain(d);
        if dom.attached {
            return err(EBUSY, "The domain is attached to another IOAS.");
        }
        // A cut splits entries along with areas, so each area is exactly one
        // entry of the same range.
        let mut entries = dom.entries.values();
        let matches = self.areas.len() == dom.entries.len()
            && self.areas.iter().all(|a| {
                entries
                    .next()
                    .is_some_and(|e| (e.iova, e.last) == (a.iova, a.last))
            });
        if !matches {
            return err(
                EINVAL,
                "The domain's entries are not this IOAS's areas; it cannot be attached unfilled.",
            );
        }
        dom.attached = true;
        drop(dom);
        self.domains.push(Arc::clone(d));
        Ok(())
    }
}

impl Domain {
    /// The domain's state as one record, its entries and dirty ranges with it.
    pub fn to_state(&self) -> Vec<u8> {
        let mut w = Writer::new(
            DOMAIN_TAG,
            48 + self.entries.len() * 52 + self.dirty.0.len() * 16,
        );
        w.u64(self.pgsize_bitmap);
        w.u64(self.aperture_start);
        w.u64(self.aperture_last);
        w.u8(self.tracking as u8);
        w.len(self.entries.len());
        for e in self.entries.values() {
            w.u64(e.iova);
            w.u64(e.last);
            w.u64(e.pa);
            w.u32(e.prot);
            w.u64(e.leaf_cap);
            w.u64(e.fill_iova);
            w.u64(e.fill_last);
        }
        w.len(self.dirty.0.len());
        for (&start, &last) in &self.dirty.0 {
            w.u64(start);
            w.u64(last);
        }
        w.0
    }

    /// A domain from `to_state`'s record, not attached: its table attaches
    /// it with `IoPagetable::attach_filled`.
    pub fn from_state(data: &[u8]) -> Result<Domain> {
        let mut r = Reader::new(data, DOMAIN_TAG, "domain")?;
        let (pgsize_bitmap, start, last) = (r.u64()?, r.u64()?, r.u64()?);
        let mut d = match Domain::new(pgsize_bitmap, start, last) {
            Ok(d) => d,
            Err(e) => return r.bad(&e.message),
        };
        d.tracking = r.bool()?;
        let n = r.len(52)?;
        let mut prev_last: Option<u64> = None;
        for _ in 0..n {
            let e = DomainEntry {
                iova: r.u64()?,
                last: r.u64()?,
                pa: r.u64()?,
                prot: r.u32()?,
                leaf_cap: r.u64()?,
                fill_iova: r.u64()?,
                fill_last: r.u64()?,
            };
            if e.iova > e.last || e.fill_iova > e.iova || e.last > e.fill_last {
                return r.bad("an entry is malformed");
            }
            if prev_last.is_some_and(|p| p >= e.iova) {
                return r.bad("the entries overlap or are out of order");
            }
            prev_last = Some(e.last);
            d.mapped_bytes += e.length();
            d.entries.insert(e.iova, e);
        }
        let n = r.len(16)?;
        let mut ranges = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let (start, last) = (r.u64()?, r.u64()?);
            if start > last || prev.is_some_and(|p| p >= start) {
                return r.bad("the dirty ranges overlap or are out of order");
            }
            let inside = d
                .entries
                .range(..=start)
                .next_back()
                .is_some_and(|(_, e)| last <= e.last);
            if !inside {
                return r.bad("a dirty range lies outside the entries");
            }
            prev = Some(last);
            ranges.insert(start, last);
        }
        d.dirty = RangeSet(ranges);
        r.done()?;
        Ok(d)
    }
}

impl Type1Dma {
    pub fn to_state(&self) -> Vec<u8> {
        let mut w = Writer::new(TYPE1_TAG, 32 + self.invalid_vaddr.len() * 8);
        w.u64(self.dma_entry_limit);
        w.u64(self.dma_avail);
        w.u32(self.iommu_type);
        w.u8(self.dirty_started as u8);
        w.len(self.invalid_vaddr.len());
        for &iova in &self.invalid_vaddr {
            w.u64(iova);
        }
        w.0
    }

    pub fn from_state(data: &[u8]) -> Result<Type1Dma> {
        let mut r = Reader::new(data, TYPE1_TAG, "type1 state")?;
        let dma_entry_limit = r.u64()?;
        let dma_avail = r.u64()?;
        if dma_avail > dma_entry_limit {
            return r.bad("more entries are free than the limit");
        }
        let iommu_type = r.u32()?;
        let dirty_started = r.bool()?;
        let n = r.len(8)?;
        let mut invalid_vaddr = BTreeSet::new();
        for _ in 0..n {
            invalid_vaddr.insert(r.u64()?);
        }
        r.done()?;
        Ok(Type1Dma {
            dma_entry_limit,
            dma_avail,
            iommu_type,
            dirty_started,
            invalid_vaddr,
        })
    }
}
