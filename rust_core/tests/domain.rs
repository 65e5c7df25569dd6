//! IOMMU domains (domain.rs): leaves as the selftest mock's generic page
//! table chooses them, fills kept in step with the IOAS, translation and
//! MD_CHECK_MAP, dirty state per leaf (TEST_OP_DIRTY, device DMA,
//! GET_DIRTY_BITMAP's layout and checks), and iopt_cut_iova. One kernel rule
//! per test, with exact errno.

use std::sync::{Arc, RwLock};

use iommud_core::io_pagetable::{
    IOMMU_IOAS_MAP_FIXED_IOVA as FIXED, IOMMU_IOAS_MAP_READABLE as R, IOMMU_IOAS_MAP_WRITEABLE as W,
};
use iommud_core::{copy, read_domain, write_domain, Domain, Errno, IoPagetable, SharedDomain};

const RW: u32 = R | W;
const MAX: u64 = u64::MAX;
const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

/// MOCK_IOMMUPT_DEFAULT: every power of two from 2 KiB to 64 GiB.
const MOCK_PGSIZES: u64 = 0x1F_FFFF_F800;
const MOCK_APERTURE: (u64, u64) = (0x100_0000, 0x7FFF_FFFF);
/// MOCK_IOMMUPT_HUGE: MOCK_HUGE_PAGE_SIZE | PAGE_SIZE.
const HUGE_PGSIZES: u64 = 0x10_1000;
const BASE: u64 = MOCK_APERTURE.0;
/// A user address aligned far beyond any page size.
const UVA: u64 = 0x7f00_0000_0000;

fn errno<T: std::fmt::Debug>(r: iommud_core::Result<T>) -> Errno {
    r.expect_err("call should fail").errno
}

fn mock() -> SharedDomain {
    Domain::new(MOCK_PGSIZES, MOCK_APERTURE.0, MOCK_APERTURE.1)
        .unwrap()
        .shared()
}

fn huge() -> SharedDomain {
    Domain::new(HUGE_PGSIZES, 0, (1 << 38) - 1)
        .unwrap()
        .shared()
}

/// A table with `d` attached and large pages as asked.
fn table_with(d: &SharedDomain, large_pages: bool) -> IoPagetable {
    let mut t = IoPagetable::new();
    t.set_large_pages(large_pages);
    t.add_domain(d).unwrap();
    t
}

fn leaves(d: &SharedDomain, iova: u64, len: u64) -> Vec<(u64, u64)> {
    read_domain(d).leaves(iova, iova + len - 1)
}

/// Indices of the set bits of packed u64 words.
fn bits(words: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    for (w, &word) in words.iter().enumerate() {
        for b in 0..64 {
            if word >> b & 1 == 1 {
                out.push(w as u64 * 64 + b);
            }
        }
    }
    out
}

fn entries(d: &SharedDomain) -> Vec<(u64, u64, u64, u32)> {
    read_domain(d)
        .entries()
        .map(|e| (e.iova, e.length(), e.pa, e.prot))
        .collect()
}

fn areas(t: &IoPagetable) -> Vec<(u64, u64, u64, u32)> {
    t.areas()
        .map(|a| (a.iova, a.length(), a.user_va, a.prot))
        .collect()
}

// -- the domain object -------------------------------------------------------

#[test]
fn new_domain_checks_and_properties() {
    assert_eq!(errno(Domain::new(0, 0, MAX)), Errno::EINVAL);
    assert_eq!(errno(Domain::new(0x1000, 2, 1)), Errno::EINVAL);
    let d = Domain::new(MOCK_PGSIZES, MOCK_APERTURE.0, MOCK_APERTURE.1).unwrap();
    assert_eq!(d.min_page_size(), 2 * K);
    assert_eq!(d.pgsize_bitmap(), MOCK_PGSIZES);
    assert_eq!((d.aperture_start(), d.aperture_last()), MOCK_APERTURE);
    assert_eq!((d.num_entries(), d.mapped_bytes()), (0, 0));
    assert!(!d.dirty_tracking() && !d.attached());
    assert_eq!(d.leaf_at(BASE), None);
    assert_eq!(d.translate(BASE), None);
    // The lowest set bit, whatever else is set.
    assert_eq!(
        Domain::new(HUGE_PGSIZES, 0, MAX).unwrap().min_page_size(),
        0x1000
    );
}

// -- leaves ------------------------------------------------------------------

#[test]
fn leaves_are_the_largest_aligned_size_that_fits() {
    let d = mock();
    let mut t = table_with(&d, true);
    // 16 MiB-aligned IOVA and PA, 1 MiB long: one 1 MiB leaf.
    t.map(FIXED | RW, UVA, M, BASE).unwrap();
    assert_eq!(leaves(&d, BASE, M), vec![(BASE, M)]);
    assert_eq!(read_domain(&d).leaf_at(BASE + 0x1234), Some((BASE, M)));
    // 4 KiB-aligned start, 12 KiB: 4 KiB then 8 KiB.
    let i = BASE + 0x20_1000;
    t.map(FIXED | RW, i, 0x3000, i).unwrap();
    assert_eq!(
        leaves(&d, i, 0x3000),
        vec![(i, 0x1000), (i + 0x1000, 0x2000)]
    );
    // Ascending, then descending sizes: 2K 4K 8K ... up to the alignment
    // the length allows, then back down.
    let i = BASE + 0x40_0800;
    let len = 0x40_0000 - 0x800 + 0x1800;
    t.map(FIXED | RW, UVA + 0x40_0800, len, i).unwrap();
    let got = leaves(&d, i, len);
    let mut want = vec![(i, 0x800)];
    let mut p = i + 0x800;
    let mut size = 0x1000;
    while p < BASE + 0x80_0000 {
        want.push((p, size));
        p += size;
        size *= 2;
    }
    want.push((BASE + 0x80_0000, 0x1000));
    want.push((BASE + 0x80_1000, 0x800));
    assert_eq!(got, want);
    assert_eq!(got.iter().map(|l| l.1).sum::<u64>(), len);
}

