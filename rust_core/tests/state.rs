//! Snapshot records (state.rs): a table, a domain and a type1 state come
//! back from their records exactly as they were, attached domains keep
//! their leaves and dirty state, and damaged records are EINVAL.

use iommud_core::io_pagetable::{
    IOMMU_IOAS_MAP_FIXED_IOVA as FIXED, IOMMU_IOAS_MAP_READABLE as R, IOMMU_IOAS_MAP_WRITEABLE as W,
};
use iommud_core::{read_domain, Domain, Errno, IoPagetable, Type1Dma, PAGE_SIZE};

const RW: u32 = R | W;
const UVA: u64 = 0x7f00_0000_0000;

fn errno<T>(r: iommud_core::Result<T>) -> Errno {
    match r {
        Ok(_) => panic!("call should fail"),
        Err(e) => e.errno,
    }
}

/// A table with every kind of state a record holds.
fn busy_table() -> IoPagetable {
    let mut t = IoPagetable::new();
    t.allow_iovas(&[(0x1000, 0x7fff_ffff)]).unwrap();
    t.add_reserved(0x8000_0000, 0x8000_ffff, 7).unwrap();
    t.set_iova_alignment(PAGE_SIZE).unwrap();
    t.set_max_areas(Some(1000));
    for i in 0..300u64 {
        t.map(RW | FIXED, UVA + i * 0x4000, 0x2000, 0x10_0000 + i * 0x3000)
            .unwrap();
    }
    t.map(R, UVA, 0x10_0000, 0).unwrap(); // an allocated IOVA
    t.set_dirty_tracking(true);
    t.dma(0x10_0000, 8, true).unwrap();
    t.dma(0x10_3000 + 0x1000, 0x10, true).unwrap();
    t
}

fn same_tables(a: &IoPagetable, b: &IoPagetable) {
    assert_eq!(a.areas().collect::<Vec<_>>(), b.areas().collect::<Vec<_>>());
    assert_eq!(a.reserved(), b.reserved());
    assert_eq!(a.allowed(), b.allowed());
    assert_eq!(a.iova_alignment(), b.iova_alignment());
    assert_eq!(a.mapped_bytes(), b.mapped_bytes());
    assert_eq!(a.dirty_tracking(), b.dirty_tracking());
    assert_eq!(a.iova_ranges(), b.iova_ranges());
    assert_eq!(a.large_pages(), b.large_pages());
}

#[test]
fn a_table_comes_back_whole() {
    let mut t = busy_table();
    let mut back = IoPagetable::from_state(&t.to_state()).unwrap();
    same_tables(&t, &back);
    assert_eq!(back.to_state(), t.to_state());
    // Dirty bits, read and cleared, are the same on both.
    let want = t
        .read_dirty_bitmap(0x10_0000, 0x10_0000, PAGE_SIZE, true)
        .unwrap();
    let got = back
        .read_dirty_bitmap(0x10_0000, 0x10_0000, PAGE_SIZE, true)
        .unwrap();
    assert_eq!(want, got);
    assert_ne!(want.iter().sum::<u64>(), 0);
    // The loaded table keeps its rules: the limit, the reserved range, the
    // allocator's view of the holes.
    assert_eq!(
        errno(back.map(RW | FIXED, UVA, 0x1000, 0x8000_0000)),
        t.map(RW | FIXED, UVA, 0x1000, 0x8000_0000)
            .unwrap_err()
            .errno
    );
    assert_eq!(
        back.map(RW, UVA, 0x5000, 0).unwrap(),
        t.map(RW, UVA, 0x5000, 0).unwrap()
    );
    back.set_max_areas(Some(back.num_areas()));
    assert_eq!(errno(back.map(RW, UVA, 0x1000, 0)), Errno::ENOSPC);
}

