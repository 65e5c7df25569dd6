//! VFIO type1's DMA bookkeeping (type1.rs): every errno path of MAP_DMA,
//! UNMAP_DMA and DIRTY_PAGES, which check wins when a request has several
//! faults, and that a refused call leaves the container and its table as
//! they were.

use std::cell::Cell;

use iommud_core::type1::{
    VFIO_DMA_MAP_FLAG_READ as READ, VFIO_DMA_MAP_FLAG_VADDR as VADDR,
    VFIO_DMA_MAP_FLAG_WRITE as WRITE, VFIO_DMA_UNMAP_FLAG_ALL as U_ALL,
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP as U_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR as U_VADDR,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP as D_GET, VFIO_IOMMU_DIRTY_PAGES_FLAG_START as D_START,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP as D_STOP, VFIO_TYPE1V2_IOMMU as V2, VFIO_TYPE1_IOMMU as V1,
};
use iommud_core::{CoreError, Errno, IoPagetable, Result, Type1Dma};

const RW: u32 = READ | WRITE;
const MAX: u64 = u64::MAX;
const PG: u64 = 0x1000;

/// A container with `iommu_type` set (0: none) and an empty table.
fn container(limit: u64, iommu_type: u32) -> (Type1Dma, IoPagetable) {
    let mut d = Type1Dma::new(limit);
    if iommu_type != 0 {
        d.set_iommu_type(iommu_type).unwrap();
    }
    (d, IoPagetable::new())
}

fn map(
    d: &mut Type1Dma,
    t: &mut IoPagetable,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
) -> Result<()> {
    d.map_dma(Some(t), 0, flags, vaddr, iova, size, |_| {
        Ok::<(), CoreError>(())
    })
}

fn unmap(d: &mut Type1Dma, t: &mut IoPagetable, flags: u32, iova: u64, size: u64) -> Result<u64> {
    d.unmap_dma(Some(t), 0, flags, iova, size, 0, 0)
        .map(|(n, _)| n)
}

fn areas(t: &IoPagetable) -> Vec<(u64, u64, u64, u32)> {
    t.areas()
        .map(|a| (a.iova, a.length(), a.user_va, a.prot))
        .collect()
}

/// Everything a call may change: the type1 state, the areas, the dirty
/// tracking switch and the dirty bits of the low 16 MiB (read without clearing).
type Snapshot = (Type1Dma, Vec<(u64, u64, u64, u32)>, bool, Vec<u64>);

fn snapshot(d: &Type1Dma, t: &mut IoPagetable) -> Snapshot {
    let bits = t.read_dirty_bitmap(0, 0x100_0000, PG, false).unwrap();
    (d.clone(), areas(t), t.dirty_tracking(), bits)
}

/// Run `f`, which must fail with `errno` and change nothing; returns the error.
fn refused<T: std::fmt::Debug>(
    d: &mut Type1Dma,
    t: &mut IoPagetable,
    errno: Errno,
    f: impl FnOnce(&mut Type1Dma, &mut IoPagetable) -> Result<T>,
) -> CoreError {
    let before = snapshot(d, t);
    let e = f(d, t).expect_err("the call should be refused");
    assert_eq!(e.errno, errno, "{e}");
    assert_eq!(snapshot(d, t), before, "a refused call changed state: {e}");
    e
}

// -- MAP_DMA -------------------------------------------------------------------------

#[test]
fn map_makes_a_fixed_mapping_with_the_asked_permissions() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, READ, 0x5000_0000, 0x10000, 0x2000).unwrap();
    map(&mut d, &mut t, WRITE, 0x6000_0000, 0x20000, PG).unwrap();
    map(&mut d, &mut t, RW, 0x7000_0000, 0x30000, PG).unwrap();
    assert_eq!(
        areas(&t),
        vec![
            (0x10000, 0x2000, 0x5000_0000, 4),
            (0x20000, PG, 0x6000_0000, 2),
            (0x30000, PG, 0x7000_0000, 6)
        ]
    );
    assert_eq!(d.dma_avail(), 1);
}

