//! Property test and fuzz harness: random operation sequences run against
//! the IO page table and a deliberately simple reference model (a Vec of
//! areas scanned linearly); every result, errno and translation must agree.
//! Half the sequences run with a domain attached (every page size, so every
//! area fills), which must mirror the areas after every step.

use iommud_core::io_pagetable::{
    IOMMU_IOAS_MAP_FIXED_IOVA as FIXED, IOMMU_IOAS_MAP_READABLE as R, IOMMU_IOAS_MAP_WRITEABLE as W,
};
use iommud_core::{read_domain, Domain, Errno, IoPagetable, SharedDomain};

mod common;
use common::Rng;

#[derive(Default, Clone)]
struct Model {
    areas: Vec<(u64, u64, u64, u32)>, // iova, last, user_va, prot
    reserved: Vec<(u64, u64)>,
    tracking: bool,
    /// (area iova, page): pages written by DMA while tracking, per area.
    dirty: Vec<(u64, u64)>,
    /// A domain is attached and large pages are enabled: cuts are refused.
    cut_refused: bool,
}

impl Model {
    /// The kernel's first fit, by brute force over the merged occupied
    /// intervals: the lowest aligned IOVA in [PAGE, 2^64-1-PAGE] whose
    /// range touches no area and no reserved range.
    fn first_fit(&self, length: u64, user_va: u64) -> Option<u64> {
        let align = iommud_core::iova_alloc::alloc_alignment(length, user_va).max(0x1000);
        let offset = user_va % 0x1000;
        let (lo, hi) = (0x1000u64, u64::MAX - 0x1000);
        let mut busy: Vec<(u64, u64)> = self.areas.iter().map(|&(a, b, _, _)| (a, b)).collect();
        busy.extend(self.reserved.iter().copied());
        busy.sort_unstable();
        let mut p = lo;
        for (a, b) in busy.into_iter().chain([(u64::MAX, u64::MAX)]) {
            if b < p {
                continue;
            }
            let hole_last = if a == u64::MAX {
                hi
            } else {
                a.saturating_sub(1).min(hi)
            };
            if a > p {
                let mask = align - 1;
                if let Some(c) = p.checked_add(mask).map(|v| (v & !mask) | offset) {
                    if c >= p && c <= hole_last && hole_last - c >= length - 1 {
                        return Some(c);
                    }
                }
            }
            match b.checked_add(1) {
                Some(n) if a != u64::MAX => p = p.max(n),
                _ => break,
            }
            if p > hi {
                break;
            }
        }
        None
    }

    fn overlaps(&self, s: u64, l: u64) -> bool {
        self.areas.iter().any(|&(a, b, _, _)| a <= l && s <= b)
    }
    fn translate(&self, iova: u64) -> Option<(u64, u32)> {
        self.areas
            .iter()
            .find(|&&(a, b, _, _)| a <= iova && iova <= b)
            .map(|&(a, _, u, p)| (u.wrapping_add(iova - a), p))
    }
    fn map_fixed(&mut self, flags: u32, user_va: u64, len: u64, iova: u64) -> Result<u64, Errno> {
        if flags & !7 != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if iova == u64::MAX || len == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if flags & (R | W) == 0 {
            return Err(Errno::EINVAL);
        }
        if user_va.checked_add(len).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if len == 0 || len > u64::MAX - 4096 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return Err(Errno::EOVERFLOW);
        };
        if self.reserved.iter().any(|&(a, b)| a <= last && iova <= b) {
            return Err(Errno::EINVAL);
        }
        if self.overlaps(iova, last) {
            return Err(Errno::EEXIST);
        }
        self.areas.push((iova, last, user_va, flags & (R | W)));
        Ok(iova)
    }
    fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        if iova == 0 && len == u64::MAX {
            let total = self.areas.iter().map(|&(a, b, _, _)| b - a + 1).sum();
            self.areas.clear();
            self.dirty.clear();
            return Ok(total);
        }
        if iova == u64::MAX || len == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return Err(Errno::EOVERFLOW);
        };
        self.areas.sort();
        let mut total = 0;
        let hits: Vec<_> = self
            .areas
            .iter()
            .copied()
            .filter(|&(a, b, _, _)| a <= last && iova <= b)
            .collect();
        for (a, b, u, p) in hits {
            if a < iova || b > last {
                return Err(Errno::ENOENT);
            }
            self.areas.retain(|&x| x != (a, b, u, p));
            self.dirty.retain(|&(area, _)| area != a);
            total += b - a + 1;
        }
        if total == 0 {
            return Err(Errno::ENOENT);
        }
        Ok(total)
    }
}