#[test]
fn the_pa_offset_limits_the_leaf_size() {
    let d = mock();
    let mut t = table_with(&d, true);
    // The PA is only 2 KiB-aligned relative to the IOVA: 2 KiB leaves only.
    t.map(FIXED | RW, UVA + 0x800, 0x4000, BASE).unwrap();
    let got = leaves(&d, BASE, 0x4000);
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|&(s, z)| z == 0x800 && s % 0x800 == 0));
    // A 64 KiB relative offset caps the leaves at 64 KiB.
    t.map(FIXED | RW, UVA + 0x1_0000, M, BASE + M).unwrap();
    assert_eq!(leaves(&d, BASE + M, M).len(), 16);
}

#[test]
fn sizes_up_to_64_gib() {
    let d = Domain::new(MOCK_PGSIZES, 0, MAX).unwrap().shared();
    let mut t = table_with(&d, true);
    t.map(FIXED | RW, 0x10_0000_0000, 128 * G, 0x10_0000_0000)
        .unwrap();
    assert_eq!(
        leaves(&d, 0x10_0000_0000, 128 * G),
        vec![(0x10_0000_0000, 64 * G), (0x20_0000_0000, 64 * G)]
    );
    assert_eq!(
        read_domain(&d).leaf_at(0x10_1234_5678),
        Some((0x10_0000_0000, 64 * G))
    );
    // 2 KiB below a 64 GiB boundary, then exactly 64 GiB: two leaves.
    let i = 0x40_0000_0000 - 0x800;
    t.map(FIXED | RW, i, 64 * G + 0x800, i).unwrap();
    assert_eq!(
        leaves(&d, i, 64 * G + 0x800),
        vec![(i, 0x800), (0x40_0000_0000, 64 * G)]
    );
    // 128 GiB aligned to 128 GiB still takes 64 GiB leaves: the largest size.
    t.map(FIXED | RW, 0x100_0000_0000, 128 * G, 0x100_0000_0000)
        .unwrap();
    assert_eq!(leaves(&d, 0x100_0000_0000, 128 * G).len(), 2);
}

#[test]
fn huge_mock_leaves_are_1_mib_or_4_kib() {
    let d = huge();
    let mut t = table_with(&d, true);
    let i = 0x4000_0000;
    t.map(FIXED | RW, i, 2 * M + 0x3000, i).unwrap();
    assert_eq!(
        leaves(&d, i, 2 * M + 0x3000),
        vec![
            (i, M),
            (i + M, M),
            (i + 2 * M, 0x1000),
            (i + 2 * M + 0x1000, 0x1000),
            (i + 2 * M + 0x2000, 0x1000)
        ]
    );
    // Starting 4 KiB past a 1 MiB boundary: 255 small leaves, then a 1 MiB one.
    let i = 0x8000_1000;
    t.map(FIXED | RW, i, 2 * M, i).unwrap();
    let got = leaves(&d, i, 2 * M);
    assert_eq!(got.len(), 255 + 1 + 1);
    assert_eq!(got[255], (0x8010_0000, M));
    assert_eq!(got[256], (0x8020_0000, 0x1000));
    assert_eq!(read_domain(&d).leaf_at(0x8018_8888), Some((0x8010_0000, M)));
}

#[test]
fn large_pages_off_caps_leaves_at_page_size() {
    let d = huge();
    let mut t = table_with(&d, false);
    assert!(!t.large_pages());
    t.map(FIXED | RW, 0x4000_0000, 2 * M, 0x4000_0000).unwrap();
    let got = leaves(&d, 0x4000_0000, 2 * M);
    assert_eq!(got.len(), 512);
    assert!(got.iter().all(|l| l.1 == 0x1000));
    assert_eq!(read_domain(&d).entries().next().unwrap().leaf_cap, 0x1000);
    // Turning large pages on changes the fills made after, not the entries.
    t.set_large_pages(true);
    t.map(FIXED | RW, 0x4020_0000, M, 0x4020_0000).unwrap();
    assert_eq!(leaves(&d, 0x4020_0000, M), vec![(0x4020_0000, M)]);
    assert_eq!(leaves(&d, 0x4000_0000, 2 * M).len(), 512);
    assert_eq!(read_domain(&d).entry_at(0x4020_0000).unwrap().leaf_cap, 0);
}

#[test]
fn capped_fills_chunk_from_the_area_start() {
    // batch_iommu_map_small maps PAGE_SIZE chunks from the area's start; a
    // start that is only 2 KiB-aligned splits every chunk in two.
    let d = mock();
    let mut t = table_with(&d, false);
    let i = BASE + 0x800;
    t.map(FIXED | RW, UVA + 0x800, 0x2000, i).unwrap();
    assert_eq!(
        leaves(&d, i, 0x2000),
        vec![
            (i, 0x800),
            (i + 0x800, 0x800),
            (i + 0x1000, 0x800),
            (i + 0x1800, 0x800)
        ]
    );
    // Uncapped, the same range takes a 4 KiB leaf in the middle.
    let d2 = mock();
    let mut t2 = table_with(&d2, true);
    t2.map(FIXED | RW, UVA + 0x800, 0x2000, i).unwrap();
    assert_eq!(
        leaves(&d2, i, 0x2000),
        vec![(i, 0x800), (i + 0x800, 0x1000), (i + 0x1800, 0x800)]
    );
}

// -- fills ---------------------------------------------------------------------

#[test]
fn add_domain_fills_every_area_and_later_maps_too() {
    let mut t = IoPagetable::new();
    t.map(FIXED | RW, UVA, 0x4000, BASE).unwrap();
    t.map(FIXED | R, UVA + M, 0x2000, BASE + M).unwrap();
    let d = mock();
    t.add_domain(&d).unwrap();
    assert!(read_domain(&d).attached());
    assert_eq!(t.num_domains(), 1);
    assert_eq!(
        entries(&d),
        vec![(BASE, 0x4000, UVA, RW), (BASE + M, 0x2000, UVA + M, R)]
    );
    assert_eq!(read_domain(&d).mapped_bytes(), 0x6000);
    t.map(FIXED | W, UVA + 2 * M, 0x1000, BASE + 2 * M).unwrap();
    assert_eq!(read_domain(&d).num_entries(), 3);
    assert_eq!(entries(&d), areas(&t));
    // Every attached domain gets every area.
    let d2 = huge();
    t.add_domain(&d2).unwrap();
    t.map(FIXED | RW, UVA + 3 * M, 0x1000, BASE + 3 * M)
        .unwrap();
    assert_eq!(entries(&d), areas(&t));
    assert_eq!(entries(&d2), areas(&t));
}