#[test]
fn map_argsz_zero_is_not_given_and_short_argsz_is_einval_first() {
    let (mut d, mut t) = container(4, 0);
    // argsz wins over unknown flags and over the container not being ready.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        d.map_dma(Some(t), 31, 8 | RW, 0, 0x10000, PG, |_| {
            Ok::<(), CoreError>(())
        })
    });
    assert!(
        e.message.contains("argsz of at least 0x20, not 0x1f"),
        "{e}"
    );
    d.set_iommu_type(V2).unwrap();
    d.map_dma(Some(&mut t), 32, RW, 0, 0x10000, PG, |_| {
        Ok::<(), CoreError>(())
    })
    .unwrap();
    d.map_dma(Some(&mut t), 0, RW, 0, 0x20000, PG, |_| {
        Ok::<(), CoreError>(())
    })
    .unwrap();
    assert_eq!(t.num_areas(), 2);
}

#[test]
fn map_unknown_flags_are_einval_before_the_ready_check() {
    let (mut d, mut t) = container(4, 0);
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, 8 | RW, 0, 0x10000, PG)
    });
    assert!(e.message.contains("Unknown MAP_DMA flag bits 0x8"), "{e}");
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, RW, 0, 0x10000, PG)
    });
    assert!(e.message.contains("VFIO_SET_IOMMU"), "{e}");
    // Not ready wins over every later check, ENODEV included.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, _| {
        d.map_dma(None, 0, RW, 0, 0x10000, 0, |_| Ok::<(), CoreError>(()))
    });
    assert!(e.message.contains("VFIO_SET_IOMMU"), "{e}");
}

#[test]
fn map_zero_size_then_overflow_then_permission_rule_then_alignment() {
    let (mut d, mut t) = container(4, V1);
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, 0, 0x123, 0x10000, 0)
    });
    assert!(e.message.contains("zero bytes"), "{e}");
    // The IOVA range, then the vaddr range, may not wrap; overflow wins over
    // the READ/WRITE/VADDR rule and over alignment.
    refused(&mut d, &mut t, Errno::EOVERFLOW, |d, t| {
        map(d, t, 0, 0, MAX - 0xfff, 0x2000)
    });
    refused(&mut d, &mut t, Errno::EOVERFLOW, |d, t| {
        map(d, t, 0, MAX - 0xfff, 0x10000, 0x2000)
    });
    // A range ending exactly at 2^64-1 does not wrap.
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, 0, 0, MAX - 0xfff, PG)
    });
    // Neither READ/WRITE nor VADDR, or both: EINVAL, before alignment.
    for flags in [0, VADDR | READ, VADDR | WRITE, VADDR | RW] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
            map(d, t, flags, 0x1, 0x10000, PG)
        });
        assert!(e.message.contains("VADDR alone"), "{flags:#x}: {e}");
    }
    for (vaddr, iova, size) in [(0x800, 0x10000, PG), (0, 0x10800, PG), (0, 0x10000, 0x800)] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
            map(d, t, RW, vaddr, iova, size)
        });
        assert!(e.message.contains("multiples of 0x1000"), "{e}");
    }
}

#[test]
fn map_without_a_compat_ioas_is_enodev_after_the_argument_checks() {
    let (mut d, mut t) = container(4, V2);
    let none = |flags, vaddr, iova, size| {
        move |d: &mut Type1Dma, _: &mut IoPagetable| {
            d.map_dma(None, 0, flags, vaddr, iova, size, |_| {
                Ok::<(), CoreError>(())
            })
        }
    };
    refused(&mut d, &mut t, Errno::ENODEV, none(RW, 0, 0x10000, PG));
    refused(&mut d, &mut t, Errno::ENODEV, none(VADDR, 0, 0x10000, PG));
    refused(&mut d, &mut t, Errno::EINVAL, none(RW, 0, 0x10800, PG));
    refused(
        &mut d,
        &mut t,
        Errno::EOVERFLOW,
        none(RW, 0, MAX - 0xfff, 0x2000),
    );
}

