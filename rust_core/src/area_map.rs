//! The area map: every area of one IOAS, sorted by start IOVA, in leaves of
//! at most `LEAF` areas under one flat array of leaf keys (a two-level
//! B+-tree with no pointers to chase).
//!
//! Why this shape:
//! - A translation reads one key array (small: one u64 per `LEAF` areas, so
//!   its hot part stays in cache) and then one leaf; there is no derived
//!   index to rebuild after a map or unmap, so translations interleaved
//!   with mutations cost the same as translations alone.
//! - A leaf is a fixed, cache-line aligned array of `LEAF` slots (unused
//!   ones hold a start of u64::MAX) led by a summary line of every
//!   `LINE`-th start, so the search inside it reads two lines with a fixed
//!   number of branch-free halvings. Batched lookups of scattered addresses
//!   run as a prefetching pipeline, so their cache misses overlap.
//! - An area costs about 34 bytes in a full leaf (start, last, user address,
//!   prot and its share of the summary line) and nothing per page. Ascending
//!   maps, the common VMM pattern, fill leaves completely because a full
//!   leaf is followed by a new leaf instead of split; other inserts split
//!   at the middle, and removals merge a leaf that falls below a quarter into
//!   a neighbour, so leaves stay at least a quarter full through any churn.
//! - A map or unmap moves at most `LEAF` entries inside a leaf, plus one key
//!   array shift when a leaf is created or dropped (once per `LEAF/2`
//!   inserts at worst).
//!
//! - `fits[j][i]` says how much leaf i's best hole offers an allocation
//!   aligned to `PAGE_SIZE << j`, so IOVA allocation steps over leaves that
//!   cannot fit it, whatever its length, alignment and page offset
//!   (find_hole), and `blocks` does the same for runs of 64 leaves; a radix
//!   directory over the keys,
//!   built once enough translations ran since the last change and dropped
//!   by any change, shortens the key search (Radix).
//!
//! Invariants: leaves are non-empty and sorted, `keys[i]` is the start of
//! leaf i's first area, every start in leaf i is below `keys[i + 1]`,
//! `fits[j][i]` is STALE or exactly leaf i's summary (hole_fits), a
//! `blocks[j][b]` is STALE or exactly the largest summary of block b's
//! leaves (all then computed), a built
//! radix directory describes the current keys, and `len` is the number of
//! areas. Areas never overlap (the caller's rule). `check()` asserts all of
//! these and the tests call it throughout.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::io_pagetable::{Area, PAGE_SIZE};
use crate::slab_pool::{Node, SlabPool};

/// Most areas in one leaf.
pub const LEAF: usize = 64;

/// Addresses a batched translation handles in one mode (see translate_run).
const BLOCK: usize = 256;

/// How far ahead of the address being translated the pipeline reads.
const PREFETCH: usize = 4;

/// A hint that `p` will be read soon; never faults, whatever p is.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint with no architectural effect.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// See AreaMap::near.
enum Near {
    Area((usize, usize)),
    Gap,
    Far,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tail {
    last: u64,
    user_va: u64,
    prot: u32,
}

/// Allocation alignments the hole summaries answer for: `PAGE_SIZE << j`
/// for j below this, 4 KiB to 2 MiB, the allocator's whole range.
pub const ALIGN_CLASSES: usize = 10;

/// A summary not computed since its leaf (or the next key) changed. It
/// passes every test, and the first allocation that reaches it computes it.
const STALE: u64 = u64::MAX;

/// Leaves per block of hole summaries (`blocks`).
const FIT_BLOCK: usize = 64;

/// A start no area has (an area's iova is below 2^64-1), filling unused slots.
const EMPTY: u64 = u64::MAX;

/// Starts per cache line; `summary` holds the first start of each line.
const LINE: usize = 8;

/// Cache-line aligned, so that `summary` is one line and each run of `LINE`
/// starts is one line: a search inside the leaf reads two lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Leaf {
    summary: [u64; LEAF / LINE],
    starts: [u64; LEAF],
    tails: [Tail; LEAF],
    len: usize,
}

impl Leaf {
    fn new() -> Leaf {
        Leaf {
            summary: [EMPTY; LEAF / LINE],
            starts: [EMPTY; LEAF],
            tails: [Tail::default(); LEAF],
            len: 0,
        }
    }

    fn with(area: Area) -> Leaf {
        let mut leaf = Leaf::new();
        leaf.put(0, area);
        leaf
    }