#[test]
fn removing_a_large_domain_empties_it_before_returning() {
    // Past FREE_ASIDE_ENTRIES the map's memory is freed by another thread;
    // the domain itself must be empty, reusable and unattached at once.
    let d = mock();
    let mut t = table_with(&d, true);
    let n = iommud_core::domain::FREE_ASIDE_ENTRIES as u64 + 1;
    for k in 0..n {
        t.map(FIXED | RW, UVA + k * 0x2000, 0x1000, BASE + k * 0x2000)
            .unwrap();
    }
    assert_eq!(read_domain(&d).num_entries() as u64, n);
    t.remove_domain(&d).unwrap();
    let dom = read_domain(&d);
    assert!(!dom.attached());
    assert_eq!((dom.num_entries(), dom.mapped_bytes()), (0, 0));
    drop(dom);
    let mut other = IoPagetable::new();
    other.map(FIXED | RW, UVA, 0x2000, BASE).unwrap();
    other.add_domain(&d).unwrap();
    assert_eq!(entries(&d), areas(&other));
}

#[test]
fn add_and_remove_domain_errors() {
    let d = mock();
    let mut t = table_with(&d, true);
    assert_eq!(errno(t.add_domain(&d)), Errno::EEXIST);
    let mut other = IoPagetable::new();
    assert_eq!(errno(other.add_domain(&d)), Errno::EBUSY);
    assert_eq!(errno(other.remove_domain(&d)), Errno::ENOENT);
    t.map(FIXED | RW, UVA, 0x1000, BASE).unwrap();
    t.remove_domain(&d).unwrap();
    assert_eq!(t.num_domains(), 0);
    let dom = read_domain(&d);
    assert!(!dom.attached());
    assert_eq!((dom.num_entries(), dom.mapped_bytes()), (0, 0));
    drop(dom);
    // A released domain may serve another table.
    other.map(FIXED | RW, UVA, 0x2000, BASE).unwrap();
    other.add_domain(&d).unwrap();
    assert_eq!(entries(&d), areas(&other));
}

#[test]
fn an_area_neither_readable_nor_writeable_fails_every_fill() {
    // Compat MAP_DMA (iopt_map_user_pages) may make one; the native map may not.
    let mut t = IoPagetable::new();
    assert_eq!(
        errno(t.map(FIXED, UVA + M, 0x1000, BASE + M)),
        Errno::EINVAL
    );
    t.map(FIXED | RW, UVA, 0x1000, BASE).unwrap();
    t.map_user_pages(FIXED, UVA + M, 0x1000, BASE + M).unwrap();
    assert_eq!(t.translate(BASE + M), Some((UVA + M, 0)));
    let d = mock();
    assert_eq!(errno(t.add_domain(&d)), Errno::EINVAL);
    assert_eq!(read_domain(&d).num_entries(), 0, "all or nothing");
    assert!(!read_domain(&d).attached());
    assert_eq!(t.num_domains(), 0);
    // With a domain attached, such a map fails and leaves nothing behind.
    let mut t = table_with(&d, true);
    assert_eq!(
        errno(t.map_user_pages(FIXED, UVA, 0x1000, BASE)),
        Errno::EINVAL
    );
    assert_eq!((t.num_areas(), read_domain(&d).num_entries()), (0, 0));
    // map_user_pages keeps the other step-1 checks.
    assert_eq!(
        errno(t.map_user_pages(FIXED | 8, UVA, 0x1000, BASE)),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(t.map_user_pages(FIXED | RW, UVA, MAX, BASE)),
        Errno::EOVERFLOW
    );
}

#[test]
fn a_failing_fill_undoes_the_map_in_every_domain() {
    let d1 = mock();
    // Smallest page 4 KiB: a 2 KiB PA offset cannot be stored.
    let d2 = Domain::new(0x1000 | (2 * M), 0, MAX).unwrap().shared();
    let mut t = table_with(&d1, true);
    t.add_domain(&d2).unwrap();
    t.map(FIXED | RW, UVA, 0x1000, BASE).unwrap();
    assert_eq!(
        errno(t.map(FIXED | RW, UVA + 0x800, 0x1000, BASE + M)),
        Errno::ENXIO
    );
    assert_eq!(t.num_areas(), 1);
    assert_eq!(entries(&d1), areas(&t));
    assert_eq!(entries(&d2), areas(&t));
    // A batch: the third map fails its fill, the first two go again.
    let uvas = [UVA + 2 * M, UVA + 3 * M, UVA + 4 * M + 0x800];
    let reqs: Vec<(u64, u64, u64)> = uvas
        .iter()
        .enumerate()
        .map(|(k, &u)| (u, 0x1000, BASE + (2 + k as u64) * M))
        .collect();
    let e = t.map_batch(FIXED | RW, &reqs).unwrap_err();
    assert_eq!(e.errno, Errno::ENXIO);
    assert!(e.message.starts_with("Request 0x2"));
    assert_eq!(t.num_areas(), 1);
    assert_eq!(entries(&d1), areas(&t));
    assert_eq!(entries(&d2), areas(&t));
}

#[test]
fn copy_fills_the_destination_domains_or_nothing() {
    let mut src = IoPagetable::new();
    src.map(FIXED | RW, UVA, 0x1000, 0x10000).unwrap();
    src.map(FIXED | RW, UVA + M, 0x1000, 0x11000).unwrap();
    let d = mock();
    let mut dst = table_with(&d, true);
    let at = copy(&mut dst, &src, FIXED | RW, 0x10000, 0x2000, BASE).unwrap();
    assert_eq!(at, BASE);
    assert_eq!(
        entries(&d),
        vec![
            (BASE, 0x1000, UVA, RW),
            (BASE + 0x1000, 0x1000, UVA + M, RW)
        ]
    );
    // The second chunk's PA is not 4 KiB-aligned for a 4 KiB domain: the
    // first chunk, already placed and filled, goes again.
    let mut src2 = IoPagetable::new();
    src2.map(FIXED | RW, UVA, 0x1000, 0x10000).unwrap();
    src2.map(FIXED | RW, UVA + M + 0x800, 0x1000, 0x11000)
        .unwrap();
    let d4 = Domain::new(0x1000, 0, MAX).unwrap().shared();
    let mut dst2 = table_with(&d4, true);
    assert_eq!(
        errno(copy(&mut dst2, &src2, FIXED | RW, 0x10000, 0x2000, BASE)),
        Errno::ENXIO
    );
    assert_eq!((dst2.num_areas(), read_domain(&d4).num_entries()), (0, 0));
    assert_eq!(dst2.mapped_bytes(), 0);
}