#[test]
fn map_overlap_is_eexist_before_enospc() {
    let (mut d, mut t) = container(1, V2);
    map(&mut d, &mut t, RW, 0x5000_0000, 0x10000, 0x2000).unwrap();
    assert_eq!(d.dma_avail(), 0);
    // Start inside, end inside, covering: all EEXIST, though no entry is left.
    for (iova, size) in [
        (0x11000, PG),
        (0xf000, 0x2000),
        (0x8000, 0x10000),
        (0x10000, 0x2000),
    ] {
        let e = refused(&mut d, &mut t, Errno::EEXIST, |d, t| {
            map(d, t, RW, 0, iova, size)
        });
        assert!(e.message.contains("overlaps the mapping at 0x10000"), "{e}");
    }
    // Adjacent ranges do not overlap; with no entry left they are ENOSPC.
    for iova in [0xf000, 0x12000] {
        refused(&mut d, &mut t, Errno::ENOSPC, |d, t| {
            map(d, t, RW, 0, iova, PG)
        });
    }
}

#[test]
fn dma_entry_limit_is_enospc_and_unmap_unmap_all_and_reset_give_entries_back() {
    let (mut d, mut t) = container(4, V2);
    for i in 1..=4 {
        map(&mut d, &mut t, RW, 0, i * 0x10000, PG).unwrap();
    }
    assert_eq!(d.dma_avail(), 0);
    let e = refused(&mut d, &mut t, Errno::ENOSPC, |d, t| {
        map(d, t, RW, 0, 0x90000, PG)
    });
    assert!(e.message.contains("0x4 mappings"), "{e}");
    assert_eq!(unmap(&mut d, &mut t, 0, 0x10000, PG).unwrap(), PG);
    assert_eq!(d.dma_avail(), 1);
    map(&mut d, &mut t, RW, 0, 0x90000, PG).unwrap();
    assert_eq!(d.dma_avail(), 0);
    // One unmap of a range holding several mappings gives each entry back.
    assert_eq!(unmap(&mut d, &mut t, 0, 0x20000, 0x20000).unwrap(), 0x2000);
    assert_eq!(d.dma_avail(), 2);
    assert_eq!(unmap(&mut d, &mut t, U_ALL, 0, 0).unwrap(), 0x2000);
    assert_eq!((d.dma_avail(), t.num_areas()), (4, 0));
    for i in 1..=3 {
        map(&mut d, &mut t, RW, 0, i * 0x10000, PG).unwrap();
    }
    d.reset(Some(&mut t));
    assert_eq!((d.dma_avail(), t.num_areas()), (4, 0));
}

#[test]
fn charge_is_called_with_the_size_right_before_the_mapping_is_made() {
    let (mut d, mut t) = container(4, V2);
    let charged = Cell::new(0u64);
    let charge = |size| {
        charged.set(charged.get() + size);
        Ok::<(), CoreError>(())
    };
    d.map_dma(Some(&mut t), 0, RW, 0, 0x10000, 0x3000, charge)
        .unwrap();
    assert_eq!(charged.get(), 0x3000);
    // Refused before the charge point: not charged.
    let e = d
        .map_dma(Some(&mut t), 0, RW, 0, 0x11000, PG, charge)
        .unwrap_err();
    assert_eq!((e.errno, charged.get()), (Errno::EEXIST, 0x3000));
    let e = d.map_dma(None, 0, RW, 0, 0x20000, PG, charge).unwrap_err();
    assert_eq!((e.errno, charged.get()), (Errno::ENODEV, 0x3000));
}

#[derive(Debug, PartialEq)]
enum Fail {
    Core(Errno),
    Charge(u64),
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Self {
        Fail::Core(e.errno)
    }
}

#[test]
fn a_failed_charge_comes_back_unchanged_and_changes_nothing() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    let before = snapshot(&d, &mut t);
    let r = d.map_dma(Some(&mut t), 0, RW, 0, 0x20000, 0x2000, |size| {
        Err(Fail::Charge(size))
    });
    assert_eq!(r, Err(Fail::Charge(0x2000)));
    assert_eq!(snapshot(&d, &mut t), before);
    // The table's own refusals come after the charge, with its errno.
    t.add_reserved(0xfee0_0000, 0xfeef_ffff, 7).unwrap();
    let charged = Cell::new(false);
    let r = d.map_dma(Some(&mut t), 0, RW, 0, 0xfee0_0000, PG, |_| {
        charged.set(true);
        Ok::<(), Fail>(())
    });
    assert_eq!(r, Err(Fail::Core(Errno::EINVAL)));
    assert!(charged.get());
    assert_eq!(snapshot(&d, &mut t), before);
}