    fn area(&self, k: usize) -> Area {
        let t = self.tails[k];
        Area {
            iova: self.starts[k],
            last: t.last,
            user_va: t.user_va,
            prot: t.prot,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Insert at slot `pos`, shifting the slots above it up (len < LEAF).
    fn put(&mut self, pos: usize, area: Area) {
        let n = self.len;
        self.starts.copy_within(pos..n, pos + 1);
        self.tails.copy_within(pos..n, pos + 1);
        self.starts[pos] = area.iova;
        self.tails[pos] = Tail {
            last: area.last,
            user_va: area.user_va,
            prot: area.prot,
        };
        self.len = n + 1;
        self.summarize();
    }

    fn summarize(&mut self) {
        for (line, first) in self.summary.iter_mut().enumerate() {
            *first = self.starts[line * LINE];
        }
    }

    fn take(&mut self, k: usize) -> Area {
        let area = self.area(k);
        let n = self.len;
        self.starts.copy_within(k + 1..n, k);
        self.tails.copy_within(k + 1..n, k);
        self.starts[n - 1] = EMPTY;
        self.len = n - 1;
        self.summarize();
        area
    }

    /// Move the slots from `at` up to the end of `dst` (which has room).
    fn move_to(&mut self, at: usize, dst: &mut Leaf) {
        let (n, d) = (self.len, dst.len);
        dst.starts[d..d + n - at].copy_from_slice(&self.starts[at..n]);
        dst.tails[d..d + n - at].copy_from_slice(&self.tails[at..n]);
        self.starts[at..n].fill(EMPTY);
        dst.len = d + n - at;
        self.len = at;
        self.summarize();
        dst.summarize();
    }

    /// The last slot whose start is at or below q, given that slot 0's is.
    /// The line's tails are fetched alongside its starts, so a lone lookup
    /// waits for two lines in a row (summary, then starts and tail), not three.
    #[inline(always)]
    fn floor(&self, q: u64) -> usize {
        let line = self.floor_line(q);
        let tails = self.tails[line * LINE..].as_ptr();
        // A line's 8 tails are 192 bytes: three cache lines.
        prefetch(tails);
        prefetch(tails.wrapping_add(LINE * 3 / 8));
        prefetch(tails.wrapping_add(LINE * 6 / 8));
        self.floor_from(line, q)
    }

    /// The last line whose first start is at or below q (q at or above slot 0's).
    #[inline(always)]
    fn floor_line(&self, q: u64) -> usize {
        // Arithmetic, not branches: random addresses would mispredict half the time.
        let mut line = 0;
        let mut half = LEAF / LINE / 2;
        while half > 0 {
            line += half * usize::from(self.summary[line + half] <= q);
            half /= 2;
        }
        line
    }

    /// The last slot at or below q within `line`.
    #[inline(always)]
    fn floor_from(&self, line: usize, q: u64) -> usize {
        let mut k = line * LINE;
        let mut half = LINE / 2;
        while half > 0 {
            k += half * usize::from(self.starts[k + half] <= q);
            half /= 2;
        }
        // Only q = 2^64-1 reaches the EMPTY slots; the last area is its floor.
        k.min(self.len - 1)
    }
}

#[derive(Debug, Default)]
pub struct AreaMap {
    keys: Vec<u64>,
    leaves: Vec<Node<Leaf>>,
    /// Where the leaves live (slab_pool.rs: huge-page slabs for large maps).
    pool: SlabPool<Leaf>,
    /// For each alignment class j and leaf i: over the holes of leaf i
    /// (between its areas, and after its last one up to the next key or the
    /// top of the space), the most bytes a hole holds from its first
    /// `PAGE_SIZE << j`-aligned address on (hole_fits). An allocation of
    /// `length` bytes at that alignment and page offset `offset` fits some
    /// hole of the leaf exactly when the summary is at least
    /// `offset + length`, so allocation skips leaves that cannot fit it,
    /// reading 8 contiguous bytes per leaf instead of walking every area;
    /// a summary that only counted hole lengths would let every leaf whose
    /// holes are long enough but misaligned through (sub-page maps leave a
    /// sub-page hole in each page), making allocation quadratic. Changes
    /// only mark a summary STALE (ten stores); the allocation that reaches
    /// it computes it once (one pass over the leaf), so maps and unmaps
    /// with FIXED_IOVA never pay for it. Class-major, so a scan reads one
    /// contiguous array.
    fits: [Vec<u64>; ALIGN_CLASSES],
    /// For each alignment class j and block b of FIT_BLOCK leaves (b * 64
    /// on): the largest of their `fits[j]`, or STALE. A scan steps over a
    /// block that cannot fit with one read, so it reads about n / 4096
    /// blocks and at most two blocks' leaves, not n / 64 leaves. A leaf's
    /// change marks its block STALE; a leaf added or dropped shifts the
    /// leaves after it, so it marks every block from its own on STALE (a
    /// store per block, once per LEAF / 4 maps or unmaps at most), and the
    /// next allocation recomputes the blocks it reaches (64 contiguous
    /// reads each).
    blocks: [Vec<u64>; ALIGN_CLASSES],
    /// A radix directory over `keys`, built once enough translations ran
    /// since the last change (radix_for) and dropped by any insert or
    /// remove (see Radix).
    radix: OnceLock<Radix>,
    /// Translations since the last change (see radix_for).
    lookups: AtomicUsize,
    /// The leaf of the last leaf_of_near search: only a guess, checked
    /// before use, so racing readers may overwrite it freely.
    hint: AtomicUsize,
    len: usize,
}

/// Buckets of equal IOVA width over the key range, each recording how many
/// keys lie below it, so that finding a key is one bucket read and a search
/// among the few keys of that bucket instead of a binary search over all of
/// them (18 dependent reads at 16M areas). Any key distribution is correct;
/// a skewed one only makes some buckets hold more keys. Building costs one
/// pass over the keys (one per 64 areas), so only batches large enough to
/// repay it build one.
#[derive(Debug)]
struct Radix {
    min: u64,
    shift: u32,
    below: Vec<u32>,
}

impl Radix {
    fn build(keys: &[u64]) -> Radix {
        let (min, max) = (keys[0], keys[keys.len() - 1]);
        let want = (2 * keys.len()).next_power_of_two() as u64;
        let span = max - min;
        let mut shift = 0;
        while (span >> shift) >= want {
            shift += 1;
        }
        let buckets = (span >> shift) as usize + 1;
        let mut below = Vec::with_capacity(buckets + 1);
        let mut k = 0;
        for b in 0..=buckets {
            let start = min as u128 + ((b as u128) << shift);
            while k < keys.len() && (keys[k] as u128) < start {
                k += 1;
            }
            below.push(k as u32);
        }
        Radix { min, shift, below }
    }

    /// The last key at or below q, as `AreaMap::leaf_of`, in the three
    /// steps the pipeline separates.
    #[inline(always)]
    fn leaf_of(&self, keys: &[u64], q: u64) -> Option<usize> {
        let b = self.bucket(q)?;
        let (lo, hi) = self.keys_of(keys.len(), b);
        Some(Radix::pick(keys, lo, hi, q))
    }

    /// q's bucket; None below the first key, where no leaf holds q. Past
    /// the last bucket the index is `below.len() - 1`, which keys_of reads
    /// as "after every key".
    #[inline(always)]
    fn bucket(&self, q: u64) -> Option<usize> {
        let b = (q.checked_sub(self.min)? >> self.shift) as usize;
        Some(b.min(self.below.len() - 1))
    }

    /// [lo, hi): the keys that may be the answer for an address in bucket b;
    /// every key below lo is at or below any such address, so lo - 1 is the
    /// answer when none of them is.
    #[inline(always)]
    fn keys_of(&self, nkeys: usize, b: usize) -> (usize, usize) {
        if b + 1 >= self.below.len() {
            return (nkeys - 1, nkeys); // above the last bucket: the last key
        }
        (self.below[b] as usize, self.below[b + 1] as usize)
    }

    #[inline(always)]
    fn pick(keys: &[u64], lo: usize, hi: usize, q: u64) -> usize {
        lo + keys[lo..hi].partition_point(|&k| k <= q) - 1
    }
}

/// Pipeline distance between stages, the depth of the pipeline, and its
/// ring of per-address state (a power of two above DEPTH).
const D: usize = PREFETCH;
const DEPTH: usize = 5 * D;
const RING: usize = (DEPTH + 1).next_power_of_two();
const NONE: usize = usize::MAX;

/// The state of one run_scattered pipeline.
struct Scatter<'a> {
    map: &'a AreaMap,
    iovas: &'a [u64],
    radix: Option<&'a Radix>,
    start: usize,
    end: usize,
    /// Per address in flight: (bucket | lo | leaf, hi | line | slot).
    ring: [(usize, usize); RING],
    mapped: usize,
    repeats: usize,
    hit: Option<(usize, usize)>,
}

impl Scatter<'_> {
    /// The address `back` steps behind `t`, if there is one in the range.
    /// Only the first and last DEPTH steps need the check (GUARD); in the
    /// steady loop every stage's address is in range.
    #[inline(always)]
    fn at<const GUARD: bool>(&self, t: usize, back: usize) -> Option<usize> {
        if GUARD {
            t.checked_sub(back)
                .filter(|&j| j >= self.start && j < self.end)
        } else {
            Some(t - back)
        }
    }