#[test]
fn unmap_removes_entries_and_their_dirty_state() {
    let d = mock();
    let mut t = table_with(&d, true);
    write_domain(&d).set_dirty_tracking(true);
    t.map(FIXED | RW, UVA, 0x4000, BASE).unwrap();
    t.map(FIXED | RW, UVA + M, 0x4000, BASE + M).unwrap();
    t.map(FIXED | RW, UVA + 2 * M, 0x4000, BASE + 2 * M)
        .unwrap();
    for k in 0..3 {
        t.dma_domain(&d, BASE + k * M, 1, true).unwrap();
    }
    assert_eq!(read_domain(&d).dirty_ranges().len(), 3);
    t.unmap(BASE + M, 0x4000).unwrap();
    assert_eq!(read_domain(&d).num_entries(), 2);
    assert_eq!(read_domain(&d).translate(BASE + M), None);
    assert_eq!(read_domain(&d).dirty_ranges().len(), 2);
    // A map at the same place starts clean.
    t.map(FIXED | RW, UVA + M, 0x4000, BASE + M).unwrap();
    let words = t
        .read_domain_dirty_bitmap(&d, BASE + M, 0x4000, 0x800, false)
        .unwrap();
    assert!(bits(&words).is_empty());
    t.unmap_batch(&[(BASE, 0x4000)]).unwrap();
    assert_eq!(read_domain(&d).num_entries(), 2);
    assert_eq!(t.unmap_all(), 0x8000);
    let dom = read_domain(&d);
    assert_eq!((dom.num_entries(), dom.mapped_bytes()), (0, 0));
    assert!(dom.dirty_ranges().is_empty());
    assert!(dom.attached(), "unmap-all keeps the domain attached");
}

// -- translation and MD_CHECK_MAP ----------------------------------------------

#[test]
fn translate_and_check_map() {
    let d = mock();
    let mut t = table_with(&d, true);
    t.map(FIXED | R, UVA, 0x4000, BASE).unwrap();
    t.map(FIXED | RW, UVA + 0x4000, 0x2000, BASE + 0x4000)
        .unwrap();
    t.map(FIXED | RW, UVA + M, 0x1000, BASE + 0x8000).unwrap();
    let dom = read_domain(&d);
    assert_eq!(dom.translate(BASE + 0x123), Some((UVA + 0x123, R)));
    assert_eq!(dom.translate(BASE + 0x6000), None);
    // Two areas contiguous in IOVA and user address check as one range.
    dom.check_map(BASE, 0x6000, UVA).unwrap();
    dom.check_map(BASE + 0x800, 0x1000, UVA + 0x800).unwrap();
    dom.check_map(BASE, 0, UVA).unwrap();
    let einval = |iova, len, uva| errno(dom.check_map(iova, len, uva));
    assert_eq!(einval(BASE, 0x6000, UVA + 0x800), Errno::EINVAL, "mismatch");
    assert_eq!(einval(BASE, 0x8000, UVA), Errno::EINVAL, "hole");
    assert_eq!(einval(BASE, 0x9000, UVA), Errno::EINVAL, "hole, then more");
    assert_eq!(einval(BASE + 0x400, 0x800, UVA), Errno::EINVAL, "iova");
    assert_eq!(einval(BASE, 0x400, UVA), Errno::EINVAL, "length");
    assert_eq!(einval(BASE, 0x800, UVA + 0x400), Errno::EINVAL, "user_va");
    assert_eq!(einval(BASE, 0x1000, MAX - 0x7ff), Errno::EINVAL, "overflow");
    // The third area's user address is not contiguous with the second's.
    assert_eq!(einval(BASE + 0x4000, 0x5000, UVA + 0x4000), Errno::EINVAL);
    dom.check_map(BASE + 0x8000, 0x1000, UVA + M).unwrap();
    // The step is the smallest page size: 4 KiB in the huge mock.
    let h = huge();
    let mut th = table_with(&h, true);
    th.map(FIXED | RW, UVA, M, 0x4000_0000).unwrap();
    let hd = read_domain(&h);
    hd.check_map(0x4000_0000, M, UVA).unwrap();
    assert_eq!(errno(hd.check_map(0x4000_0000, 0x800, UVA)), Errno::EINVAL);
}

#[test]
fn set_area_user_va_repoints_the_domain_too() {
    // The model names a page by its user address: after UPDATE_VADDR the
    // IOAS and its domains answer the new address alike, and the leaves'
    // dirty state stays.
    let d = mock();
    let mut t = table_with(&d, true);
    t.map(FIXED | RW, UVA, 0x2000, BASE).unwrap();
    t.set_area_user_va(BASE, UVA + 0x10_0000).unwrap();
    assert_eq!(t.translate(BASE + 8), Some((UVA + 0x10_0008, RW)));
    assert_eq!(
        read_domain(&d).translate(BASE + 8),
        Some((UVA + 0x10_0008, RW))
    );
    assert_eq!(
        t.dma_domain(&d, BASE + 8, 4, false).unwrap(),
        UVA + 0x10_0008
    );
    assert_eq!(t.dma(BASE + 8, 4, false).unwrap(), UVA + 0x10_0008);
    read_domain(&d)
        .check_map(BASE, 0x2000, UVA + 0x10_0000)
        .unwrap();
}

// -- dirty state ---------------------------------------------------------------