#[test]
fn prepare_and_commit_recheck_what_the_charge_may_have_changed() {
    let (mut d, mut t) = container(1, V2);
    let p = d
        .map_dma_prepare(Some(&mut t), 0, RW, 0, 0x10000, PG)
        .unwrap()
        .unwrap();
    assert_eq!(p.size(), PG);
    // Meanwhile the range was taken through the IOAS itself.
    t.map(1 | 6, 0, PG, 0x10000).unwrap();
    let before = snapshot(&d, &mut t);
    assert_eq!(
        d.map_dma_commit(&mut t, p).unwrap_err().errno,
        Errno::EEXIST
    );
    assert_eq!(snapshot(&d, &mut t), before);
    let p = d
        .map_dma_prepare(Some(&mut t), 0, RW, 0, 0x20000, PG)
        .unwrap()
        .unwrap();
    d.reset(None);
    assert_eq!(
        d.map_dma_commit(&mut t, p).unwrap_err().errno,
        Errno::EINVAL
    );
}

// -- UNMAP_DMA -----------------------------------------------------------------------

#[test]
fn unmap_argsz_flags_and_combinations_come_before_the_ready_check() {
    let (mut d, mut t) = container(4, 0);
    let call = |argsz, flags| {
        move |d: &mut Type1Dma, t: &mut IoPagetable| d.unmap_dma(Some(t), argsz, flags, 0, 0, 0, 0)
    };
    let e = refused(&mut d, &mut t, Errno::EINVAL, call(23, 8));
    assert!(
        e.message.contains("argsz of at least 0x18, not 0x17"),
        "{e}"
    );
    let e = refused(&mut d, &mut t, Errno::EINVAL, call(24, 8 | U_ALL));
    assert!(e.message.contains("Unknown UNMAP_DMA flag bits 0x8"), "{e}");
    for flags in [U_BITMAP | U_ALL, U_BITMAP | U_VADDR] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, call(0, flags));
        assert!(e.message.contains("cannot be combined"), "{e}");
    }
    let e = refused(&mut d, &mut t, Errno::EINVAL, call(0, U_ALL));
    assert!(e.message.contains("VFIO_SET_IOMMU"), "{e}");
    d.set_iommu_type(V1).unwrap();
    refused(&mut d, &mut t, Errno::ENODEV, |d, _| {
        d.unmap_dma(None, 0, U_ALL, 0, 0, 0, 0)
    });
    // ENODEV wins over the range checks.
    refused(&mut d, &mut t, Errno::ENODEV, |d, _| {
        d.unmap_dma(None, 0, 0, 0x800, 0, 0, 0)
    });
}

#[test]
fn unmap_all_takes_iova_and_size_zero() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, 0x2000).unwrap();
    map(&mut d, &mut t, RW, 0, 0x30000, PG).unwrap();
    for (iova, size) in [(0x10000, 0), (0, 0x1000)] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
            unmap(d, t, U_ALL, iova, size)
        });
        assert!(e.message.contains("iova 0 and size 0"), "{e}");
    }
    assert_eq!(unmap(&mut d, &mut t, U_ALL, 0, 0).unwrap(), 0x3000);
    assert_eq!((t.num_areas(), d.dma_avail()), (0, 4));
    assert_eq!(unmap(&mut d, &mut t, U_ALL, 0, 0).unwrap(), 0);
}

#[test]
fn unmap_range_is_page_aligned_nonzero_and_does_not_wrap() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    for (iova, size) in [(0x10000, 0), (0x10800, PG), (0x10000, 0x800)] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
            unmap(d, t, 0, iova, size)
        });
        assert!(e.message.contains("non-zero multiples of 0x1000"), "{e}");
    }
    refused(&mut d, &mut t, Errno::EOVERFLOW, |d, t| {
        unmap(d, t, 0, MAX - 0xfff, 0x2000)
    });
    // Nothing in the range: 0 bytes, not an error.
    assert_eq!(unmap(&mut d, &mut t, 0, 0x20000, PG).unwrap(), 0);
    assert_eq!(unmap(&mut d, &mut t, 0, MAX - 0xfff, PG).unwrap(), 0);
}

