//! Edge cases of the IO page table, one kernel rule per test
//! (semantics document §2.2-2.8 and §8 rules 11-35).

use iommud_core::io_pagetable::{
    IOMMU_IOAS_MAP_FIXED_IOVA as FIXED, IOMMU_IOAS_MAP_READABLE as R, IOMMU_IOAS_MAP_WRITEABLE as W,
};
use iommud_core::{check_copy_args, check_map_args, copy, copy_within, Errno, IoPagetable};

const RW: u32 = R | W;
const MAX: u64 = u64::MAX;

fn errno<T: std::fmt::Debug>(r: iommud_core::Result<T>) -> Errno {
    r.expect_err("call should fail").errno
}

fn areas(t: &IoPagetable) -> Vec<(u64, u64, u64, u32)> {
    t.areas()
        .map(|a| (a.iova, a.length(), a.user_va, a.prot))
        .collect()
}

#[test]
fn fresh_table_has_one_full_range_and_alignment_1() {
    let t = IoPagetable::new();
    assert_eq!(t.iova_ranges(), vec![(0, MAX)]);
    assert_eq!(t.iova_alignment(), 1);
    assert_eq!(t.num_areas(), 0);
}

#[test]
fn map_argument_checks_in_kernel_order() {
    assert_eq!(
        errno(check_map_args(RW | 1 << 8, 0, 0x1000)),
        Errno::EOPNOTSUPP
    );
    assert_eq!(errno(check_map_args(RW, MAX, 0x1000)), Errno::EOVERFLOW);
    assert_eq!(errno(check_map_args(RW, 0, MAX)), Errno::EOVERFLOW);
    assert_eq!(errno(check_map_args(FIXED, 0, 0x1000)), Errno::EINVAL);
    // Unknown flags win over overflow, overflow over a missing R/W.
    assert_eq!(errno(check_map_args(1 << 8, MAX, 0)), Errno::EOPNOTSUPP);
    assert_eq!(errno(check_map_args(FIXED, MAX, 0)), Errno::EOVERFLOW);
    check_map_args(RW, MAX - 1, MAX - 1).unwrap();
}

#[test]
fn zero_length_and_user_va_overflow() {
    let mut t = IoPagetable::new();
    assert_eq!(errno(t.map(FIXED | RW, 0, 0, 0x1000)), Errno::EINVAL);
    assert_eq!(
        errno(t.map(FIXED | RW, MAX - 0xfff, 0x1000, 0x1000)),
        Errno::EOVERFLOW
    );
    assert_eq!(
        errno(t.map(FIXED | RW, 0, MAX - 0x1000 + 1, 0)),
        Errno::EINVAL
    );
    assert_eq!(t.num_areas(), 0);
}

#[test]
fn fixed_map_overlap_is_eexist_and_changes_nothing() {
    let mut t = IoPagetable::new();
    t.map(FIXED | RW, 0x10_0000, 0x2000, 0x4000).unwrap();
    let before = areas(&t);
    for (iova, len) in [
        (0x4000, 0x1000),
        (0x3000, 0x2000),
        (0x5fff, 1),
        (0x3000, 0x10000),
    ] {
        assert_eq!(
            errno(t.map(FIXED | RW, 0, len, iova)),
            Errno::EEXIST,
            "{iova:#x}+{len:#x}"
        );
    }
    assert_eq!(areas(&t), before);
    t.map(FIXED | RW, 0, 0x1000, 0x6000).unwrap(); // adjacent is fine
    t.map(FIXED | RW, 0, 0x1000, 0x3000).unwrap();
}

#[test]
fn fixed_map_unaligned_on_fresh_table_is_fine_and_reaches_the_top() {
    let mut t = IoPagetable::new();
    t.map(FIXED | R, 0x1, 0x3, 0x12345).unwrap();
    // The last byte of the space can be mapped: [2^64-2, 2^64-1].
    t.map(FIXED | R, 0, 2, MAX - 1).unwrap();
    assert_eq!(t.translate(MAX), Some((1, R)));
    assert_eq!(errno(t.map(FIXED | R, 0, 3, MAX - 1)), Errno::EOVERFLOW);
}