#[test]
fn a_one_byte_write_dirties_its_4k_leaf_with_large_pages_off() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | RW, UVA, M, BASE).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, BASE + 0x1234, 1, true).unwrap();
    let read = |t: &IoPagetable, ps, clear| {
        bits(&t.read_domain_dirty_bitmap(&d, BASE, M, ps, clear).unwrap())
    };
    assert_eq!(read(&t, 2048, false), vec![2, 3]);
    assert_eq!(read(&t, 4096, false), vec![1]);
    assert_eq!(read(&t, M, false), vec![0]);
    // Reads do not clean without `clear`; with it the leaf is clean after.
    assert_eq!(read(&t, 2048, true), vec![2, 3]);
    assert!(read(&t, 2048, false).is_empty());
    // A read is not a write; a fault marks nothing.
    t.dma_domain(&d, BASE + 0x5000, 0x10, false).unwrap();
    assert_eq!(
        errno(t.dma_domain(&d, BASE + M - 1, 2, true)),
        Errno::ENOENT
    );
    assert!(read(&t, 2048, false).is_empty());
    // A write across two leaves dirties both.
    t.dma_domain(&d, BASE + 0x2fff, 2, true).unwrap();
    assert_eq!(read(&t, 4096, false), vec![2, 3]);
}

#[test]
fn a_one_byte_write_dirties_its_1m_leaf_in_a_huge_domain() {
    let d = huge();
    let mut t = table_with(&d, true);
    let i = 0x4000_0000;
    t.map(FIXED | RW, UVA, 4 * M, i).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, i + M + 0x777, 1, true).unwrap();
    let words = t
        .read_domain_dirty_bitmap(&d, i, 4 * M, 2048, false)
        .unwrap();
    assert_eq!(bits(&words), (512..1024).collect::<Vec<_>>());
    let words = t
        .read_domain_dirty_bitmap(&d, i, 4 * M, 4 * M, true)
        .unwrap();
    assert_eq!(bits(&words), vec![0]);
    assert!(bits(
        &t.read_domain_dirty_bitmap(&d, i, 4 * M, 2048, false)
            .unwrap()
    )
    .is_empty());
}

#[test]
fn dma_domain_errors_and_both_dirty_levels() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | R, UVA, 0x2000, BASE).unwrap();
    t.map(FIXED | RW, UVA + 0x2000, 0x2000, BASE + 0x2000)
        .unwrap();
    assert_eq!(errno(t.dma_domain(&d, BASE, 0, false)), Errno::EINVAL);
    assert_eq!(errno(t.dma_domain(&d, MAX, 2, false)), Errno::EOVERFLOW);
    assert_eq!(errno(t.dma_domain(&d, BASE, 1, true)), Errno::EPERM);
    assert_eq!(
        errno(t.dma_domain(&d, BASE + 0x3000, 0x2000, false)),
        Errno::ENOENT
    );
    let stranger = mock();
    assert_eq!(
        errno(t.dma_domain(&stranger, BASE, 1, false)),
        Errno::EINVAL
    );
    // Across two areas, both readable: one access.
    assert_eq!(
        t.dma_domain(&d, BASE + 0x1fff, 2, false).unwrap(),
        UVA + 0x1fff
    );
    // Tracking on the domain and on the table: one write marks both.
    write_domain(&d).set_dirty_tracking(true);
    t.set_dirty_tracking(true);
    t.dma_domain(&d, BASE + 0x3000, 1, true).unwrap();
    assert_eq!(
        bits(&t.read_dirty_bitmap(BASE, 0x4000, 0x1000, false).unwrap()),
        vec![3]
    );
    assert_eq!(
        bits(
            &t.read_domain_dirty_bitmap(&d, BASE, 0x4000, 0x1000, false)
                .unwrap()
        ),
        vec![3]
    );
    // Tracking off on the domain: writes no longer dirty its leaves.
    write_domain(&d).set_dirty_tracking(false);
    t.dma_domain(&d, BASE + 0x2000, 1, true).unwrap();
    assert_eq!(
        bits(
            &t.read_domain_dirty_bitmap(&d, BASE, 0x4000, 0x1000, false)
                .unwrap()
        ),
        vec![3],
        "disabling keeps the D bits; the new write is not recorded"
    );
    assert_eq!(
        bits(&t.read_dirty_bitmap(BASE, 0x4000, 0x1000, false).unwrap()),
        vec![2, 3]
    );
    // Enabling again starts from a clean snapshot.
    write_domain(&d).set_dirty_tracking(true);
    assert!(read_domain(&d).dirty_ranges().is_empty());
}

#[test]
fn read_checks_follow_iommufd_check_iova_range() {
    let d = mock();
    let mut t = table_with(&d, true);
    t.set_iova_alignment(0x800).unwrap();
    t.map(FIXED | RW, UVA, 0x4000, BASE).unwrap();
    let e = |iova, len, ps| errno(t.read_domain_dirty_bitmap(&d, iova, len, ps, false));
    assert_eq!(e(BASE, 0, 0x800), Errno::EINVAL);
    assert_eq!(e(MAX - 0xfff, 0x2000, 0x800), Errno::EOVERFLOW);
    // Overflow wins over a zero page size; alignment to the IOAS first.
    assert_eq!(e(MAX - 0xfff, 0x2000, 0), Errno::EOVERFLOW);
    assert_eq!(e(BASE + 0x400, 0x800, 0x400), Errno::EINVAL);
    assert_eq!(e(BASE, 0xc00, 0x400), Errno::EINVAL);
    assert_eq!(e(BASE, 0x1000, 0), Errno::EINVAL);
    assert_eq!(e(BASE + 0x800, 0x1000, 0x1000), Errno::EINVAL);
    assert_eq!(e(BASE, 0x1800, 0x1000), Errno::EINVAL);
    assert_eq!(
        errno(t.read_domain_dirty_bitmap(&mock(), BASE, 0x1000, 0x1000, false)),
        Errno::EINVAL,
        "a domain of another table"
    );
    // Tracking is not checked: a read with it off succeeds.
    assert!(!read_domain(&d).dirty_tracking());
    assert_eq!(
        t.read_domain_dirty_bitmap(&d, BASE, 0x4000, 0x800, false)
            .unwrap(),
        vec![0]
    );
    // The range may reach 2^64-1 (its end wraps to 0, aligned).
    t.read_domain_dirty_bitmap(&d, MAX - 0xfff, 0x1000, 0x1000, false)
        .unwrap();
}