#[test]
fn v2_unmap_that_bisects_a_mapping_is_einval_and_atomic() {
    let (mut d, mut t) = container(8, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    map(&mut d, &mut t, RW, 0, 0x20000, 0x4000).unwrap();
    // The first mapping lies wholly inside, the second is cut at its end.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, 0, 0x10000, 0x12000)
    });
    assert!(e.message.contains("bisects"), "{e}");
    // Cut at its start.
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, 0, 0x21000, 0x10000)
    });
    // Inside.
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, 0, 0x21000, PG)
    });
    assert_eq!(unmap(&mut d, &mut t, 0, 0x10000, 0x14000).unwrap(), 0x5000);
    assert_eq!((t.num_areas(), d.dma_avail()), (0, 8));
}

#[test]
fn v1_unmap_follows_the_start_of_mapping_rule() {
    let (mut d, mut t) = container(8, V1);
    map(&mut d, &mut t, RW, 0, 0x10000, 0x4000).unwrap();
    map(&mut d, &mut t, RW, 0, 0x20000, 0x4000).unwrap();
    // Starting inside a mapping unmaps nothing and succeeds.
    let before = snapshot(&d, &mut t);
    assert_eq!(unmap(&mut d, &mut t, 0, 0x11000, 0x20000).unwrap(), 0);
    assert_eq!(snapshot(&d, &mut t), before);
    // Covering a mapping's first page takes the whole mapping.
    assert_eq!(unmap(&mut d, &mut t, 0, 0x10000, PG).unwrap(), 0x4000);
    // Also when the range reaches into a later mapping's first page.
    map(&mut d, &mut t, RW, 0, 0x10000, 0x4000).unwrap();
    assert_eq!(unmap(&mut d, &mut t, 0, 0x10000, 0x11000).unwrap(), 0x8000);
    assert_eq!((t.num_areas(), d.dma_avail()), (0, 8));
}

#[test]
fn v1_unmap_extended_to_the_top_of_the_space_takes_everything() {
    let (mut d, mut t) = container(8, V1);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    map(&mut d, &mut t, RW, 0, MAX - 0x1fff, 0x2000).unwrap();
    // [0, MAX-0xfff] covers the last mapping's start; it ends at 2^64-1.
    assert_eq!(unmap(&mut d, &mut t, 0, 0, MAX - 0xfff).unwrap(), 0x3000);
    assert_eq!((t.num_areas(), d.dma_avail()), (0, 8));
}

// -- UPDATE_VADDR ----------------------------------------------------------------------

#[test]
fn vaddr_invalidate_then_update_keeps_the_iova_mapping() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, READ, 0x5000_0000, 0x10000, 0x2000).unwrap();
    map(&mut d, &mut t, RW, 0x6000_0000, 0x20000, PG).unwrap();
    t.set_dirty_tracking(true);
    t.dma(0x10010, 4, false).unwrap();
    // Not invalidated yet.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, VADDR, 0x7000_0000, 0x10000, 0x2000)
    });
    assert!(e.message.contains("not an invalidated mapping"), "{e}");
    assert_eq!(
        unmap(&mut d, &mut t, U_VADDR, 0x10000, 0x2000).unwrap(),
        0x2000
    );
    assert_eq!(d.invalid_vaddrs().collect::<Vec<_>>(), vec![0x10000]);
    // Still mapped: DMA goes on through the old address.
    assert_eq!(t.dma(0x10010, 4, false).unwrap(), 0x5000_0010);
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, U_VADDR, 0x10000, 0x2000)
    });
    // Not the whole mapping, not at its start, nothing there.
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, VADDR, 0x7000_0000, 0x10000, PG)
    });
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, VADDR, 0x7000_0000, 0x11000, PG)
    });
    let e = refused(&mut d, &mut t, Errno::ENOENT, |d, t| {
        map(d, t, VADDR, 0x7000_0000, 0x40000, PG)
    });
    assert!(e.message.contains("No mapping at 0x40000"), "{e}");
    refused(&mut d, &mut t, Errno::ENODEV, |d, _| {
        d.map_dma(None, 0, VADDR, 0x7000_0000, 0x10000, 0x2000, |_| {
            Ok::<(), CoreError>(())
        })
    });
    // A new address the table cannot hold (its end would be 2^64) changes nothing.
    refused(&mut d, &mut t, Errno::EOVERFLOW, |d, t| {
        map(d, t, VADDR, MAX - 0x1fff, 0x10000, 0x2000)
    });
    // The update is not charged and takes no dma entry.
    let r = d.map_dma(Some(&mut t), 0, VADDR, 0x7000_0000, 0x10000, 0x2000, |_| {
        Err::<(), CoreError>(CoreError::new(Errno::ENOMEM, "charged"))
    });
    r.unwrap();
    assert_eq!(areas(&t)[0], (0x10000, 0x2000, 0x7000_0000, 4));
    assert_eq!(t.dma(0x10010, 4, false).unwrap(), 0x7000_0010);
    assert_eq!(t.dma(0x10010, 4, true).unwrap_err().errno, Errno::EPERM);
    assert_eq!((d.dma_avail(), d.invalid_vaddrs().count()), (2, 0));
}