#[test]
fn alignment_rules() {
    let mut t = IoPagetable::new();
    t.set_iova_alignment(0x1000).unwrap();
    assert_eq!(errno(t.map(FIXED | RW, 0, 0x800, 0x1000)), Errno::EINVAL); // length
    assert_eq!(errno(t.map(FIXED | RW, 0, 0x1000, 0x1800)), Errno::EINVAL); // iova
    assert_eq!(
        errno(t.map(FIXED | RW, 0x10, 0x1000, 0x1000)),
        Errno::EINVAL
    ); // user offset
    t.map(FIXED | RW, 0x7000, 0x1000, 0x1000).unwrap();
    assert_eq!(errno(t.set_iova_alignment(3)), Errno::EINVAL);
    t.set_iova_alignment(1).unwrap();
    t.map(FIXED | RW, 0, 0x10, 0x10_0010).unwrap();
    assert_eq!(errno(t.set_iova_alignment(0x1000)), Errno::EADDRINUSE);
    assert_eq!(t.iova_alignment(), 1);
}

#[test]
fn reserved_boundary_is_inclusive() {
    let mut t = IoPagetable::new();
    t.add_reserved(0xfee0_0000, 0xfeef_ffff, 7).unwrap();
    assert_eq!(t.iova_ranges(), vec![(0, 0xfedf_ffff), (0xfef0_0000, MAX)]);
    assert_eq!(
        errno(t.map(FIXED | RW, 0, 0x1000, 0xfeef_f000)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(t.map(FIXED | RW, 0, 0x1000, 0xfedf_f001)),
        Errno::EINVAL
    );
    t.map(FIXED | RW, 0, 0x1000, 0xfedf_f000).unwrap(); // ends just below
    t.map(FIXED | RW, 0, 0x1000, 0xfef0_0000).unwrap(); // starts just above
    assert_eq!(
        errno(t.add_reserved(0xfef0_0000, 0xfef0_0000, 8)),
        Errno::EADDRINUSE
    );
    assert_eq!(errno(t.add_reserved(2, 1, 8)), Errno::EINVAL);
    t.remove_reserved(7);
    assert_eq!(t.iova_ranges(), vec![(0, MAX)]);
}

#[test]
fn reserved_ranges_reaching_the_top_and_overlapping() {
    let mut t = IoPagetable::new();
    t.add_reserved(1 << 48, MAX, 1).unwrap();
    t.add_reserved(0x1000, 0x1fff, 2).unwrap();
    t.add_reserved(0x1800, 0x2fff, 3).unwrap();
    assert_eq!(t.iova_ranges(), vec![(0, 0xfff), (0x3000, (1 << 48) - 1)]);
    t.add_reserved(0, 0xfff, 4).unwrap();
    assert_eq!(t.iova_ranges(), vec![(0x3000, (1 << 48) - 1)]);
}

#[test]
fn allowed_list_rules() {
    let mut t = IoPagetable::new();
    assert_eq!(errno(t.allow_iovas(&[(0x1000, 0x1000)])), Errno::EINVAL); // start == last
    assert_eq!(
        errno(t.allow_iovas(&[(0x1000, 0x2fff), (0x2000, 0x4fff)])),
        Errno::EINVAL
    );
    t.add_reserved(0x10_0000, 0x10_ffff, 1).unwrap();
    assert_eq!(
        errno(t.allow_iovas(&[(0x1000, 0x20_0000)])),
        Errno::EADDRINUSE
    );
    assert!(t.allowed().is_empty());
    t.allow_iovas(&[(0x20_0000, 0x3f_ffff)]).unwrap();
    assert_eq!(
        errno(t.add_reserved(0x30_0000, 0x30_0fff, 2)),
        Errno::EADDRINUSE
    );
    let iova = t.map(RW, 0, 0x1000, 0).unwrap();
    assert!((0x20_0000..=0x3f_ffff).contains(&iova));
    t.map(FIXED | RW, 0, 0x1000, 0x1000).unwrap(); // fixed ignores the allowed list
    assert_eq!(errno(t.map(RW, 0, 0x40_0000, 0)), Errno::ENOSPC);
    t.allow_iovas(&[]).unwrap();
    assert!(t.allowed().is_empty());
}

#[test]
fn allocation_never_returns_zero_and_keeps_page_offset() {
    let mut t = IoPagetable::new();
    for (user_va, len) in [
        (0, 0x1000),
        (0x7f00_0000_0123, 0x100),
        (0x20_0000, 0x20_0000),
        (0x5008, 0x3000),
    ] {
        let iova = t.map(RW, user_va, len, 0).unwrap();
        assert_ne!(iova, 0);
        assert_eq!(iova % 0x1000, user_va % 0x1000, "user_va {user_va:#x}");
        assert_eq!(t.translate(iova), Some((user_va, RW)));
    }
    // A 2 MiB-aligned user address gets a 2 MiB-aligned IOVA.
    let iova = t.map(RW, 0x4000_0000, 0x20_0000, 0).unwrap();
    assert_eq!(iova % 0x20_0000, 0);
}

#[test]
fn allocation_limits() {
    let mut t = IoPagetable::new();
    assert_eq!(errno(t.map(RW, 0, MAX / 2, 0)), Errno::EOVERFLOW);
    t.set_iova_alignment(0x1000).unwrap();
    // user_va aligned to 0x800 only: below the IOAS alignment.
    assert_eq!(errno(t.map(RW, 0x800, 0x1000, 0)), Errno::EINVAL);
    t.allow_iovas(&[(0x1000, 0x2fff)]).unwrap();
    t.map(RW, 0, 0x1000, 0).unwrap();
    t.map(RW, 0, 0x1000, 0).unwrap();
    assert_eq!(errno(t.map(RW, 0, 0x1000, 0)), Errno::ENOSPC);
}

#[test]
fn unmap_rules() {
    let mut t = IoPagetable::new();
    assert_eq!(t.unmap(0, MAX).unwrap(), 0); // unmap-all of an empty table
    t.map(FIXED | RW, 0, 0x2000, 0x1000).unwrap();
    t.map(FIXED | RW, 0, 0x1000, 0x5000).unwrap();
    t.map(FIXED | RW, 0, 0x3000, 0x8000).unwrap();
    assert_eq!(errno(t.unmap(0x1000, 0x1000)), Errno::ENOENT); // split
    assert_eq!(t.num_areas(), 3);
    assert_eq!(errno(t.unmap(0x1000, 0)), Errno::EINVAL);
    assert_eq!(errno(t.unmap(MAX, 1)), Errno::EOVERFLOW);
    assert_eq!(errno(t.unmap(3, MAX - 1)), Errno::EOVERFLOW);
    assert_eq!(errno(t.unmap(0x20000, 0x1000)), Errno::ENOENT); // nothing there
    assert_eq!(t.unmap(0, 0x6000).unwrap(), 0x3000); // two areas and the gap
                                                     // Rule 33: the end cuts into the last area; earlier whole areas go anyway.
    t.map(FIXED | RW, 0, 0x1000, 0x1000).unwrap();
    assert_eq!(errno(t.unmap(0, 0x9000)), Errno::ENOENT);
    assert_eq!(areas(&t), vec![(0x8000, 0x3000, 0, RW)]);
    assert_eq!(t.unmap(0, MAX).unwrap(), 0x3000);
    assert_eq!(t.mapped_bytes(), 0);
}

#[test]
fn area_from_finds_the_containing_or_next_area() {
    let mut t = IoPagetable::new();
    t.map(FIXED | RW, 0, 0x1000, 0x1000).unwrap();
    t.map(FIXED | RW, 0, 0x1000, 0x8000).unwrap();
    assert_eq!(t.area_from(0x1800).map(|a| a.iova), Some(0x1000));
    assert_eq!(t.area_from(0x2000).map(|a| a.iova), Some(0x8000));
    assert_eq!(t.area_from(0x9000), None);
}

#[test]
fn sparse_unmap_over_the_whole_space_is_cheap() {
    let mut t = IoPagetable::new();
    for i in 0..1000u64 {
        t.map(FIXED | RW, 0, 0x1000, i << 30).unwrap(); // 1000 areas over 1 TiB
    }
    assert_eq!(t.unmap(0, MAX - 1).unwrap(), 1000 * 0x1000);
    assert_eq!(t.num_areas(), 0);
}

#[test]
fn translate_batch_uses_and_refreshes_its_cache() {
    let mut t = IoPagetable::new();
    t.map(FIXED | R, 0x9000_0000, 0x2000, 0x1000).unwrap();
    t.map(FIXED | W, 0xa000_0000, 0x1000, 0x4000).unwrap();
    let iovas = [0x1000, 0x1fff, 0x2fff, 0x3000, 0x4000, 0x1001, 0];
    let mut pas = [0u64; 7];
    let mut prots = [0u8; 7];
    assert_eq!(t.translate_batch(&iovas, &mut pas, &mut prots), 5);
    assert_eq!(
        pas,
        [
            0x9000_0000,
            0x9000_0fff,
            0x9000_1fff,
            0,
            0xa000_0000,
            0x9000_0001,
            0
        ]
    );
    assert_eq!(prots, [4, 4, 4, 0, 2, 4, 0]);
}

#[test]
fn copy_rules() {
    assert_eq!(errno(check_copy_args(RW | 8, 0, 1, 0)), Errno::EOPNOTSUPP);
    assert_eq!(errno(check_copy_args(RW, MAX, 1, 0)), Errno::EOVERFLOW);
    assert_eq!(errno(check_copy_args(FIXED, 0, 1, 0)), Errno::EINVAL);
    let mut src = IoPagetable::new();
    let mut dst = IoPagetable::new();
    src.map(FIXED | RW, 0x10_0000, 0x2000, 0x1000).unwrap();
    src.map(FIXED | R, 0x20_0000, 0x1000, 0x3000).unwrap();
    src.map(FIXED | RW, 0x30_0000, 0x1000, 0x6000).unwrap();
    assert_eq!(
        errno(copy(&mut dst, &src, FIXED | RW, 0x1000, 0, 0x1000)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(copy(&mut dst, &src, FIXED | RW, 0x1000, 0x4000, 0)),
        Errno::ENOENT
    ); // hole
    assert_eq!(
        errno(copy(&mut dst, &src, FIXED | RW, 0x1000, 0x3000, 0)),
        Errno::EPERM
    ); // RO part
    assert_eq!(dst.num_areas(), 0);
    // A sub-range spanning two areas becomes two areas.
    let at = copy(&mut dst, &src, FIXED | R, 0x1800, 0x2000, 0x10_0000).unwrap();
    assert_eq!(at, 0x10_0000);
    assert_eq!(
        areas(&dst),
        vec![
            (0x10_0000, 0x1800, 0x10_0800, R),
            (0x10_1800, 0x800, 0x20_0000, R)
        ]
    );
    assert_eq!(
        errno(copy(&mut dst, &src, FIXED | R, 0x1000, 0x1000, 0x10_0000)),
        Errno::EEXIST
    );
    let auto = copy(&mut dst, &src, RW, 0x6000, 0x1000, 0).unwrap();
    assert_ne!(auto, 0);
    assert_eq!(dst.translate(auto), Some((0x30_0000, RW)));
    let within = copy_within(&mut src, R, 0x1000, 0x1000, 0).unwrap();
    assert_eq!(src.translate(within), Some((0x10_0000, R)));
}

#[test]
fn dma_and_dirty_bitmap() {
    let mut t = IoPagetable::new();
    t.map(FIXED | RW, 0x10_0000, 0x4000, 0x1000).unwrap();
    t.map(FIXED | R, 0x20_0000, 0x1000, 0x5000).unwrap();
    assert_eq!(t.dma(0x1008, 8, true).unwrap(), 0x10_0008);
    assert_eq!(errno(t.dma(0x5000, 4, true)), Errno::EPERM);
    assert_eq!(errno(t.dma(0x6000, 4, false)), Errno::ENOENT);
    // An access may span contiguous areas; each must permit it.
    assert_eq!(t.dma(0x4ffc, 8, false).unwrap(), 0x10_3ffc);
    assert_eq!(errno(t.dma(0x4ffc, 8, true)), Errno::EPERM);
    // Tracking off: writes leave no state.
    assert_eq!(
        t.read_dirty_bitmap(0x1000, 0x4000, 0x1000, false).unwrap(),
        vec![0]
    );
    t.set_dirty_tracking(true);
    t.dma(0x1ff8, 0x10, true).unwrap(); // touches pages 1 and 2 of the range
    t.dma(0x4000, 1, true).unwrap();
    t.dma(0x3000, 8, false).unwrap(); // a read marks nothing
    assert_eq!(
        t.read_dirty_bitmap(0x1000, 0x4000, 0x1000, true).unwrap(),
        vec![0b1011]
    );
    assert_eq!(
        t.read_dirty_bitmap(0x1000, 0x4000, 0x1000, false).unwrap(),
        vec![0]
    );
    t.dma(0x2000, 1, true).unwrap();
    assert_eq!(
        t.read_dirty_bitmap(0x0, 0x8000, 0x2000, false).unwrap(),
        vec![0b10]
    );
    assert_eq!(
        errno(t.read_dirty_bitmap(0x1000, 0x1000, 0, false)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(t.read_dirty_bitmap(0x1000, 0x1000, 0x2000, false)),
        Errno::EINVAL
    );
    assert_eq!(
        errno(t.read_dirty_bitmap(MAX, 2, 1, false)),
        Errno::EOVERFLOW
    );
    t.unmap(0x1000, 0x4000).unwrap(); // unmapping drops the area's dirty state
    assert_eq!(
        t.read_dirty_bitmap(0x1000, 0x4000, 0x1000, false).unwrap(),
        vec![0]
    );
}

#[test]
fn area_limit_refuses_with_enospc_and_changes_nothing() {
    let mut t = IoPagetable::new();
    t.set_max_areas(Some(3));
    t.map(RW | FIXED, 0xA000, 0x1000, 0x1000).unwrap();
    t.map(RW | FIXED, 0xB000, 0x1000, 0x3000).unwrap();
    t.map(RW, 0xC000, 0x1000, 0).unwrap();
    let before = areas(&t);
    assert_eq!(
        errno(t.map(RW | FIXED, 0xD000, 0x1000, 0x10_0000)),
        Errno::ENOSPC
    );
    assert_eq!(errno(t.map(RW, 0xD000, 0x1000, 0)), Errno::ENOSPC);
    // Argument errors still come first.
    assert_eq!(
        errno(t.map(RW | FIXED, 0xD000, 0x1000, 0x1000)),
        Errno::EEXIST
    );
    assert_eq!(areas(&t), before);

    // A copy creates one area per source area: two into a table with room for one.
    let mut src = IoPagetable::new();
    src.map(RW | FIXED, 0xE000, 0x1000, 0x1000).unwrap();
    src.map(RW | FIXED, 0xF000, 0x1000, 0x2000).unwrap();
    let mut dst = IoPagetable::new();
    dst.set_max_areas(Some(1));
    assert_eq!(
        errno(copy(&mut dst, &src, RW | FIXED, 0x1000, 0x2000, 0x8000)),
        Errno::ENOSPC
    );
    assert_eq!(dst.num_areas(), 0);
    assert_eq!(
        errno(copy_within(&mut t, RW | FIXED, 0x1000, 0x1000, 0x20_0000)),
        Errno::ENOSPC
    );
    assert_eq!(areas(&t), before);
    dst.set_max_areas(Some(2));
    assert_eq!(
        copy(&mut dst, &src, RW | FIXED, 0x1000, 0x2000, 0x8000).unwrap(),
        0x8000
    );
    t.set_max_areas(None);
    t.map(RW | FIXED, 0xD000, 0x1000, 0x10_0000).unwrap();
}

#[test]
fn allocation_skips_leaves_without_a_hole_that_fits() {
    // 20,000 one-page areas packed from 0x1000, with a 1-page hole where
    // area 3,000 would be and a 2-page hole (8 KiB aligned) at area 12,000.
    let mut t = IoPagetable::new();
    let page = 0x1000u64;
    let one_hole = 0x1000 + 3_000 * page;
    let two_hole = 0x1000 + 12_000 * page;
    let two_hole = if two_hole.is_multiple_of(0x2000) {
        two_hole
    } else {
        two_hole + page
    };
    for k in 0..20_000u64 {
        let iova = 0x1000 + k * page;
        if iova == one_hole || iova == two_hole || iova == two_hole + page {
            continue;
        }
        t.map(RW | FIXED, 0x4000_0000, page, iova).unwrap();
    }
    let end = 0x1000 + 20_000 * page;
    // One page fits the first hole; two pages (8 KiB aligned) the second;
    // four pages only after the last area.
    assert_eq!(t.map(RW, 0x4000_0000, page, 0).unwrap(), one_hole);
    assert_eq!(t.map(RW, 0x4000_0000, 2 * page, 0).unwrap(), two_hole);
    let four = t.map(RW, 0x4000_0000, 4 * page, 0).unwrap();
    assert!(
        four >= end && four.is_multiple_of(0x4000) && four - end < 0x4000,
        "{four:#x}"
    );
    // Now no hole is left below the end: a page goes right after the last area.
    let next = t.map(RW, 0x4000_0000, page, 0).unwrap();
    assert_eq!(next, end);
}

#[test]
fn map_batch_is_all_or_nothing_and_unmap_batch_names_the_failure() {
    let mut t = IoPagetable::new();
    t.map(RW | FIXED, 0x9000, 0x1000, 0x5000).unwrap();
    let before = areas(&t);
    // The third request overlaps the existing area: nothing of the batch stays.
    let reqs = [
        (0xA000, 0x1000, 0x1000),
        (0xB000, 0x2000, 0x2000),
        (0xC000, 0x1000, 0x5000),
    ];
    let e = t.map_batch(RW | FIXED, &reqs).expect_err("overlap");
    assert_eq!(e.errno, Errno::EEXIST);
    assert!(
        e.message.starts_with("Request 0x2 of the batch"),
        "{}",
        e.message
    );
    assert_eq!(areas(&t), before);
    assert_eq!(t.mapped_bytes(), 0x1000);
    // Allocated IOVAs, then unmapped in one call.
    let got = t
        .map_batch(RW, &[(0x1000, 0x1000, 0), (0x2000, 0x3000, 0)])
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(t.translate(got[1] + 0x10), Some((0x2010, RW)));
    assert_eq!(
        t.unmap_batch(&[(got[0], 0x1000), (got[1], 0x3000)])
            .unwrap(),
        0x4000
    );
    assert_eq!(areas(&t), before);
    // A failing unmap names its request; the ones before it are done.
    let got = t.map_batch(RW, &[(0x1000, 0x1000, 0)]).unwrap();
    let e = t
        .unmap_batch(&[(got[0], 0x1000), (0x7000_0000, 0x1000)])
        .expect_err("nothing there");
    assert_eq!(e.errno, Errno::ENOENT);
    assert!(
        e.message.starts_with("Request 0x1 of the batch"),
        "{}",
        e.message
    );
    assert_eq!(areas(&t), before);
}

#[test]
fn dirty_state_is_at_most_one_bit_per_page_and_only_while_tracking() {
    let mut t = IoPagetable::new();
    let gib = 1u64 << 30;
    t.map(FIXED | R | W, 0x4000_0000, gib, 0x1_0000_0000)
        .unwrap();
    t.map(FIXED | R | W, 0x9000_0000, 0x1000, 0x3_0000_0000)
        .unwrap();
    t.dma(0x1_0000_0000, 0x1000, true).unwrap();
    assert_eq!(t.dirty_state_bytes(), 0, "nothing while tracking is off");
    t.set_dirty_tracking(true);
    assert_eq!(t.dirty_state_bytes(), 0, "nothing before a write");
    for k in 0..1000u64 {
        t.dma(0x1_0000_0000 + k * 0x40_1000 % gib, 8, true).unwrap();
    }
    t.dma(0x1_0000_0000 + gib - 1, 1, true).unwrap();
    // One bit per 4 KiB page of the written area: 2^18 pages, 32 KiB.
    assert_eq!(t.dirty_state_bytes(), (gib / 4096 / 8) as usize);
    let words = t
        .read_dirty_bitmap(0x1_0000_0000, gib, 0x1000, false)
        .unwrap();
    let dirty: u32 = words.iter().map(|w| w.count_ones()).sum();
    assert!(
        dirty > 900 && words[words.len() - 1] >> 63 == 1,
        "{dirty} pages dirty"
    );
    // Reading and clearing keeps the bitmap; unmapping the area drops it.
    t.read_dirty_bitmap(0x1_0000_0000, gib, 0x20_0000, true)
        .unwrap();
    assert_eq!(
        t.read_dirty_bitmap(0x1_0000_0000, gib, 0x1000, false)
            .unwrap()
            .iter()
            .sum::<u64>(),
        0
    );
    t.unmap(0x1_0000_0000, gib).unwrap();
    assert_eq!(t.dirty_state_bytes(), 0);
    t.dma(0x3_0000_0000, 1, true).unwrap();
    assert_eq!(t.dirty_state_bytes(), 8);
    t.set_dirty_tracking(false);
    assert_eq!(
        t.dirty_state_bytes(),
        0,
        "turning tracking off frees the state"
    );
}

#[test]
fn set_area_user_va_moves_only_the_backing_address() {
    let mut t = IoPagetable::new();
    t.map(R | FIXED, 0x5000_0000, 0x2000, 0x10000).unwrap();
    t.set_dirty_tracking(true);
    t.set_iova_alignment(0x1000).unwrap();
    let before = areas(&t);
    // Only an area's exact start names it; the map rules hold for the address.
    assert_eq!(
        errno(t.set_area_user_va(0x11000, 0x7000_0000)),
        Errno::ENOENT
    );
    assert_eq!(
        errno(t.set_area_user_va(0x20000, 0x7000_0000)),
        Errno::ENOENT
    );
    assert_eq!(
        errno(t.set_area_user_va(0x10000, MAX - 0x1fff)),
        Errno::EOVERFLOW
    );
    assert_eq!(
        errno(t.set_area_user_va(0x10000, 0x7000_0800)),
        Errno::EINVAL
    );
    assert_eq!(areas(&t), before);
    let old = t.set_area_user_va(0x10000, 0x7000_0000).unwrap();
    assert_eq!((old.user_va, old.length()), (0x5000_0000, 0x2000));
    assert_eq!(areas(&t), vec![(0x10000, 0x2000, 0x7000_0000, R)]);
    assert_eq!(t.translate(0x11234), Some((0x7000_1234, R)));
    assert_eq!(t.mapped_bytes(), 0x2000);
    assert!(t.dirty_tracking());
}

/// 2^17 automatic maps of one shape: each lands `stride` bytes after the
/// one before, first fit, lowest address. Each map leaves a hole behind it
/// that is long enough for the next request but cannot hold it at page
/// granularity and page offset; before the allocator summarised holes per
/// alignment every map walked every one of them, and this took minutes
/// (see benches/alloc.rs for the timings). Asserts correctness only.
fn many_misfit_maps(align: u64, user_va: u64, stride: u64, length: impl Fn(u64) -> u64) {
    const N: u64 = 1 << 17;
    let mut t = IoPagetable::new();
    t.set_iova_alignment(align).unwrap();
    let first = 0x1000 + user_va % 0x1000;
    for i in 0..N {
        let iova = t.map(RW, user_va, length(i), 0).unwrap();
        assert_eq!(iova, first + stride * i, "map {i:#x}");
    }
    assert_eq!(t.num_areas() as u64, N);
    // A freed place is found again, below the end.
    let mid = first + stride * (N / 2);
    t.unmap(mid, length(N / 2)).unwrap();
    assert_eq!(t.map(RW, user_va, length(N / 2), 0).unwrap(), mid);
    assert_eq!(
        t.map(RW, user_va, length(N), 0).unwrap(),
        first + stride * N
    );
}

#[test]
fn sub_page_allocations_at_alignment_0x800_are_not_quadratic() {
    many_misfit_maps(0x800, 0, 0x1000, |_| 0x800);
}

#[test]
fn sub_page_allocations_of_every_length_are_not_quadratic() {
    many_misfit_maps(1, 0, 0x1000, |i| 1 + i % 0xfff);
}

#[test]
fn page_allocations_at_a_page_offset_are_not_quadratic() {
    // 0x1800..=0x27ff, then 0x3800: the hole at 0x2800 holds a page, but
    // not one at page offset 0x800.
    many_misfit_maps(1, 0x1800, 0x2000, |_| 0x1000);
}