    /// Move every address in flight one stage on.
    #[inline(always)]
    fn step<const GUARD: bool>(&mut self, t: usize, pas: &mut [u64], prots: &mut [u8]) {
        let (map, iovas) = (self.map, self.iovas);
        // Stage 1: the radix bucket.
        if let Some(j) = self.at::<GUARD>(t, 0) {
            self.ring[j % RING] = match self.radix.and_then(|r| r.bucket(iovas[j]).map(|b| (r, b)))
            {
                Some((r, b)) => {
                    prefetch(r.below[b..].as_ptr());
                    (b, NONE)
                }
                None => (NONE, NONE),
            };
        }
        // Stage 2: the bucket's key range.
        if let Some(j) = self.at::<GUARD>(t, D) {
            if let (Some(r), (b, _)) = (self.radix, self.ring[j % RING]) {
                if b != NONE {
                    let (lo, hi) = r.keys_of(map.keys.len(), b);
                    prefetch(map.keys[lo..].as_ptr());
                    self.ring[j % RING] = (lo, hi);
                }
            }
        }
        // Stage 3: the leaf.
        if let Some(j) = self.at::<GUARD>(t, 2 * D) {
            let q = iovas[j];
            let li = match self.radix {
                Some(_) => {
                    let (lo, hi) = self.ring[j % RING];
                    if lo == NONE {
                        NONE
                    } else {
                        Radix::pick(&map.keys, lo, hi, q)
                    }
                }
                None => map.leaf_of(q).unwrap_or(NONE),
            };
            if li != NONE {
                prefetch(map.leaves[li].summary.as_ptr());
            }
            self.ring[j % RING] = (li, NONE);
        }
        // Stage 4: the line of starts.
        if let Some(j) = self.at::<GUARD>(t, 3 * D) {
            let li = self.ring[j % RING].0;
            if li != NONE {
                let leaf = &map.leaves[li];
                let line = leaf.floor_line(iovas[j]);
                prefetch(leaf.starts[line * LINE..].as_ptr());
                self.ring[j % RING].1 = line;
            }
        }
        // Stage 5: the slot, and its tail.
        if let Some(j) = self.at::<GUARD>(t, 4 * D) {
            let (li, line) = self.ring[j % RING];
            if li != NONE {
                let leaf = &map.leaves[li];
                let k = leaf.floor_from(line, iovas[j]);
                prefetch(&leaf.tails[k]);
                self.ring[j % RING].1 = k;
            }
        }
        // Emit.
        if let Some(i) = self.at::<GUARD>(t, DEPTH) {
            let (li, k) = self.ring[i % RING];
            let slot = (li != NONE).then_some((li, k));
            if map.emit(slot, iovas[i], &mut pas[i], &mut prots[i]) {
                self.mapped += 1;
                self.repeats += usize::from(slot == self.hit);
                self.hit = slot;
            }
        }
    }
}