#[test]
fn vaddr_update_keeps_the_dirty_bits() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0x5000_0000, 0x10000, 0x2000).unwrap();
    d.dirty_pages(Some(&mut t), 0, D_START, 0, 0, 0, 0).unwrap();
    t.dma(0x11000, 8, true).unwrap();
    unmap(&mut d, &mut t, U_VADDR, 0x10000, 0x2000).unwrap();
    map(&mut d, &mut t, VADDR, 0x7000_0000, 0x10000, 0x2000).unwrap();
    assert_eq!(
        d.dirty_pages(Some(&mut t), 0, D_GET, 0x10000, 0x2000, PG, 8)
            .unwrap(),
        vec![0b10]
    );
}

#[test]
fn vaddr_invalidation_is_all_or_nothing_and_all_covers_every_mapping() {
    let (mut d, mut t) = container(4, V2);
    for iova in [0x10000, 0x20000, 0x30000] {
        map(&mut d, &mut t, RW, 0, iova, PG).unwrap();
    }
    unmap(&mut d, &mut t, U_VADDR, 0x20000, PG).unwrap();
    // The range's second mapping is already invalid: none gets marked.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, U_VADDR, 0x10000, 0x30000)
    });
    assert!(e.message.contains("at 0x20000 is already invalid"), "{e}");
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        unmap(d, t, U_VADDR | U_ALL, 0, 0)
    });
    map(&mut d, &mut t, VADDR, 0x1000_0000, 0x20000, PG).unwrap();
    assert_eq!(
        unmap(&mut d, &mut t, U_VADDR | U_ALL, 0, 0).unwrap(),
        0x3000
    );
    assert_eq!(
        d.invalid_vaddrs().collect::<Vec<_>>(),
        vec![0x10000, 0x20000, 0x30000]
    );
    // An empty range invalidates nothing.
    assert_eq!(unmap(&mut d, &mut t, U_VADDR, 0x50000, PG).unwrap(), 0);
}

#[test]
fn unmapping_drops_the_invalid_marks_of_its_range() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    map(&mut d, &mut t, RW, 0, 0x20000, PG).unwrap();
    unmap(&mut d, &mut t, U_VADDR, 0x10000, 0x11000).unwrap();
    unmap(&mut d, &mut t, 0, 0x10000, PG).unwrap();
    assert_eq!(d.invalid_vaddrs().collect::<Vec<_>>(), vec![0x20000]);
    // A new mapping at the old IOVA is a valid one.
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        map(d, t, VADDR, 0x1000_0000, 0x10000, PG)
    });
    unmap(&mut d, &mut t, U_ALL, 0, 0).unwrap();
    assert_eq!(d.invalid_vaddrs().count(), 0);
}

// -- dirty pages -------------------------------------------------------------------------

fn dirty(
    d: &mut Type1Dma,
    t: &mut IoPagetable,
    flags: u32,
    iova: u64,
    size: u64,
    pgsize: u64,
    bsize: u64,
) -> Result<Vec<u64>> {
    d.dirty_pages(Some(t), 0, flags, iova, size, pgsize, bsize)
}