impl Model {
    /// iopt_cut_iova with alignment 1: split at each point, stop at a refusal.
    fn cut(&mut self, points: &[u64]) -> Result<(), Errno> {
        for &p in points {
            let Some((a, b, u, pr)) = self.area_at(p) else {
                continue;
            };
            if p == a || p == b {
                continue;
            }
            if self.cut_refused {
                return Err(Errno::EINVAL);
            }
            self.areas.retain(|&x| x != (a, b, u, pr));
            self.areas.push((a, p, u, pr));
            self.areas.push((p + 1, b, u.wrapping_add(p + 1 - a), pr));
            let moved: Vec<u64> = self
                .dirty
                .iter()
                .filter(|&&(area, page)| area == a && page >= (p + 1) / 4096)
                .map(|&(_, page)| page)
                .collect();
            self.dirty
                .retain(|&(area, page)| area != a || page <= p / 4096);
            self.dirty
                .extend(moved.into_iter().map(|page| (p + 1, page)));
        }
        Ok(())
    }

    fn area_at(&self, iova: u64) -> Option<(u64, u64, u64, u32)> {
        self.areas
            .iter()
            .copied()
            .find(|&(a, b, _, _)| a <= iova && iova <= b)
    }

    /// IOAS_COPY within the table, step by step as copy.rs documents it.
    fn copy(&mut self, flags: u32, src: u64, len: u64, dst: u64) -> Result<u64, Errno> {
        if flags & !7 != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if len == u64::MAX || src == u64::MAX || dst == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if flags & (R | W) == 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = src.checked_add(len - 1) else {
            return Err(Errno::EOVERFLOW);
        };
        let mut chunks = Vec::new(); // (src iova, src last, user_va, prot)
        let mut p = src;
        loop {
            let Some((a, b, u, pr)) = self.area_at(p) else {
                return Err(Errno::ENOENT);
            };
            let end = b.min(last);
            chunks.push((p, end, u.wrapping_add(p - a), pr));
            if end == last {
                break;
            }
            p = end + 1;
        }
        let at = if flags & FIXED != 0 {
            let Some(dlast) = dst.checked_add(len - 1) else {
                return Err(Errno::EOVERFLOW);
            };
            if self.reserved.iter().any(|&(a, b)| a <= dlast && dst <= b) {
                return Err(Errno::EINVAL);
            }
            if self.overlaps(dst, dlast) {
                return Err(Errno::EEXIST);
            }
            dst
        } else {
            if len >= u64::MAX / 2 {
                return Err(Errno::EOVERFLOW);
            }
            self.first_fit(len, chunks[0].2).ok_or(Errno::ENOSPC)?
        };
        if flags & W != 0 && chunks.iter().any(|c| c.3 & W == 0) {
            return Err(Errno::EPERM);
        }
        for (ci, cl, u, _) in chunks {
            let to = at + (ci - src);
            self.areas.push((to, to + (cl - ci), u, flags & (R | W)));
        }
        Ok(at)
    }

    /// A device access, as dirty.rs's dma: every byte mapped and permitted.
    fn dma(&mut self, iova: u64, len: u64, write: bool) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return Err(Errno::EOVERFLOW);
        };
        let need = if write { W } else { R };
        let (mut p, mut first, mut touched) = (iova, None, Vec::new());
        loop {
            let Some((a, b, u, pr)) = self.area_at(p) else {
                return Err(Errno::ENOENT);
            };
            if pr & need == 0 {
                return Err(Errno::EPERM);
            }
            if first.is_none() {
                first = Some(u.wrapping_add(iova - a));
            }
            touched.push((a, b));
            if b >= last {
                break;
            }
            p = b + 1;
        }
        if write && self.tracking {
            for (a, b) in touched {
                for page in iova.max(a) / 4096..=b.min(last) / 4096 {
                    if !self.dirty.contains(&(a, page)) {
                        self.dirty.push((a, page));
                    }
                }
            }
        }
        Ok(first.unwrap())
    }

    fn read_dirty(&mut self, iova: u64, len: u64, ps: u64, clear: bool) -> Result<Vec<u64>, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(len - 1) else {
            return Err(Errno::EOVERFLOW);
        };
        let end = last.wrapping_add(1);
        if ps == 0 || !ps.is_power_of_two() || !iova.is_multiple_of(ps) || !end.is_multiple_of(ps) {
            return Err(Errno::EINVAL);
        }
        let bits = (last - iova) / ps + 1;
        if bits > 1 << 29 {
            return Err(Errno::ENOMEM);
        }
        let mut words = vec![0u64; bits.div_ceil(64) as usize];
        let in_range = |page: u64| iova / 4096 <= page && page <= last / 4096;
        for &(_, page) in self.dirty.iter().filter(|&&(_, page)| in_range(page)) {
            let (ps_start, ps_last) = ((page * 4096).max(iova), (page * 4096 + 4095).min(last));
            for bit in (ps_start - iova) / ps..=(ps_last - iova) / ps {
                words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        if clear {
            self.dirty.retain(|&(_, page)| !in_range(page));
        }
        Ok(words)
    }
}