impl AreaMap {
    pub fn new() -> Self {
        AreaMap::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        *self = AreaMap::default();
    }

    /// The leaf whose key range holds `iova`: the last leaf keyed at or below it.
    #[inline]
    fn leaf_of(&self, iova: u64) -> Option<usize> {
        self.keys.partition_point(|&k| k <= iova).checked_sub(1)
    }

    /// `leaf_of` for the table's own operations, which cluster: a batch of
    /// maps or unmaps works on neighbouring areas, and first-fit allocation
    /// starts at the lowest address. The leaf used last and leaf 0 are
    /// checked before the binary search (14 dependent reads at 1M areas).
    #[inline]
    fn leaf_of_near(&self, iova: u64) -> Option<usize> {
        let hint = self.hint.load(Relaxed);
        if self.owns(hint, iova) {
            return Some(hint);
        }
        if hint != 0 && self.owns(0, iova) {
            return Some(0);
        }
        let li = self.leaf_of(iova)?;
        self.hint.store(li, Relaxed);
        Some(li)
    }

    /// Whether leaf `li` exists and its key range holds `iova`.
    #[inline(always)]
    fn owns(&self, li: usize, iova: u64) -> bool {
        self.keys.get(li).is_some_and(|&k| k <= iova)
            && self.keys.get(li + 1).is_none_or(|&next| iova < next)
    }

    /// floor_slot through leaf_of_near.
    #[inline]
    fn floor_slot_near(&self, iova: u64) -> Option<(usize, usize)> {
        let li = self.leaf_of_near(iova)?;
        Some((li, self.leaves[li].floor(iova)))
    }

    /// (leaf, slot) of the last area starting at or below `iova`.
    #[inline]
    fn floor_slot(&self, iova: u64) -> Option<(usize, usize)> {
        let li = self.leaf_of(iova)?;
        // The leaf's first start is its key, so at least one start is <= iova.
        Some((li, self.leaves[li].floor(iova)))
    }

    /// The last area starting at or below `iova`.
    pub fn floor(&self, iova: u64) -> Option<Area> {
        self.floor_slot_near(iova)
            .map(|(li, k)| self.leaves[li].area(k))
    }

    /// The first area starting at or above `iova`.
    pub fn ceil(&self, iova: u64) -> Option<Area> {
        let li = self.leaf_of_near(iova).unwrap_or(0);
        let leaf = self.leaves.get(li)?;
        let k = leaf.starts[..leaf.len].partition_point(|&s| s < iova);
        if k < leaf.len() {
            return Some(leaf.area(k));
        }
        self.leaves.get(li + 1).map(|next| next.area(0))
    }

    /// The area containing `iova`, as (user address, prot) for `iova`.
    #[inline]
    pub fn translate(&self, iova: u64) -> Option<(u64, u32)> {
        let li = match self.radix_for(1) {
            Some(r) => r.leaf_of(&self.keys, iova)?,
            None => self.leaf_of(iova)?,
        };
        let leaf = &self.leaves[li];
        let k = leaf.floor(iova);
        let t = leaf.tails[k];
        (iova <= t.last).then(|| (t.user_va.wrapping_add(iova - leaf.starts[k]), t.prot))
    }

    /// The radix directory, once `lookups` more translations bring those
    /// since the last change to a sixteenth of the key count: then building
    /// it (one pass over the keys) costs at most 16 sequential key reads per
    /// lookup, and it saves a binary search (up to 18 dependent, often
    /// missing, reads) on every lookup after. A table that changes more
    /// often than that is searched directly.
    #[inline]
    fn radix_for(&self, lookups: usize) -> Option<&Radix> {
        if let Some(r) = self.radix.get() {
            return Some(r);
        }
        if self.keys.len() < 1024 {
            return None;
        }
        // Racing readers may lose counts: it only delays the build.
        let seen = self.lookups.load(Relaxed).saturating_add(lookups);
        self.lookups.store(seen, Relaxed);
        (seen >= self.keys.len() / 16).then(|| self.radix.get_or_init(|| Radix::build(&self.keys)))
    }