#[test]
fn dirty_pages_needs_a_ready_v2_container_before_argsz_and_flags() {
    let (mut d, mut t) = container(4, 0);
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        d.dirty_pages(Some(t), 1, 0, 0, 0, 0, 0)
    });
    assert!(e.message.contains("VFIO_SET_IOMMU"), "{e}");
    d.set_iommu_type(V1).unwrap();
    refused(&mut d, &mut t, Errno::EACCES, |d, t| {
        d.dirty_pages(Some(t), 1, 0, 0, 0, 0, 0)
    });
    refused(&mut d, &mut t, Errno::EACCES, |d, t| {
        dirty(d, t, D_START, 0, 0, 0, 0)
    });
    let (mut d, mut t) = container(4, V2);
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        d.dirty_pages(Some(t), 7, 0, 0, 0, 0, 0)
    });
    assert!(e.message.contains("argsz of at least 0x8, not 0x7"), "{e}");
    for flags in [0, D_START | D_STOP, D_START | D_GET, 8] {
        let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
            dirty(d, t, flags, 0, 0, 0, 0)
        });
        assert!(e.message.contains("exactly one of"), "{flags:#x}: {e}");
    }
    refused(&mut d, &mut t, Errno::ENODEV, |d, _| {
        d.dirty_pages(None, 8, D_START, 0, 0, 0, 0)
    });
    refused(&mut d, &mut t, Errno::ENODEV, |d, _| {
        d.dirty_pages(None, 8, D_GET, 0, 0, 0, 0)
    });
}

#[test]
fn dirty_start_and_stop_are_idempotent() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, 0x4000).unwrap();
    assert_eq!(
        dirty(&mut d, &mut t, D_STOP, 0, 0, 0, 0).unwrap(),
        Vec::<u64>::new()
    );
    assert!(!d.dirty_started());
    dirty(&mut d, &mut t, D_START, 0, 0, 0, 0).unwrap();
    assert!(d.dirty_started() && t.dirty_tracking());
    t.dma(0x12000, 1, true).unwrap();
    // A second START does not restart tracking from clean.
    dirty(&mut d, &mut t, D_START, 0, 0, 0, 0).unwrap();
    assert_eq!(
        dirty(&mut d, &mut t, D_GET, 0x10000, 0x4000, PG, 8).unwrap(),
        vec![0b100]
    );
    // GET_BITMAP cleans what it reported.
    assert_eq!(
        dirty(&mut d, &mut t, D_GET, 0x10000, 0x4000, PG, 8).unwrap(),
        vec![0]
    );
    dirty(&mut d, &mut t, D_STOP, 0, 0, 0, 0).unwrap();
    dirty(&mut d, &mut t, D_STOP, 0, 0, 0, 0).unwrap();
    assert!(!d.dirty_started() && !t.dirty_tracking());
}

#[test]
fn get_bitmap_checks_in_order() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, 0x2000).unwrap();
    let get = |iova, size, pgsize, bsize| {
        move |d: &mut Type1Dma, t: &mut IoPagetable| dirty(d, t, D_GET, iova, size, pgsize, bsize)
    };
    // Not started: EINVAL, but only after the range checks.
    let e = refused(&mut d, &mut t, Errno::EINVAL, get(0x10000, 0x2000, PG, 8));
    assert!(e.message.contains("not started"), "{e}");
    let e = refused(&mut d, &mut t, Errno::EINVAL, get(0x10000, 0, PG, 8));
    assert!(e.message.contains("zero bytes"), "{e}");
    refused(
        &mut d,
        &mut t,
        Errno::EOVERFLOW,
        get(MAX - 0x7ff, 0x1000, PG, 8),
    );
    let e = refused(&mut d, &mut t, Errno::EINVAL, get(0x10800, 0x1000, PG, 8));
    assert!(e.message.contains("multiples of 0x1000"), "{e}");
    dirty(&mut d, &mut t, D_START, 0, 0, 0, 0).unwrap();
    let e = refused(
        &mut d,
        &mut t,
        Errno::EINVAL,
        get(0x10000, 0x2000, 0x2000, 8),
    );
    assert!(
        e.message.contains("page size must be 0x1000, not 0x2000"),
        "{e}"
    );
    // 0x41 pages need two words; a bitmap larger than 256 MiB is refused too.
    let e = refused(&mut d, &mut t, Errno::EINVAL, get(0, 0x41000, PG, 8));
    assert!(e.message.contains("needs 0x10"), "{e}");
    refused(&mut d, &mut t, Errno::EINVAL, get(0x10000, 0x2000, PG, 0));
    refused(
        &mut d,
        &mut t,
        Errno::EINVAL,
        get(0x10000, 0x2000, PG, (1 << 28) + 8),
    );
    // Cutting a mapping at either end.
    let e = refused(&mut d, &mut t, Errno::EINVAL, get(0x11000, 0x1000, PG, 8));
    assert!(e.message.contains("bisects"), "{e}");
    refused(&mut d, &mut t, Errno::EINVAL, get(0x10000, 0x1000, PG, 8));
    assert_eq!(
        dirty(&mut d, &mut t, D_GET, 0x10000, 0x2000, PG, 1 << 28).unwrap(),
        vec![0]
    );
    assert_eq!(
        dirty(&mut d, &mut t, D_GET, 0, 0x41000, PG, 16).unwrap(),
        vec![0, 0]
    );
}

