//! The area map: every area of one IOAS, sorted by start IOVA, in leaves of
//! at most `LEAF` areas under one flat array of leaf keys (a two-level
//! B+-tree with no pointers to chase).
//!
//! Why this shape:
//! - A translation reads one key array (small: one u64 per `LEAF` areas, so
//!   its hot part stays in cache) and then one leaf; there is no derived
//!   index to rebuild after a map or unmap, so translations interleaved
//!   with mutations cost the same as translations alone.
//! - An area costs 32 bytes in a full leaf (start, last, user address and
//!   prot) and nothing per page. Ascending maps, the common VMM pattern,
//!   fill leaves completely because a full last leaf is extended with a new
//!   leaf instead of split; other inserts split at the middle, and removals
//!   merge a leaf that falls below a quarter into a neighbour, so leaves
//!   stay at least a quarter full through any churn.
//! - A map or unmap moves at most `LEAF` entries inside a leaf, plus one key
//!   array shift when a leaf is created or dropped (once per `LEAF/2`
//!   inserts at worst).
//!
//! Invariants: leaves are non-empty and sorted, `keys[i]` is the start of
//! leaf i's first area, every start in leaf i is below `keys[i + 1]`, and
//! `len` is the number of areas. Areas never overlap (the caller's rule).

use crate::io_pagetable::Area;

/// Most areas in one leaf.
pub const LEAF: usize = 128;

/// Addresses resolved together by a batched translation.
const GROUP: usize = 16;