    /// Translate a run of addresses; returns how many were mapped.
    ///
    /// The run goes in blocks, each in one of two modes chosen by how the
    /// previous block went. Clustered or sorted addresses mostly fall in the
    /// area found last, which is tried before any search. Scattered ones
    /// are searched in a software pipeline: the leaf of the address
    /// `2 * PREFETCH` ahead and the line of the one `PREFETCH` ahead are
    /// found and prefetched, so that each address's search reads lines that
    /// are already arriving instead of waiting for them one after another.
    pub fn translate_run(&self, iovas: &[u64], pas: &mut [u64], prots: &mut [u8]) -> usize {
        let n = iovas.len().min(pas.len()).min(prots.len());
        let radix = self.radix_for(n);
        let mut mapped = 0;
        let mut hit: Option<(usize, usize)> = None;
        let mut clustered = true;
        let mut start = 0;
        while start < n {
            let end = (start + BLOCK).min(n);
            let (m, repeats) = if clustered {
                self.run_clustered(start..end, iovas, pas, prots, &mut hit)
            } else {
                self.run_scattered(start..end, iovas, pas, prots, &mut hit, radix)
            };
            mapped += m;
            clustered = repeats * 2 >= end - start;
            start = end;
        }
        mapped
    }

    #[inline(always)]
    fn emit(&self, slot: Option<(usize, usize)>, iova: u64, pa: &mut u64, prot: &mut u8) -> bool {
        if let Some((li, k)) = slot {
            let leaf = &self.leaves[li];
            let t = &leaf.tails[k];
            if leaf.starts[k] <= iova && iova <= t.last {
                *pa = t.user_va.wrapping_add(iova - leaf.starts[k]);
                *prot = t.prot as u8;
                return true;
            }
        }
        *pa = 0;
        *prot = 0;
        false
    }

    /// Per address, the last area and the one after it first, so sorted
    /// addresses walk the areas instead of searching for each one. Returns
    /// (mapped, addresses settled without a search).
    fn run_clustered(
        &self,
        range: std::ops::Range<usize>,
        iovas: &[u64],
        pas: &mut [u64],
        prots: &mut [u8],
        hit: &mut Option<(usize, usize)>,
    ) -> (usize, usize) {
        let (mut mapped, mut repeats) = (0, 0);
        for i in range {
            let iova = iovas[i];
            let slot = match self.near(*hit, iova) {
                Near::Area(slot) => {
                    repeats += 1;
                    Some(slot)
                }
                Near::Gap => {
                    repeats += 1;
                    None
                }
                Near::Far => self.floor_slot_after(*hit, iova),
            };
            if self.emit(slot, iova, &mut pas[i], &mut prots[i]) {
                mapped += 1;
                *hit = slot;
            }
        }
        (mapped, repeats)
    }

    /// floor_slot for an address that sorted input brought past the area
    /// at `slot`: its leaf or the next one usually holds the answer, which
    /// their keys tell without a search of the key array.
    #[inline(always)]
    fn floor_slot_after(&self, slot: Option<(usize, usize)>, iova: u64) -> Option<(usize, usize)> {
        if let Some((li, _)) = slot {
            if let Some(l) = (li..li + 2).find(|&l| self.owns(l, iova)) {
                return Some((l, self.leaves[l].floor(iova)));
            }
        }
        self.floor_slot(iova)
    }

    /// Where `iova` lies seen from the area at `slot`: in it or in the next
    /// area, in the hole between them (or above the last area), or elsewhere.
    #[inline(always)]
    fn near(&self, slot: Option<(usize, usize)>, iova: u64) -> Near {
        let Some((li, k)) = slot else {
            return Near::Far;
        };
        let leaf = &self.leaves[li];
        if iova < leaf.starts[k] {
            return Near::Far;
        }
        if iova <= leaf.tails[k].last {
            return Near::Area((li, k));
        }
        let (nl, nk) = if k + 1 < leaf.len {
            (li, k + 1)
        } else if li + 1 < self.leaves.len() {
            (li + 1, 0)
        } else {
            return Near::Gap; // above the last area
        };
        let next = &self.leaves[nl];
        if iova < next.starts[nk] {
            return Near::Gap;
        }
        if iova <= next.tails[nk].last {
            return Near::Area((nl, nk));
        }
        Near::Far
    }