fn errno_of<T>(r: iommud_core::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| e.errno)
}

/// An address drawn from a few clusters plus the edges of the space, so
/// overlaps, splits and overflow happen often.
fn addr(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => u64::MAX - rng.below(0x3000),
        1 => rng.below(0x3000),
        _ => {
            (rng.below(4) << 32)
                + rng.below(64) * 0x1000
                + if rng.below(8) == 0 {
                    rng.below(0x1000)
                } else {
                    0
                }
        }
    }
}

fn len(rng: &mut Rng) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => u64::MAX - rng.below(2),
        2 => rng.below(0x1000) + 1,
        _ => (rng.below(8) + 1) * 0x1000,
    }
}

fn check_invariants(t: &IoPagetable, m: &Model, d: Option<&SharedDomain>) {
    let mut got: Vec<_> = t
        .areas()
        .map(|a| (a.iova, a.last, a.user_va, a.prot))
        .collect();
    let mut want = m.areas.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        t.mapped_bytes(),
        want.iter().map(|&(a, b, _, _)| b - a + 1).sum::<u64>()
    );
    for w in got.windows(2) {
        assert!(w[0].1 < w[1].0, "areas overlap");
    }
    if let Some(d) = d {
        let dom = read_domain(d);
        let entries: Vec<_> = dom
            .entries()
            .map(|e| (e.iova, e.last, e.pa, e.prot))
            .collect();
        assert_eq!(entries, got, "the domain mirrors the areas");
        assert_eq!(dom.mapped_bytes(), t.mapped_bytes());
    }
}