#[test]
fn bit_layout_page_size_larger_smaller_and_odd() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | RW, UVA, M, BASE).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, BASE + 0x1000, 1, true).unwrap();
    t.dma_domain(&d, BASE + 0x2_3000, 1, true).unwrap();
    let read = |ps, len| {
        bits(
            &t.read_domain_dirty_bitmap(&d, BASE, len, ps, false)
                .unwrap(),
        )
    };
    // page_size above the leaf: one bit per unit a dirty leaf overlaps.
    assert_eq!(read(0x1_0000, M), vec![0, 2]);
    // below: every bit of the leaf.
    assert_eq!(read(0x400, 0x1_0000), vec![4, 5, 6, 7]);
    // Not a power of two: its lowest set bit is the shift (0x3000 → 4 KiB).
    assert_eq!(read(0x3000, 0x1_0000), vec![1]);
}

#[test]
fn a_leaf_starting_below_the_bitmap_is_dropped_and_one_past_its_end_clipped() {
    let d = huge();
    let mut t = table_with(&d, true);
    let i = 0x4000_0000;
    t.map(FIXED | RW, UVA, 2 * M, i).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, i + 0x10, 1, true).unwrap();
    // The bitmap's second half of the dirty 1 MiB leaf: the leaf starts
    // below the bitmap's base, so iova_bitmap_set records nothing.
    let half = |clear| {
        bits(
            &t.read_domain_dirty_bitmap(&d, i + M / 2, M / 2, 2048, clear)
                .unwrap(),
        )
    };
    assert!(half(false).is_empty());
    // The first half: clipped to the bitmap, every bit set.
    let words = t
        .read_domain_dirty_bitmap(&d, i, M / 2, 2048, false)
        .unwrap();
    assert_eq!(bits(&words), (0..256).collect::<Vec<_>>());
    // Reading the second half with clear still cleans the whole leaf.
    assert!(half(true).is_empty());
    assert!(bits(
        &t.read_domain_dirty_bitmap(&d, i, 2 * M, 2048, false)
            .unwrap()
    )
    .is_empty());
}

#[test]
fn a_read_stops_at_the_first_hole() {
    // __iommu_read_and_clear_dirty walks contiguous areas; the hole's
    // EINVAL is dropped, so what lies past it is neither reported nor cleaned.
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | RW, UVA, 0x2000, BASE).unwrap();
    t.map(FIXED | RW, UVA + 0x4000, 0x2000, BASE + 0x4000)
        .unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, BASE, 1, true).unwrap();
    t.dma_domain(&d, BASE + 0x5000, 1, true).unwrap();
    let words = t
        .read_domain_dirty_bitmap(&d, BASE, 0x6000, 0x1000, true)
        .unwrap();
    assert_eq!(bits(&words), vec![0]);
    let words = t
        .read_domain_dirty_bitmap(&d, BASE + 0x2000, 0x4000, 0x1000, true)
        .unwrap();
    assert!(bits(&words).is_empty(), "starts in the hole");
    let words = t
        .read_domain_dirty_bitmap(&d, BASE + 0x4000, 0x2000, 0x1000, false)
        .unwrap();
    assert_eq!(bits(&words), vec![1]);
}

/// _test_mock_dirty_bitmaps: one 2 KiB unit in every other leaf dirtied
/// through TEST_OP_DIRTY, then read at 2 KiB: per group of 2 * npte bits,
/// exactly the first npte set.
fn selftest_pattern(d: &SharedDomain, t: &IoPagetable, iova: u64, len: u64, pte: u64) {
    let ps = 2048;
    let nbits = len / ps;
    let npte = pte / ps;
    let pteset = 2 * npte;
    let mut bitmap = vec![0u8; nbits.div_ceil(8) as usize];
    let mut i = 0;
    while i < nbits {
        bitmap[(i / 8) as usize] |= 1 << (i % 8);
        i += pteset;
    }
    let n = write_domain(d).mark_dirty(iova, len, ps, &bitmap).unwrap();
    assert_eq!(n, (nbits / pteset).max(1));
    for clear in [false, true] {
        let words = t.read_domain_dirty_bitmap(d, iova, len, ps, clear).unwrap();
        let want: Vec<u64> = (0..nbits).filter(|b| b % pteset < npte).collect();
        assert_eq!(bits(&words), want, "clear={clear}");
    }
    let words = t.read_domain_dirty_bitmap(d, iova, len, ps, false).unwrap();
    assert!(bits(&words).is_empty());
}

#[test]
fn the_selftest_dirty_pattern_at_4k_and_1m() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | RW, UVA, 8 * M, BASE).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    selftest_pattern(&d, &t, BASE, 8 * M, 4096);
    let h = huge();
    let mut th = table_with(&h, true);
    th.map(FIXED | RW, UVA, 64 * M, 0x4000_0000).unwrap();
    write_domain(&h).set_dirty_tracking(true);
    selftest_pattern(&h, &th, 0x4000_0000, 64 * M, M);
}