    /// The prefetching pipeline. Returns (mapped, repeats of the area before).
    ///
    /// Each address passes through five stages, `PREFETCH` addresses apart,
    /// and every stage prefetches what the next one reads: the radix bucket,
    /// then the keys it names, then the leaf's summary line, then one line
    /// of starts, then the area's tail. An address's misses are thus
    /// dependent but each waits while `5 * PREFETCH` other addresses' misses
    /// are in flight. Without a radix directory the key search (over a key
    /// array small enough to stay cached) is done at once in stage three.
    fn run_scattered(
        &self,
        range: std::ops::Range<usize>,
        iovas: &[u64],
        pas: &mut [u64],
        prots: &mut [u8],
        hit: &mut Option<(usize, usize)>,
        radix: Option<&Radix>,
    ) -> (usize, usize) {
        let (start, end) = (range.start, range.end);
        let mut p = Scatter {
            map: self,
            iovas,
            radix,
            start,
            end,
            ring: [(NONE, NONE); RING],
            mapped: 0,
            repeats: 0,
            hit: *hit,
        };
        let steady = (start + DEPTH).min(end)..end;
        for t in start..steady.start {
            p.step::<true>(t, pas, prots);
        }
        for t in steady.clone() {
            p.step::<false>(t, pas, prots);
        }
        for t in steady.end.max(steady.start)..end + DEPTH {
            p.step::<true>(t, pas, prots);
        }
        *hit = p.hit;
        (p.mapped, p.repeats)
    }

    /// Add an area; its start must not be present (areas are disjoint).
    pub fn insert(&mut self, area: Area) {
        self.radix.take();
        self.lookups.store(0, Relaxed);
        self.len += 1;
        if self.leaves.is_empty() {
            self.keys.push(area.iova);
            self.leaves.push(self.pool.alloc(Leaf::with(area)));
            self.fits_insert(0);
            return;
        }
        // Below every key, the area goes to the front of the first leaf.
        let li = self.leaf_of_near(area.iova).unwrap_or(0);
        let leaf = &self.leaves[li];
        let pos = leaf.starts[..leaf.len].partition_point(|&s| s < area.iova);
        debug_assert!(
            leaf.starts[..leaf.len].get(pos) != Some(&area.iova),
            "duplicate start"
        );
        if leaf.len() == LEAF {
            if pos == LEAF
                && self
                    .leaves
                    .get(li + 1)
                    .is_some_and(|next| next.len() < LEAF)
            {
                // Past a full leaf, before one with room: the next leaf's front.
                self.leaves[li + 1].put(0, area);
                self.keys[li + 1] = area.iova;
                self.refresh_gap(li);
                self.refresh_gap(li + 1);
                return;
            }
            if pos == LEAF {
                // Past a full leaf, before a full one (or none): start a new
                // leaf between them and keep this one full. Ascending maps,
                // wherever they land, then fill whole leaves and add a key
                // once per LEAF maps, not once per LEAF / 2 as middle splits
                // would; descending ones fill the new leaf from its front.
                self.keys.insert(li + 1, area.iova);
                let leaf = self.pool.alloc(Leaf::with(area));
                self.leaves.insert(li + 1, leaf);
                self.fits_insert(li + 1);
                self.refresh_gap(li);
                return;
            }
            self.split(li);
        }
        // After a split the area belongs to the right half if it sorts there.
        let li = if li + 1 < self.keys.len() && area.iova >= self.keys[li + 1] {
            li + 1
        } else {
            li
        };
        let leaf = &mut self.leaves[li];
        let pos = leaf.starts[..leaf.len].partition_point(|&s| s < area.iova);
        leaf.put(pos, area);
        self.refresh_gap(li);
        if pos == 0 {
            self.keys[li] = area.iova;
            self.refresh_key_change(li);
        }
    }

    /// Leaf i's holes changed: its summaries are STALE until an allocation
    /// needs them. They depend on the leaf's areas and on the next leaf's
    /// key only, so a change inside a leaf refreshes that leaf, and a
    /// changed key also its predecessor (refresh_key_change).
    fn refresh_gap(&mut self, i: usize) {
        for class in &mut self.fits {
            class[i] = STALE;
        }
        for class in &mut self.blocks {
            class[i / FIT_BLOCK] = STALE;
        }
    }

    /// A new leaf at index i, its summaries STALE.
    fn fits_insert(&mut self, i: usize) {
        for class in &mut self.fits {
            class.insert(i, STALE);
        }
        self.blocks_shifted(i);
    }

    fn fits_remove(&mut self, i: usize) {
        for class in &mut self.fits {
            class.remove(i);
        }
        self.blocks_shifted(i);
    }

    /// Leaves from index i on moved: their blocks are STALE, and there is
    /// one block per FIT_BLOCK leaves.
    fn blocks_shifted(&mut self, i: usize) {
        let n = self.fits[0].len().div_ceil(FIT_BLOCK);
        for class in &mut self.blocks {
            class.resize(n, STALE);
            for b in class.iter_mut().skip(i / FIT_BLOCK) {
                *b = STALE;
            }
        }
    }

    /// Block b's largest summary of class j, computed (with its leaves'
    /// summaries) if STALE.
    fn block_fit(&mut self, class: usize, b: usize) -> u64 {
        if self.blocks[class][b] == STALE {
            let leaves = b * FIT_BLOCK..((b + 1) * FIT_BLOCK).min(self.leaves.len());
            for li in leaves.clone() {
                self.summarize_holes(li);
            }
            self.blocks[class][b] = self.fits[class][leaves].iter().copied().max().unwrap_or(0);
        }
        self.blocks[class][b]
    }