/// Returns the most areas the table held at once.
fn run_sequence(seed: u64, steps: usize) -> usize {
    let mut most = 0;
    let mut rng = Rng(seed | 1);
    let mut t = IoPagetable::new();
    let mut m = Model::default();
    if rng.below(2) == 0 {
        t.add_reserved(0xfee0_0000, 0xfeef_ffff, 1).unwrap();
        m.reserved.push((0xfee0_0000, 0xfeef_ffff));
    }
    let domain = (rng.below(2) == 0).then(|| {
        // Every page size from one byte: any area fills.
        let d = Domain::new(u64::MAX, 0, u64::MAX).unwrap().shared();
        let large = rng.below(2) == 0;
        t.set_large_pages(large);
        t.add_domain(&d).unwrap();
        m.cut_refused = large;
        d
    });
    for _ in 0..steps {
        match rng.below(16) {
            0 | 1 | 11 | 12 => {
                let flags = [
                    FIXED | R | W,
                    FIXED | R,
                    FIXED | W,
                    FIXED,
                    FIXED | R | W | 8,
                ][rng.below(5) as usize];
                let (u, l, i) = (addr(&mut rng), len(&mut rng), addr(&mut rng));
                assert_eq!(
                    errno_of(t.map(flags, u, l, i)),
                    m.map_fixed(flags, u, l, i),
                    "map {flags:#x} {u:#x} {l:#x} {i:#x}"
                );
            }
            2 | 13 => {
                // Automatic placement: the model checks the choice is legal.
                let (u, l) = (
                    (rng.below(1 << 40) & !0xfff) | (rng.below(2) * 0x10),
                    (rng.below(8) + 1) * 0x1000,
                );
                let want = m.first_fit(l, u);
                let got = t.map(R | W, u, l, 0);
                assert_eq!(
                    got.as_ref().ok().copied(),
                    want,
                    "first fit of {l:#x} for {u:#x}"
                );
                if let Ok(iova) = got {
                    let last = iova + l - 1;
                    assert!(iova != 0 && iova % 4096 == u % 4096);
                    assert!(!m.overlaps(iova, last));
                    assert!(!m.reserved.iter().any(|&(a, b)| a <= last && iova <= b));
                    m.areas.push((iova, last, u, R | W));
                }
            }
            3 => {
                let (i, l) = if rng.below(20) == 0 {
                    (0, u64::MAX)
                } else {
                    (addr(&mut rng), len(&mut rng))
                };
                let got = errno_of(t.unmap(i, l));
                let want = m.unmap(i, l);
                assert_eq!(got, want, "unmap {i:#x} {l:#x}");
            }
            5 => {
                let flags = [R | W, R, W, FIXED | R | W, FIXED | R, FIXED | W, 0, 8 | R]
                    [rng.below(8) as usize];
                // Sources mostly at existing areas, so copies succeed often enough.
                let src = match m.areas.get(rng.below(m.areas.len() as u64 + 1) as usize) {
                    Some(&(a, b, _, _)) if rng.below(4) != 0 => {
                        a + rng.below(b - a + 1) / 0x1000 * 0x1000
                    }
                    _ => addr(&mut rng),
                };
                let (l, dst) = (len(&mut rng), addr(&mut rng));
                let got = errno_of(iommud_core::copy_within(&mut t, flags, src, l, dst));
                assert_eq!(
                    got,
                    m.copy(flags, src, l, dst),
                    "copy {flags:#x} {src:#x} {l:#x} {dst:#x}"
                );
            }
            6 => {
                let (i, l, write) = match m.areas.get(rng.below(m.areas.len() as u64 + 1) as usize)
                {
                    Some(&(a, b, _, _)) => (
                        a + rng.below(b - a + 1),
                        rng.below(0x3000) + 1,
                        rng.below(3) != 0,
                    ),
                    None => (addr(&mut rng), len(&mut rng), true),
                };
                let got = match &domain {
                    Some(d) if rng.below(2) == 0 => t.dma_domain(d, i, l, write),
                    _ => t.dma(i, l, write),
                };
                assert_eq!(
                    errno_of(got),
                    m.dma(i, l, write),
                    "dma {i:#x} {l:#x} {write}"
                );
            }
            7 => {
                let ps = [0x1000, 0x2000, 0x10000, 1, 0, 0x3000][rng.below(6) as usize];
                let (i, l) = if rng.below(8) == 0 {
                    (addr(&mut rng), len(&mut rng))
                } else {
                    (
                        (rng.below(4) << 32) + rng.below(32) * 0x10000,
                        (rng.below(32) + 1) * 0x10000,
                    )
                };
                let clear = rng.below(2) == 0;
                let got = errno_of(t.read_dirty_bitmap(i, l, ps, clear));
                assert_eq!(
                    got,
                    m.read_dirty(i, l, ps, clear),
                    "dirty bitmap {i:#x} {l:#x} {ps:#x}"
                );
            }
            8 => {
                let on = rng.below(3) != 0;
                t.set_dirty_tracking(on);
                m.tracking = on;
                m.dirty.clear();
            }
            9 => {
                // A batch of fixed maps: all or nothing.
                let flags = [FIXED | R | W, FIXED | R, FIXED | W | 8][rng.below(3) as usize];
                let reqs: Vec<(u64, u64, u64)> = (0..1 + rng.below(3))
                    .map(|_| (addr(&mut rng), len(&mut rng), addr(&mut rng)))
                    .collect();
                let mut trial = m.clone();
                let want = reqs
                    .iter()
                    .map(|&(u, l, i)| trial.map_fixed(flags, u, l, i))
                    .collect::<Result<Vec<_>, _>>();
                if want.is_ok() {
                    m = trial;
                }
                assert_eq!(
                    errno_of(t.map_batch(flags, &reqs)),
                    want,
                    "map_batch {flags:#x} {reqs:x?}"
                );
            }
            10 => {
                // Exactly one existing area.
                if let Some(&(a, b, _, _)) =
                    m.areas.get(rng.below(m.areas.len() as u64 + 1) as usize)
                {
                    assert_eq!(
                        errno_of(t.unmap(a, b - a + 1)),
                        m.unmap(a, b - a + 1),
                        "unmap {a:#x}"
                    );
                }
            }
            14 => {
                // Cut points mostly inside existing areas.
                let points: Vec<u64> = (0..1 + rng.below(3))
                    .map(
                        |_| match m.areas.get(rng.below(m.areas.len() as u64 + 1) as usize) {
                            Some(&(a, b, _, _)) => a + rng.below(b - a + 1),
                            None => addr(&mut rng),
                        },
                    )
                    .collect();
                assert_eq!(errno_of(t.cut(&points)), m.cut(&points), "cut {points:x?}");
            }
            _ => {
                let batch: Vec<u64> = (0..8).map(|_| addr(&mut rng)).collect();
                let mut pas = vec![0; 8];
                let mut prots = vec![0; 8];
                let mapped = t.translate_batch(&batch, &mut pas, &mut prots);
                for (k, &i) in batch.iter().enumerate() {
                    let want = m.translate(i);
                    assert_eq!(t.translate(i), want, "translate {i:#x}");
                    if let Some(d) = &domain {
                        assert_eq!(read_domain(d).translate(i), want, "domain {i:#x}");
                    }
                    assert_eq!(
                        (pas[k], prots[k] as u32),
                        want.unwrap_or((0, 0)),
                        "batch {i:#x}"
                    );
                }
                assert_eq!(mapped, prots.iter().filter(|&&p| p != 0).count());
            }
        }
        check_invariants(&t, &m, domain.as_ref());
        most = most.max(t.num_areas());
    }
    most
}