#[test]
fn mark_dirty_checks_and_counts() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.map(FIXED | RW, UVA, 0x4000, BASE).unwrap();
    let mut dom = write_domain(&d);
    let one = [1u8];
    // Argument checks come before the tracking state.
    assert_eq!(errno(dom.mark_dirty(BASE, 0x800, 0, &one)), Errno::EINVAL);
    assert_eq!(errno(dom.mark_dirty(BASE, 0, 0x800, &one)), Errno::EINVAL);
    assert_eq!(
        errno(dom.mark_dirty(BASE + 0x400, 0x800, 0x800, &one)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(dom.mark_dirty(BASE, 0xc00, 0x800, &one)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(dom.mark_dirty(BASE, 0x800, 0x800, &[])),
        Errno::EINVAL
    );
    assert_eq!(
        errno(dom.mark_dirty(0, (16 << 20) * 8 + 1, 1, &one)),
        Errno::EOVERFLOW
    );
    assert_eq!(
        errno(dom.mark_dirty(BASE, 0x800, 0x800, &one)),
        Errno::EINVAL
    );
    dom.set_dirty_tracking(true);
    dom.mark_dirty(0, (16 << 20) * 8, 1, &[0; 1 << 24]).unwrap();
    assert_eq!(
        errno(dom.mark_dirty(BASE, 0x800 * 9, 0x800, &[0xff])),
        Errno::EFAULT,
        "9 bits need 2 bytes"
    );
    // Every set bit counts, mapped or not; bits past length/page_size are
    // not read.
    assert_eq!(
        dom.mark_dirty(BASE + 0x2000, 0x800 * 6, 0x800, &[0b1111_0101])
            .unwrap(),
        4
    );
    drop(dom);
    // Units 0, 2 (0x3000) and 4, 5 (0x4000.., unmapped, skipped).
    let words = t
        .read_domain_dirty_bitmap(&d, BASE, 0x4000, 0x1000, false)
        .unwrap();
    assert_eq!(bits(&words), vec![2, 3]);
}

// -- cuts ------------------------------------------------------------------------

#[test]
fn cut_splits_areas_and_skips_ends_and_holes() {
    let mut t = IoPagetable::new();
    t.map(FIXED | RW, UVA, 0x1_0000, 0x1_0000).unwrap();
    t.cut(&[0x3fff, 0x1_0000, 0x1_ffff, 0x2_0000]).unwrap();
    assert_eq!(t.num_areas(), 1, "a hole, the first and the last IOVA");
    t.cut(&[0x1_3fff, 0x1_7fff]).unwrap();
    assert_eq!(
        areas(&t),
        vec![
            (0x1_0000, 0x4000, UVA, RW),
            (0x1_4000, 0x4000, UVA + 0x4000, RW),
            (0x1_8000, 0x8000, UVA + 0x8000, RW)
        ]
    );
    assert_eq!(t.mapped_bytes(), 0x1_0000);
    assert_eq!(t.translate(0x1_9234), Some((UVA + 0x9234, RW)));
    // What compat unmap does: cut both ends, then unmap the middle.
    t.cut(&[0x1_8fff, 0x1_9fff]).unwrap();
    assert_eq!(t.unmap(0x1_9000, 0x1000).unwrap(), 0x1000);
    assert_eq!(t.num_areas(), 4);
}

#[test]
fn cut_errors_and_partial_effect() {
    let mut t = IoPagetable::new();
    t.set_iova_alignment(0x1000).unwrap();
    t.map(FIXED | RW, UVA, 0x1_0000, 0x1_0000).unwrap();
    // p + 1 not aligned: EINVAL, after the first cut is done.
    assert_eq!(errno(t.cut(&[0x1_3fff, 0x1_57ff, 0x1_8fff])), Errno::EINVAL);
    assert_eq!(t.num_areas(), 2);
    // A domain with large pages on: EINVAL.
    let d = mock();
    t.add_domain(&d).unwrap();
    assert_eq!(errno(t.cut(&[0x1_7fff])), Errno::EINVAL);
    assert_eq!(t.num_areas(), 2);
    // Points in no area are skipped before anything is checked.
    t.cut(&[0x8000, 0x1_0000, 0x1_3fff]).unwrap();
    // Large pages off: allowed.
    t.set_large_pages(false);
    t.cut(&[0x1_7fff]).unwrap();
    assert_eq!(t.num_areas(), 3);
    // Only the domain's presence matters: removed, the cut works with large pages.
    t.set_large_pages(true);
    t.remove_domain(&d).unwrap();
    t.cut(&[0x1_8fff]).unwrap();
    assert_eq!(t.num_areas(), 4);
}

#[test]
fn cut_keeps_domain_leaves_and_dirty_state() {
    let d = mock();
    let mut t = table_with(&d, false);
    t.set_dirty_tracking(true);
    // A 2 KiB alignment lets a cut fall inside a 4 KiB leaf.
    t.set_iova_alignment(0x800).unwrap();
    t.map(FIXED | RW, UVA, 0x8000, BASE).unwrap();
    write_domain(&d).set_dirty_tracking(true);
    t.dma_domain(&d, BASE + 0x2100, 1, true).unwrap();
    t.dma_domain(&d, BASE + 0x5000, 0x1000, true).unwrap();
    let before_leaves = leaves(&d, BASE, 0x8000);
    let before = t
        .read_domain_dirty_bitmap(&d, BASE, 0x8000, 0x800, false)
        .unwrap();
    t.cut(&[BASE + 0x27ff, BASE + 0x4fff]).unwrap();
    assert_eq!(t.num_areas(), 3);
    assert_eq!(entries(&d), areas(&t));
    assert_eq!(leaves(&d, BASE, 0x8000), before_leaves);
    assert_eq!(
        read_domain(&d).leaf_at(BASE + 0x2900),
        Some((BASE + 0x2000, 0x1000)),
        "the 4 KiB leaf the cut went through stays whole"
    );
    assert_eq!(
        t.read_domain_dirty_bitmap(&d, BASE, 0x8000, 0x800, false)
            .unwrap(),
        before
    );
    assert_eq!(bits(&before), vec![4, 5, 10, 11]);
    // The table's own dirty pages split with the area, a shared page in both.
    assert_eq!(
        bits(&t.read_dirty_bitmap(BASE, 0x8000, 0x1000, false).unwrap()),
        vec![2, 5]
    );
    assert_eq!(
        bits(
            &t.read_dirty_bitmap(BASE + 0x2800, 0x800, 0x800, false)
                .unwrap()
        ),
        vec![0],
        "the table's bits are per 4 KiB page: the right half of page 2 reads dirty"
    );
    assert_eq!(
        bits(
            &t.read_dirty_bitmap(BASE + 0x2000, 0x1000, 0x1000, false)
                .unwrap()
        ),
        vec![0]
    );
    // Unmapping a piece drops its entries and dirty state only.
    t.unmap(BASE + 0x5000, 0x3000).unwrap();
    assert_eq!(entries(&d), areas(&t));
    assert_eq!(
        bits(
            &t.read_domain_dirty_bitmap(&d, BASE, 0x5000, 0x800, false)
                .unwrap()
        ),
        vec![4, 5]
    );
}

// -- locking ---------------------------------------------------------------------

#[test]
fn lock_order_holds_under_concurrent_translate_batch() {
    // Table lock, then domain lock: translate batches (table read), maps
    // and unmaps (table write → domain write), dirty reads (table read →
    // domain write) and domain-only calls (domain lock alone) run together.
    let d = mock();
    let table = Arc::new(RwLock::new(table_with(&d, false)));
    table
        .write()
        .unwrap()
        .map(FIXED | RW, UVA, 64 * M, BASE)
        .unwrap();
    write_domain(&d).set_dirty_tracking(true);
    let rounds = 300;
    std::thread::scope(|s| {
        let t1 = Arc::clone(&table);
        s.spawn(move || {
            let iovas: Vec<u64> = (0..4096).map(|k| BASE + k * 0x4000).collect();
            let (mut pas, mut prots) = (vec![0; 4096], vec![0; 4096]);
            for _ in 0..rounds {
                let n = t1
                    .read()
                    .unwrap()
                    .translate_batch_on(&iovas, &mut pas, &mut prots, 2);
                assert_eq!(n, 4096);
            }
        });
        let (t2, d2) = (Arc::clone(&table), Arc::clone(&d));
        s.spawn(move || {
            for k in 0..rounds as u64 {
                let at = BASE + 128 * M + (k % 8) * M;
                let mut t = t2.write().unwrap();
                t.map(FIXED | RW, UVA + at, M, at).unwrap();
                t.dma_domain(&d2, at, 1, true).unwrap();
                t.unmap(at, M).unwrap();
            }
        });
        let (t3, d3) = (Arc::clone(&table), Arc::clone(&d));
        s.spawn(move || {
            for _ in 0..rounds {
                t3.read()
                    .unwrap()
                    .read_domain_dirty_bitmap(&d3, BASE, 64 * M, 0x1000, true)
                    .unwrap();
            }
        });
        let d4 = Arc::clone(&d);
        s.spawn(move || {
            for k in 0..rounds as u64 {
                let mut dom = write_domain(&d4);
                dom.mark_dirty(BASE + k * 0x800, 0x800, 0x800, &[1])
                    .unwrap();
                assert_eq!(dom.translate(BASE), Some((UVA, RW)));
            }
        });
    });
    let t = table.read().unwrap();
    assert_eq!(entries(&d), areas(&t));
}

// -- the leaf formula against the greedy fill it stands for --------------------

mod common;
use common::Rng;

/// pt_compute_best_pgsize applied leaf by leaf, from the start of each fill
/// chunk (PAGE_SIZE chunks when capped).
fn greedy(sizes: u64, iova: u64, len: u64, pa: u64, cap: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let end = iova + len;
    let mut chunk = iova;
    while chunk < end {
        let chunk_end = if cap == 0 {
            end
        } else {
            (chunk + cap).min(end)
        };
        let mut v = chunk;
        while v < chunk_end {
            let oa = pa + (v - iova);
            let best = (0..64)
                .rev()
                .map(|b| 1u64 << b)
                .find(|&sz| sizes & sz != 0 && (v | oa).is_multiple_of(sz) && sz <= chunk_end - v)
                .expect("the smallest size always fits");
            out.push((v, best));
            v += best;
        }
        chunk = chunk_end;
    }
    out
}

#[test]
fn leaf_at_matches_the_greedy_fill() {
    let mut rng = Rng(0x5eed);
    for round in 0..3000 {
        // A random page-size set with a random smallest size from 512 B to 4 KiB.
        let min_lg2 = 9 + rng.below(4);
        let mut sizes = 1u64 << min_lg2;
        for b in min_lg2 + 1..min_lg2 + 12 {
            if rng.below(2) == 0 {
                sizes |= 1 << b;
            }
        }
        let min = 1u64 << min_lg2;
        let iova = 0x1000_0000 + rng.below(1 << 12) * min;
        let len = (1 + rng.below(600)) * min;
        let pa = 0x7f00_0000_0000 + rng.below(1 << 14) * min;
        let large = rng.below(3) != 0;
        let cap = if large { 0 } else { 0x1000 };
        if !large && min > 0x1000 {
            continue;
        }
        let d = Domain::new(sizes, 0, MAX).unwrap().shared();
        let mut t = table_with(&d, large);
        t.map(FIXED | RW, pa, len, iova).unwrap();
        let want = greedy(sizes, iova, len, pa, cap);
        assert_eq!(
            leaves(&d, iova, len),
            want,
            "round {round}: sizes {sizes:#x} iova {iova:#x} len {len:#x} pa {pa:#x} cap {cap:#x}"
        );
        let dom = read_domain(&d);
        for _ in 0..8 {
            let x = iova + rng.below(len);
            let leaf = want.iter().find(|l| l.0 <= x && x < l.0 + l.1).copied();
            assert_eq!(dom.leaf_at(x), leaf, "round {round}: leaf_at({x:#x})");
        }
    }
}

#[test]
fn memory_bytes_counts_areas_dirty_state_and_domain_entries() {
    let d = mock();
    let mut t = table_with(&d, true);
    let empty_table = t.memory_bytes();
    let empty_domain = read_domain(&d).memory_bytes();
    assert!(empty_table >= empty_domain, "the table counts its domain");
    for i in 0..1000u64 {
        t.map(RW | FIXED, UVA + i * 0x2000, 0x1000, BASE + i * 0x2000)
            .unwrap();
    }
    let domain = read_domain(&d).memory_bytes();
    // At least the entries themselves, and not wildly more.
    assert!(domain >= empty_domain + 1000 * 56, "{domain}");
    assert!(domain <= empty_domain + 1000 * 300, "{domain}");
    let table = t.memory_bytes();
    assert!(
        table >= empty_table + (domain - empty_domain) + 1000 * 32,
        "{table}"
    );
    // Dirty state: one bitmap per written area, counted.
    t.set_dirty_tracking(true);
    for i in 0..100u64 {
        t.dma(BASE + i * 0x2000, 8, true).unwrap();
    }
    assert!(t.memory_bytes() > table, "dirty bitmaps are counted");
    // A detached domain is empty again; the table is back near empty.
    t.remove_domain(&d).unwrap();
    assert_eq!(read_domain(&d).memory_bytes(), empty_domain);
    t.unmap_all();
    assert!(t.memory_bytes() < table / 4, "{}", t.memory_bytes());
}