    /// Leaf i's summaries (see `fits`): per alignment class, the most bytes
    /// a hole holds from its first aligned address on. One pass over the
    /// leaf's holes.
    fn hole_fits(&self, i: usize) -> [u64; ALIGN_CLASSES] {
        let mut best = [0u64; ALIGN_CLASSES];
        let mut hole = |start: u64, len: u64| {
            if len == 0 {
                return;
            }
            // Bytes from `start` up to the next multiple of the alignment
            // (or past 2^64, where len is smaller: the hole cannot fit).
            let up = start.wrapping_neg();
            for (j, b) in best.iter_mut().enumerate() {
                let skip = up & ((PAGE_SIZE << j) - 1);
                *b = (*b).max(len.saturating_sub(skip));
            }
        };
        let leaf = &self.leaves[i];
        let n = leaf.len;
        for k in 1..n {
            let after = leaf.tails[k - 1].last + 1;
            hole(after, leaf.starts[k] - after);
        }
        if let Some(after) = leaf.tails[n - 1].last.checked_add(1) {
            // Up to the next key, or to 2^64-1 inclusive (after >= 1, so
            // the length fits).
            let len = match self.keys.get(i + 1) {
                Some(&next) => next - after,
                None => u64::MAX - after + 1,
            };
            hole(after, len);
        }
        best
    }

    /// Compute leaf i's summaries if they are STALE.
    fn summarize_holes(&mut self, i: usize) {
        if self.fits[0][i] == STALE {
            let fits = self.hole_fits(i);
            for (class, f) in self.fits.iter_mut().zip(fits) {
                class[i] = f;
            }
        }
    }

    fn refresh_key_change(&mut self, li: usize) {
        if li > 0 {
            self.refresh_gap(li - 1);
        }
    }

    /// Offer `visit`, in ascending order, every hole (start, last) of at
    /// least `need` addresses that ends at or above `from` (the first one
    /// clipped to start at `from`), stepping over leaves none of whose holes
    /// can hold `need` bytes at page offset `offset` from an `align`-aligned
    /// address (a power of two from PAGE_SIZE to PAGE_SIZE << 9); `visit`
    /// returns Some to stop with that value. One pass, no search per hole:
    /// the cost is the blocks of 64 leaves skipped (8 bytes each), the
    /// leaves of the blocks entered (8 bytes each), the summaries STALE
    /// since an allocation last reached them (a pass over each changed
    /// leaf, 64 reads per shifted block), and the areas of the leaves
    /// entered. A block or leaf is entered only if one of its holes
    /// fits, so a scan enters at most the leaf holding `from`, the leaves
    /// whose fitting holes `visit` refuses (reserved ranges, the window's
    /// end) and the leaf where it stops.
    pub fn find_hole<T>(
        &mut self,
        from: u64,
        need: u64,
        align: u64,
        offset: u64,
        mut visit: impl FnMut(u64, u64) -> Option<T>,
    ) -> Option<T> {
        assert!(
            align.is_power_of_two()
                && (PAGE_SIZE..=PAGE_SIZE << (ALIGN_CLASSES - 1)).contains(&align)
                && offset < PAGE_SIZE,
            "find_hole: alignment {align:#x} or offset {offset:#x} out of range"
        );
        let class = (align / PAGE_SIZE).trailing_zeros() as usize;
        // need < 2^64 - PAGE_SIZE whenever a hole could hold it.
        let want = need.saturating_add(offset);
        let long_enough = |start: u64, last: u64| start <= last && last - start >= need.max(1) - 1;
        let Some(&first) = self.keys.first() else {
            return visit(from, u64::MAX);
        };
        let (mut li, mut k) = if from < first {
            if long_enough(from, first - 1) {
                if let Some(found) = visit(from, first - 1) {
                    return Some(found);
                }
            }
            (0, 0)
        } else {
            self.floor_slot_near(from)?
        };
        while li < self.leaves.len() {
            if li.is_multiple_of(FIT_BLOCK) && self.block_fit(class, li / FIT_BLOCK) < want {
                // The fast path: 64 leaves that cannot fit, in one read.
                li += FIT_BLOCK;
                k = 0;
                continue;
            }
            if self.fits[class][li] < want {
                li += 1;
                k = 0;
                continue;
            }
            self.summarize_holes(li);
            if self.fits[class][li] < want {
                li += 1;
                k = 0;
                continue;
            }
            let leaf = &self.leaves[li];
            while k < leaf.len {
                let after = leaf.tails[k].last.checked_add(1)?; // nothing above 2^64-1
                let last = if k + 1 < leaf.len {
                    leaf.starts[k + 1] - 1
                } else {
                    self.keys.get(li + 1).map_or(u64::MAX, |&next| next - 1)
                };
                let start = after.max(from);
                if long_enough(start, last) {
                    if let Some(found) = visit(start, last) {
                        return Some(found);
                    }
                }
                k += 1;
            }
            li += 1;
            k = 0;
        }
        None
    }

    fn split(&mut self, li: usize) {
        let mut right = self.pool.alloc(Leaf::new());
        self.leaves[li].move_to(LEAF / 2, &mut right);
        self.keys.insert(li + 1, right.starts[0]);
        self.leaves.insert(li + 1, right);
        self.fits_insert(li + 1);
        self.refresh_gap(li);
    }