#[test]
fn random_sequences_match_the_reference_model() {
    for seed in 0..5000u64 {
        run_sequence(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 60);
    }
}

#[test]
fn long_sequences_span_many_leaves_and_still_match() {
    // Hundreds of live areas: leaves split, merge and are skipped by the allocator.
    let most = (0..60u64)
        .map(|seed| run_sequence(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xabcdef, 1500))
        .max()
        .unwrap();
    assert!(
        most > 2 * iommud_core::area_map::LEAF,
        "only {most} areas at once"
    );
}

/// Fuzz harness: arbitrary bytes drive the operations; nothing may panic and
/// the table's invariants must hold. `cargo test` runs it over a fixed
/// corpus of pseudo-random inputs; any byte string can be replayed with it.
pub fn fuzz_one(data: &[u8]) {
    let mut t = IoPagetable::new();
    // The mock's page sizes: maps that are not 2 KiB-aligned fail their fill.
    let d = Domain::new(0x1F_FFFF_F800, 0, u64::MAX).unwrap().shared();
    t.add_domain(&d).unwrap();
    iommud_core::write_domain(&d).set_dirty_tracking(true);
    let mut words = data.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    while let (Some(op), Some(a), Some(b), Some(c)) =
        (words.next(), words.next(), words.next(), words.next())
    {
        match op % 14 {
            8 => drop(t.cut(&[a, b, c])),
            9 => drop(t.dma_domain(&d, a, b & 0xffff, c & 1 == 1)),
            10 => drop(t.read_domain_dirty_bitmap(&d, a, b, c, op & 1 == 1)),
            11 => drop(iommud_core::write_domain(&d).mark_dirty(a, b, c, &op.to_le_bytes())),
            12 => drop(read_domain(&d).check_map(a, b, c)),
            13 => {
                t.set_large_pages(op & 1 == 1);
                let _ = read_domain(&d).leaf_at(a);
            }
            0 => drop(t.map((op >> 8) as u32, a, b, c)),
            1 => drop(t.unmap(a, b)),
            2 => drop(t.translate(a)),
            3 => drop(t.add_reserved(a, b, c)),
            4 => t.remove_reserved(c),
            5 => drop(t.allow_iovas(&[(a, b)])),
            6 => drop(t.dma(a, b & 0xffff, c & 1 == 1)),
            _ => drop(t.read_dirty_bitmap(a, b, c, op & 1 == 1)),
        }
        let mut prev: Option<u64> = None;
        for area in t.areas() {
            assert!(area.iova <= area.last);
            if let Some(p) = prev {
                assert!(p < area.iova);
            }
            prev = Some(area.last);
        }
        let dom = read_domain(&d);
        assert!(dom
            .entries()
            .map(|e| (e.iova, e.last, e.pa, e.prot))
            .eq(t.areas().map(|a| (a.iova, a.last, a.user_va, a.prot))));
    }
}

#[test]
fn fuzz_corpus_does_not_panic() {
    let mut rng = Rng(0xfeed_beef);
    for _ in 0..3000 {
        let n = rng.below(512) as usize;
        let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        fuzz_one(&data);
    }
}

#[test]
fn large_parallel_batches_agree_with_single_translation() {
    let mut rng = Rng(42);
    let mut t = IoPagetable::new();
    for i in 0..5000u64 {
        t.map(
            FIXED | R | W,
            rng.below(1 << 40) << 12,
            0x1000 * (1 + rng.below(4)),
            i << 16,
        )
        .unwrap();
    }
    let iovas: Vec<u64> = (0..200_000).map(|_| rng.below(5000 << 16)).collect();
    let mut pas = vec![0; iovas.len()];
    let mut prots = vec![0; iovas.len()];
    let mapped = t.translate_batch(&iovas, &mut pas, &mut prots);
    let mut want_mapped = 0;
    for (k, &i) in iovas.iter().enumerate() {
        let want = t.translate(i);
        want_mapped += want.is_some() as usize;
        assert_eq!((pas[k], prots[k] as u32), want.unwrap_or((0, 0)));
    }
    assert_eq!(mapped, want_mapped);
    assert!(mapped > 0 && mapped < iovas.len());
}