#[test]
fn unmap_with_dirty_bitmap_reports_and_unmaps() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, 0x3000).unwrap();
    let call = |pgsize, bsize| {
        move |d: &mut Type1Dma, t: &mut IoPagetable| {
            d.unmap_dma(Some(t), 0, U_BITMAP, 0x10000, 0x3000, pgsize, bsize)
        }
    };
    let e = refused(&mut d, &mut t, Errno::EINVAL, call(PG, 8));
    assert!(e.message.contains("not started"), "{e}");
    dirty(&mut d, &mut t, D_START, 0, 0, 0, 0).unwrap();
    refused(&mut d, &mut t, Errno::EINVAL, call(0x800, 8));
    refused(&mut d, &mut t, Errno::EINVAL, call(PG, 0));
    // The bitmap checks come before the bisect check.
    let e = refused(&mut d, &mut t, Errno::EINVAL, |d, t| {
        d.unmap_dma(Some(t), 0, U_BITMAP, 0x11000, PG, PG, 0)
    });
    assert!(e.message.contains("cannot describe"), "{e}");
    t.dma(0x10000, 1, true).unwrap();
    t.dma(0x12fff, 1, true).unwrap();
    let (bytes, bitmap) = d
        .unmap_dma(Some(&mut t), 0, U_BITMAP, 0x10000, 0x3000, PG, 8)
        .unwrap();
    assert_eq!((bytes, bitmap), (0x3000, vec![0b101]));
    assert_eq!((t.num_areas(), d.dma_avail()), (0, 4));
    // Nothing mapped in the range: no bitmap either.
    let r = d
        .unmap_dma(Some(&mut t), 0, U_BITMAP, 0x10000, 0x3000, PG, 8)
        .unwrap();
    assert_eq!(r, (0, vec![]));
}

// -- the container's life ----------------------------------------------------------------

#[test]
fn iommu_type_and_the_update_vaddr_extension() {
    let mut d = Type1Dma::new(7);
    assert_eq!((d.iommu_type(), d.check_extension_update_vaddr()), (0, 0));
    for bad in [0, 2, 4, 8] {
        assert_eq!(d.set_iommu_type(bad).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(d, Type1Dma::new(7));
    }
    d.set_iommu_type(V1).unwrap();
    assert_eq!((d.iommu_type(), d.check_extension_update_vaddr()), (V1, 1));
    d.set_iommu_type(V2).unwrap();
    assert_eq!(
        (d.iommu_type(), d.dma_entry_limit(), d.dma_avail()),
        (V2, 7, 7)
    );
}

#[test]
fn reset_returns_the_container_to_new_and_empties_the_table() {
    let (mut d, mut t) = container(4, V2);
    map(&mut d, &mut t, RW, 0, 0x10000, PG).unwrap();
    map(&mut d, &mut t, RW, 0, 0x20000, PG).unwrap();
    unmap(&mut d, &mut t, U_VADDR, 0x20000, PG).unwrap();
    dirty(&mut d, &mut t, D_START, 0, 0, 0, 0).unwrap();
    t.dma(0x10000, 1, true).unwrap();
    d.reset(Some(&mut t));
    assert_eq!(d, Type1Dma::new(4));
    assert_eq!(
        (t.num_areas(), t.dirty_tracking(), t.dirty_state_bytes()),
        (0, false, 0)
    );
    assert_eq!(d.check_extension_update_vaddr(), 0);
    // Without a table only the state resets.
    d.set_iommu_type(V1).unwrap();
    d.reset(None);
    assert_eq!(d, Type1Dma::new(4));
}