    /// Remove the area starting exactly at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Area> {
        let (li, k) = self.floor_slot_near(start)?;
        if self.leaves[li].starts[k] != start {
            return None;
        }
        self.radix.take();
        self.lookups.store(0, Relaxed);
        let leaf = &mut self.leaves[li];
        let area = leaf.take(k);
        self.len -= 1;
        if leaf.len() == 0 {
            self.keys.remove(li);
            let gone = self.leaves.remove(li);
            self.release(gone);
            self.fits_remove(li);
            self.refresh_key_change(li);
            return Some(area);
        }
        if k == 0 {
            self.keys[li] = leaf.starts[0];
            self.refresh_key_change(li);
        }
        self.refresh_gap(li);
        if self.leaves[li].len() < LEAF / 4 {
            self.merge_small(li);
        }
        Some(area)
    }

    /// Fold an underfull leaf into a neighbour when they fit in one.
    fn merge_small(&mut self, li: usize) {
        let n = self.leaves[li].len();
        let (into, from) = if li + 1 < self.leaves.len() && self.leaves[li + 1].len() + n <= LEAF {
            (li, li + 1)
        } else if li > 0 && self.leaves[li - 1].len() + n <= LEAF {
            (li - 1, li)
        } else {
            return;
        };
        let mut absorbed = self.leaves.remove(from);
        self.keys.remove(from);
        self.fits_remove(from);
        absorbed.move_to(0, &mut self.leaves[into]);
        self.release(absorbed);
        self.refresh_gap(into);
    }

    /// Return a dropped leaf to the pool; once the pool is mostly free
    /// (the table shrank), move the live leaves into a fresh one so the
    /// memory goes back.
    fn release(&mut self, leaf: Node<Leaf>) {
        self.pool.release(leaf);
        if self.pool.worth_compacting() {
            self.pool.compact(&mut self.leaves);
        }
    }

    /// Every area in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = Area> + '_ {
        self.leaves
            .iter()
            .flat_map(|leaf| (0..leaf.len()).map(move |k| leaf.area(k)))
    }

    /// Leaves in use (tests check how full they are kept).
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// Heap bytes held, for the memory benchmark: keys, hole summaries, leaf handles,
    /// every slab of the pool (slack included) and the radix directory.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8
            + self.fits.iter().map(|c| c.capacity() * 8).sum::<usize>()
            + self.blocks.iter().map(|c| c.capacity() * 8).sum::<usize>()
            + self.leaves.capacity() * std::mem::size_of::<Node<Leaf>>()
            + self.pool.slab_bytes()
            + self.radix.get().map_or(0, |r| r.below.capacity() * 4)
    }

    /// Check every invariant (tests).
    pub fn check(&self) {
        assert_eq!(self.keys.len(), self.leaves.len());
        let mut count = 0;
        let mut prev_last: Option<u64> = None;
        for (i, leaf) in self.leaves.iter().enumerate() {
            assert!(leaf.len() > 0 && leaf.len() <= LEAF);
            assert!(
                leaf.starts[leaf.len()..].iter().all(|&s| s == EMPTY),
                "unused slot in use"
            );
            for (line, &first) in leaf.summary.iter().enumerate() {
                assert_eq!(first, leaf.starts[line * LINE], "stale summary");
            }
            assert_eq!(self.keys[i], leaf.starts[0]);
            for k in 0..leaf.len() {
                let a = leaf.area(k);
                assert!(a.iova <= a.last);
                if let Some(p) = prev_last {
                    assert!(p < a.iova, "areas overlap or are unsorted");
                }
                prev_last = Some(a.last);
            }
            count += leaf.len();
        }
        assert_eq!(count, self.len);
        assert_eq!(
            self.pool.live(),
            self.leaves.len(),
            "a leaf left the pool uncounted"
        );
        if let Some(r) = self.radix.get() {
            for (i, &k) in self.keys.iter().enumerate() {
                assert_eq!(
                    r.leaf_of(&self.keys, k),
                    self.leaf_of(k),
                    "radix at key {i}"
                );
                assert_eq!(
                    r.leaf_of(&self.keys, k.saturating_sub(1)),
                    self.leaf_of(k.saturating_sub(1))
                );
            }
        }
        for (j, class) in self.fits.iter().enumerate() {
            assert_eq!(class.len(), self.leaves.len());
            for (i, &f) in class.iter().enumerate() {
                let stale = self.fits[0][i] == STALE;
                assert_eq!(f == STALE, stale, "leaf {i}: classes stale apart");
                if !stale {
                    assert_eq!(f, self.hole_fits(i)[j], "wrong summary {j} of leaf {i}");
                }
            }
            let blocks = &self.blocks[j];
            assert_eq!(blocks.len(), class.len().div_ceil(FIT_BLOCK));
            for (b, &f) in blocks.iter().enumerate() {
                if f != STALE {
                    let leaves = &class[b * FIT_BLOCK..((b + 1) * FIT_BLOCK).min(class.len())];
                    assert!(
                        leaves.iter().all(|&l| l != STALE),
                        "block {b} over stale leaves"
                    );
                    assert_eq!(f, leaves.iter().copied().max().unwrap(), "block {b}");
                }
            }
        }
    }
}