/// For each j, narrow `[base[j], base[j] + len[j])` of the sorted `keys` to
/// the last element at or below `q[j]`, one halving step for every j at a
/// time. Leaves base[j] at the first element when none is at or below q[j].
#[inline]
fn lockstep(keys: &[u64], q: &[u64], base: &mut [usize], len: &mut [usize]) {
    while len.iter().any(|&l| l > 1) {
        for j in 0..q.len() {
            let half = len[j] / 2;
            let cand = base[j] + half;
            base[j] = if half > 0 && keys[cand] <= q[j] { cand } else { base[j] };
            len[j] -= half;
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Tail {
    last: u64,
    user_va: u64,
    prot: u32,
}

#[derive(Debug, Default)]
struct Leaf {
    starts: Vec<u64>,
    tails: Vec<Tail>,
}

impl Leaf {
    fn with(area: Area) -> Leaf {
        let mut leaf = Leaf { starts: Vec::with_capacity(LEAF), tails: Vec::with_capacity(LEAF) };
        leaf.starts.push(area.iova);
        leaf.tails.push(Tail { last: area.last, user_va: area.user_va, prot: area.prot });
        leaf
    }

    fn area(&self, k: usize) -> Area {
        let t = self.tails[k];
        Area { iova: self.starts[k], last: t.last, user_va: t.user_va, prot: t.prot }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

#[derive(Debug, Default)]
pub struct AreaMap {
    keys: Vec<u64>,
    leaves: Vec<Leaf>,
    len: usize,
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

    /// (leaf, slot) of the last area starting at or below `iova`.
    #[inline]
    fn floor_slot(&self, iova: u64) -> Option<(usize, usize)> {
        let li = self.leaf_of(iova)?;
        // The leaf's first start is its key, so at least one start is <= iova.
        let k = self.leaves[li].starts.partition_point(|&s| s <= iova) - 1;
        Some((li, k))
    }

    /// The last area starting at or below `iova`.
    pub fn floor(&self, iova: u64) -> Option<Area> {
        self.floor_slot(iova).map(|(li, k)| self.leaves[li].area(k))
    }

    /// The first area starting at or above `iova`.
    pub fn ceil(&self, iova: u64) -> Option<Area> {
        let li = self.leaf_of(iova).unwrap_or(0);
        let leaf = self.leaves.get(li)?;
        let k = leaf.starts.partition_point(|&s| s < iova);
        if k < leaf.len() {
            return Some(leaf.area(k));
        }
        self.leaves.get(li + 1).map(|next| next.area(0))
    }

    /// The area containing `iova`, as (user address, prot) for `iova`.
    #[inline]
    pub fn translate(&self, iova: u64) -> Option<(u64, u32)> {
        let (li, k) = self.floor_slot(iova)?;
        let leaf = &self.leaves[li];
        let t = leaf.tails[k];
        (iova <= t.last).then(|| (t.user_va.wrapping_add(iova - leaf.starts[k]), t.prot))
    }

    /// Translate a run of addresses; returns how many were mapped.
    ///
    /// Sorted or clustered inputs hit the area found last, which is tried
    /// first. The rest are resolved `GROUP` at a time in lockstep: each step
    /// of the two binary searches (keys, then the leaf) is taken for every
    /// address of the group before the next, without branches on the data,
    /// so the group's cache misses overlap instead of queueing one behind
    /// another.
    pub fn translate_run(&self, iovas: &[u64], pas: &mut [u64], prots: &mut [u8]) -> usize {
        let n = iovas.len().min(pas.len()).min(prots.len());
        let mut mapped = 0;
        let mut hit: Option<(usize, usize)> = None;
        let mut pending = [0usize; GROUP];
        let mut start = 0;
        while start < n {
            let end = (start + GROUP).min(n);
            let mut misses = 0;
            for i in start..end {
                let iova = iovas[i];
                match hit {
                    Some((li, k)) if self.leaves[li].starts[k] <= iova
                        && iova <= self.leaves[li].tails[k].last =>
                    {
                        let leaf = &self.leaves[li];
                        pas[i] = leaf.tails[k].user_va.wrapping_add(iova - leaf.starts[k]);
                        prots[i] = leaf.tails[k].prot as u8;
                        mapped += 1;
                    }
                    _ => {
                        pending[misses] = i;
                        misses += 1;
                    }
                }
            }
            if misses > 0 {
                let (m, last) = self.resolve_group(&pending[..misses], iovas, pas, prots);
                mapped += m;
                hit = last.or(hit);
            }
            start = end;
        }
        mapped
    }

    /// Lockstep lookups of `iovas[idx]` for each idx of `group`; returns how
    /// many were mapped and the slot of the last one that was.
    fn resolve_group(&self, group: &[usize], iovas: &[u64], pas: &mut [u64], prots: &mut [u8])
                     -> (usize, Option<(usize, usize)>) {
        let g = group.len();
        let mut q = [0u64; GROUP];
        let mut base = [0usize; GROUP];
        let mut len = [0usize; GROUP];
        for j in 0..g {
            q[j] = iovas[group[j]];
            len[j] = self.keys.len();
        }
        // Keys: the last leaf keyed at or below q (base stays 0 when none is,
        // which the check below catches).
        lockstep(&self.keys, &q[..g], &mut base[..g], &mut len[..g]);
        let mut leaf_of = [0usize; GROUP];
        for j in 0..g {
            leaf_of[j] = base[j];
            len[j] = self.leaves.get(base[j]).map_or(0, Leaf::len);
            base[j] = 0;
        }
        // Each leaf: the last start at or below q.
        let mut steps = 0;
        while (0..g).any(|j| len[j] > 1) && steps < 64 {
            for j in 0..g {
                let starts = &self.leaves[leaf_of[j]].starts;
                let half = len[j] / 2;
                let cand = base[j] + half;
                base[j] = if half > 0 && starts[cand] <= q[j] { cand } else { base[j] };
                len[j] -= half;
            }
            steps += 1;
        }
        let mut mapped = 0;
        let mut last = None;
        for j in 0..g {
            let i = group[j];
            let found = self.keys.first().is_some_and(|&k0| k0 <= q[j]).then(|| {
                let leaf = &self.leaves[leaf_of[j]];
                (leaf, base[j])
            }).filter(|(leaf, k)| q[j] <= leaf.tails[*k].last);
            match found {
                Some((leaf, k)) => {
                    pas[i] = leaf.tails[k].user_va.wrapping_add(q[j] - leaf.starts[k]);
                    prots[i] = leaf.tails[k].prot as u8;
                    mapped += 1;
                    last = Some((leaf_of[j], k));
                }
                None => {
                    pas[i] = 0;
                    prots[i] = 0;
                }
            }
        }
        (mapped, last)
    }

    /// Add an area; its start must not be present (areas are disjoint).
    pub fn insert(&mut self, area: Area) {
        self.len += 1;
        if self.leaves.is_empty() {
            self.keys.push(area.iova);
            self.leaves.push(Leaf::with(area));
            return;
        }
        // Below every key, the area goes to the front of the first leaf.
        let li = self.leaf_of(area.iova).unwrap_or(0);
        let pos = self.leaves[li].starts.partition_point(|&s| s < area.iova);
        debug_assert!(self.leaves[li].starts.get(pos) != Some(&area.iova), "duplicate start");
        if self.leaves[li].len() == LEAF {
            if pos == LEAF && li + 1 == self.leaves.len() {
                // Appending past the end: start a new leaf, keep this one full.
                self.keys.push(area.iova);
                self.leaves.push(Leaf::with(area));
                return;
            }
            self.split(li);
        }
        // After a split the area belongs to the right half if it sorts there.
        let li = if li + 1 < self.keys.len() && area.iova >= self.keys[li + 1] { li + 1 } else { li };
        let leaf = &mut self.leaves[li];
        let pos = leaf.starts.partition_point(|&s| s < area.iova);
        leaf.starts.insert(pos, area.iova);
        leaf.tails.insert(pos, Tail { last: area.last, user_va: area.user_va, prot: area.prot });
        if pos == 0 {
            self.keys[li] = area.iova;
        }
    }

    fn split(&mut self, li: usize) {
        let leaf = &mut self.leaves[li];
        let mut right = Leaf { starts: Vec::with_capacity(LEAF), tails: Vec::with_capacity(LEAF) };
        right.starts.extend(leaf.starts.drain(LEAF / 2..));
        right.tails.extend(leaf.tails.drain(LEAF / 2..));
        self.keys.insert(li + 1, right.starts[0]);
        self.leaves.insert(li + 1, right);
    }

    /// Remove the area starting exactly at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Area> {
        let (li, k) = self.floor_slot(start)?;
        if self.leaves[li].starts[k] != start {
            return None;
        }
        let leaf = &mut self.leaves[li];
        let area = leaf.area(k);
        leaf.starts.remove(k);
        leaf.tails.remove(k);
        self.len -= 1;
        if leaf.starts.is_empty() {
            self.keys.remove(li);
            self.leaves.remove(li);
            return Some(area);
        }
        if k == 0 {
            self.keys[li] = leaf.starts[0];
        }
        if leaf.len() < LEAF / 4 {
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
        let absorbed = self.leaves.remove(from);
        self.keys.remove(from);
        let dst = &mut self.leaves[into];
        dst.starts.extend(absorbed.starts);
        dst.tails.extend(absorbed.tails);
    }

    /// Every area in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = Area> + '_ {
        self.leaves.iter().flat_map(|leaf| (0..leaf.len()).map(move |k| leaf.area(k)))
    }

    /// Heap bytes held, for the memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8
            + self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.leaves.iter().map(|l| l.starts.capacity() * 8
                + l.tails.capacity() * std::mem::size_of::<Tail>()).sum::<usize>()
    }

    /// Check every invariant (tests).
    pub fn check(&self) {
        assert_eq!(self.keys.len(), self.leaves.len());
        let mut count = 0;
        let mut prev_last: Option<u64> = None;
        for (i, leaf) in self.leaves.iter().enumerate() {
            assert!(!leaf.starts.is_empty() && leaf.len() <= LEAF);
            assert_eq!(leaf.starts.len(), leaf.tails.len());
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
    }
}