#[test]
fn an_attached_domain_comes_back_with_its_leaves_and_dirty_state() {
    let mut t = IoPagetable::new();
    t.map(RW | FIXED, UVA, 0x20_0000, 0x40_0000).unwrap();
    t.map(RW | FIXED, UVA + 0x40_0000, 0x3000, 0x80_0000)
        .unwrap();
    let d = Domain::new(0x20_1000, 0, (1 << 40) - 1).unwrap().shared();
    t.add_domain(&d).unwrap();
    d.write().unwrap().set_dirty_tracking(true);
    t.dma_domain(&d, 0x40_0010, 4, true).unwrap();

    let mut t2 = IoPagetable::from_state(&t.to_state()).unwrap();
    let d2 = Domain::from_state(&read_domain(&d).to_state())
        .unwrap()
        .shared();
    assert!(!read_domain(&d2).attached());
    t2.attach_filled(&d2).unwrap();
    assert!(read_domain(&d2).attached());
    assert_eq!(t2.num_domains(), 1);
    let (a, b) = (read_domain(&d), read_domain(&d2));
    assert_eq!(
        a.entries().collect::<Vec<_>>(),
        b.entries().collect::<Vec<_>>()
    );
    assert_eq!(a.leaves(0, u64::MAX), b.leaves(0, u64::MAX));
    assert_eq!(a.dirty_ranges(), b.dirty_ranges());
    assert_eq!(a.dirty_ranges(), vec![(0x40_0000, 0x5f_ffff)]); // one 2 MiB leaf
    assert_eq!(a.mapped_bytes(), b.mapped_bytes());
    drop((a, b));
    // From here on the pair behaves as the original: a map fills it.
    t2.map(RW | FIXED, UVA, 0x1000, 0x100_0000).unwrap();
    assert_eq!(read_domain(&d2).translate(0x100_0008), Some((UVA + 8, RW)));
    // Attached twice, or elsewhere: the kernel's EEXIST and EBUSY.
    assert_eq!(errno(t2.attach_filled(&d2)), Errno::EEXIST);
    let mut t3 = IoPagetable::from_state(&t.to_state()).unwrap();
    assert_eq!(errno(t3.attach_filled(&d2)), Errno::EBUSY);
}

#[test]
fn a_domain_that_does_not_match_its_table_is_refused() {
    let mut t = IoPagetable::new();
    t.map(RW | FIXED, UVA, 0x2000, 0x10_0000).unwrap();
    let d = Domain::new(0x1000, 0, u64::MAX - 1).unwrap().shared();
    t.add_domain(&d).unwrap();
    let record = read_domain(&d).to_state();
    t.map(RW | FIXED, UVA, 0x1000, 0x20_0000).unwrap();
    let mut t2 = IoPagetable::from_state(&t.to_state()).unwrap();
    let d2 = Domain::from_state(&record).unwrap().shared();
    assert_eq!(errno(t2.attach_filled(&d2)), Errno::EINVAL);
    assert_eq!(t2.num_domains(), 0);
    assert!(!read_domain(&d2).attached());
}

#[test]
fn type1_state_comes_back_whole() {
    let t = Type1Dma::new(65535);
    let back = Type1Dma::from_state(&t.to_state()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn damaged_records_are_einval_and_never_half_loaded() {
    let record = busy_table().to_state();
    // Every truncation, and a byte flipped in the header, is refused.
    for cut in [0, 3, 8, 20, record.len() / 2, record.len() - 1] {
        assert_eq!(
            errno(IoPagetable::from_state(&record[..cut])),
            Errno::EINVAL
        );
    }
    let mut longer = record.clone();
    longer.push(0);
    assert_eq!(errno(IoPagetable::from_state(&longer)), Errno::EINVAL);
    let mut wrong_version = record.clone();
    wrong_version[4] ^= 1;
    assert_eq!(
        errno(IoPagetable::from_state(&wrong_version)),
        Errno::EINVAL
    );
    // A huge count cannot make the loader allocate: the bytes must hold it.
    let mut huge_count = record.clone();
    let at = 8 + 8 + 1 + 1 + 8; // alignment, large pages, limit flag, limit
    huge_count[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(errno(IoPagetable::from_state(&huge_count)), Errno::EINVAL);
    // One kind of record is not another.
    assert_eq!(errno(Domain::from_state(&record)), Errno::EINVAL);
    assert_eq!(errno(Type1Dma::from_state(&record)), Errno::EINVAL);
}

#[test]
fn dirty_state_bytes_follow_marks_cuts_unmaps_and_snapshots() {
    let mut t = IoPagetable::new();
    t.map(RW | FIXED, UVA, 0x200_000, 0x100_0000).unwrap(); // 512 pages: 8 words
    t.map(RW | FIXED, UVA, 0x41_000, 0x200_0000).unwrap(); // 65 pages: 2 words
    t.set_dirty_tracking(true);
    assert_eq!(t.dirty_state_bytes(), 0);
    t.dma(0x100_0000, 8, true).unwrap();
    assert_eq!(t.dirty_state_bytes(), 8 * 8);
    t.dma(0x200_0000, 8, true).unwrap();
    assert_eq!(t.dirty_state_bytes(), 10 * 8);
    let back = IoPagetable::from_state(&t.to_state()).unwrap();
    assert_eq!(back.dirty_state_bytes(), 10 * 8);
    // A cut splits an area's bits: 0x80 pages (2 words) and 0x180 (6 words).
    t.cut(&[0x107_ffff]).unwrap();
    assert_eq!(t.dirty_state_bytes(), (2 + 6 + 2) * 8);
    t.unmap(0x200_0000, 0x41_000).unwrap();
    assert_eq!(t.dirty_state_bytes(), (2 + 6) * 8);
    t.set_dirty_tracking(false);
    assert_eq!(t.dirty_state_bytes(), 0);
}
