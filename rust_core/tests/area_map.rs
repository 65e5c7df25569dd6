//! The area map against a BTreeMap reference: random inserts and removals
//! large enough to split, extend and merge leaves many times, with every
//! query compared and every invariant checked along the way.

use std::collections::{btree_map::Entry, BTreeMap};

use iommud_core::area_map::{AreaMap, LEAF};
use iommud_core::Area;

mod common;
use common::Rng;

fn area(slot: u64) -> Area {
    // Slot s covers [s*0x10000, s*0x10000 + 0x3fff]: disjoint, with gaps.
    Area {
        iova: slot << 16,
        last: (slot << 16) + 0x3fff,
        user_va: slot * 7 + 0x1000,
        prot: 6,
    }
}

fn compare(map: &AreaMap, reference: &BTreeMap<u64, Area>, rng: &mut Rng, slots: u64) {
    map.check();
    assert_eq!(map.len(), reference.len());
    for _ in 0..64 {
        let iova = rng.below((slots + 2) << 16);
        let floor = reference.range(..=iova).next_back().map(|(_, a)| *a);
        let ceil = reference.range(iova..).next().map(|(_, a)| *a);
        assert_eq!(map.floor(iova), floor, "floor {iova:#x}");
        assert_eq!(map.ceil(iova), ceil, "ceil {iova:#x}");
        let want = floor
            .filter(|a| iova <= a.last)
            .map(|a| (a.user_va + (iova - a.iova), a.prot));
        assert_eq!(map.translate(iova), want, "translate {iova:#x}");
    }
    // Batches, random and sorted, of every length up to a few groups.
    let len = 1 + rng.below(70) as usize;
    let mut iovas: Vec<u64> = (0..len).map(|_| rng.below((slots + 2) << 16)).collect();
    for sorted in [false, true] {
        if sorted {
            iovas.sort_unstable();
        }
        let (mut pas, mut prots) = (vec![1u64; len], vec![1u8; len]);
        let mapped = map.translate_run(&iovas, &mut pas, &mut prots);
        let mut want_mapped = 0;
        for (i, &iova) in iovas.iter().enumerate() {
            let want = map.translate(iova);
            want_mapped += usize::from(want.is_some());
            assert_eq!(
                (pas[i], prots[i] as u32),
                want.unwrap_or((0, 0)),
                "batch {iova:#x}"
            );
        }
        assert_eq!(mapped, want_mapped);
    }
}

#[test]
fn random_inserts_and_removals_match_a_btreemap() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut map = AreaMap::new();
        let mut reference = BTreeMap::new();
        let slots = 4 * LEAF as u64 * (1 + seed % 3);
        for step in 0..20_000 {
            let slot = rng.below(slots);
            let a = area(slot);
            // Phases that grow, then shrink, then churn.
            let grow = match (step / 5_000) % 4 {
                0 => 80,
                1 => 20,
                _ => 50,
            };
            if rng.below(100) < grow {
                if let Entry::Vacant(slot) = reference.entry(a.iova) {
                    map.insert(a);
                    slot.insert(a);
                }
            } else {
                assert_eq!(map.remove(a.iova), reference.remove(&a.iova));
            }
            if step % 257 == 0 {
                compare(&map, &reference, &mut rng, slots);
            }
        }
        compare(&map, &reference, &mut rng, slots);
        assert!(map.iter().eq(reference.values().copied()));
    }
}

#[test]
fn ascending_maps_fill_leaves_completely() {
    let mut map = AreaMap::new();
    let n = 100 * LEAF as u64;
    for slot in 0..n {
        map.insert(area(slot));
    }
    map.check();
    assert_eq!(map.leaf_count(), 100, "every leaf full");
    // 34 B per area in full leaves, plus the pool's slack (at most a third).
    let per_area = map.heap_bytes() as f64 / n as f64;
    assert!(per_area < 36.0 * 1.5, "{per_area} bytes per area");
}

#[test]
fn descending_and_front_inserts_keep_order() {
    let mut map = AreaMap::new();
    for slot in (0..3 * LEAF as u64).rev() {
        map.insert(area(slot));
    }
    map.check();
    assert_eq!(
        map.iter().map(|a| a.iova).collect::<Vec<_>>(),
        (0..3 * LEAF as u64).map(|s| s << 16).collect::<Vec<_>>()
    );
    // Drain from the front: keys follow, empty leaves go.
    for slot in 0..3 * LEAF as u64 {
        assert_eq!(map.remove(slot << 16), Some(area(slot)));
        map.check();
    }
    assert!(map.is_empty() && map.floor(u64::MAX).is_none() && map.ceil(0).is_none());
    assert_eq!(map.remove(0), None);
}

#[test]
fn churn_keeps_leaves_at_least_a_quarter_full() {
    let mut map = AreaMap::new();
    let n = 64 * LEAF as u64;
    for slot in 0..n {
        map.insert(area(slot));
    }
    // Remove 7 of every 8 areas: merges must keep the memory per live area bounded.
    for slot in (0..n).filter(|s| s % 8 != 0) {
        map.remove(slot << 16);
    }
    map.check();
    // 512 areas left: merges keep the leaves at least a quarter full.
    assert!(
        map.leaf_count() * (LEAF / 4) <= map.len(),
        "{} leaves",
        map.leaf_count()
    );
}

#[test]
fn an_area_may_end_at_the_top_of_the_address_space() {
    let mut map = AreaMap::new();
    let top = Area {
        iova: u64::MAX - 0xfff,
        last: u64::MAX,
        user_va: 0x5000,
        prot: 4,
    };
    map.insert(top);
    assert_eq!(map.translate(u64::MAX), Some((0x5fff, 4)));
    assert_eq!(map.ceil(u64::MAX - 0xfff), Some(top));
    assert_eq!(map.floor(0), None);
}

#[test]
fn large_batches_through_the_radix_directory_agree_with_single_lookups() {
    // Two far-apart clusters with uneven spacing: a skewed key distribution.
    let mut map = AreaMap::new();
    let mut rng = Rng(0xfeed_5eed);
    let mut at = 0x1000u64;
    for k in 0..90_000u64 {
        if k == 45_000 {
            at = 1 << 60;
        }
        let len = 0x1000 * (1 + rng.below(4));
        map.insert(Area {
            iova: at,
            last: at + len - 1,
            user_va: k << 12,
            prot: 6,
        });
        at += len + 0x1000 * rng.below(3);
    }
    for round in 0..3 {
        let batch: Vec<u64> = (0..60_000)
            .map(|_| match rng.below(3) {
                0 => rng.below(at.min(1 << 40)),
                1 => (1 << 60) + rng.below(at - (1 << 60) + 0x10000),
                _ => rng.next(),
            })
            .collect();
        let (mut pas, mut prots) = (vec![0u64; batch.len()], vec![0u8; batch.len()]);
        map.translate_run(&batch, &mut pas, &mut prots);
        for (i, &q) in batch.iter().enumerate() {
            assert_eq!(
                (pas[i], prots[i] as u32),
                map.translate(q).unwrap_or((0, 0)),
                "{q:#x}"
            );
        }
        map.check(); // includes the directory against binary search at every key
                     // A mutation drops the directory; the next large batch rebuilds it.
        map.insert(Area {
            iova: 0x100 + round,
            last: 0x100 + round,
            user_va: 1,
            prot: 4,
        });
    }
}

#[test]
fn a_map_that_shrinks_gives_its_leaf_memory_back() {
    let mut map = AreaMap::new();
    let n = 600_000;
    for slot in 0..n {
        map.insert(area(slot));
    }
    let full = map.heap_bytes();
    for slot in 0..n {
        if slot % 1000 != 0 {
            assert_eq!(map.remove(slot << 16), Some(area(slot)));
        }
    }
    map.check();
    assert_eq!(map.len(), 600);
    // The pool keeps at most about two huge slabs (4 MiB) of slack.
    let kept = map.heap_bytes();
    assert!(
        kept < (5 << 20) && kept * 4 < full,
        "{kept} of {full} bytes kept"
    );
    for slot in (0..n).step_by(1000) {
        assert_eq!(
            map.translate((slot << 16) + 5),
            Some((slot * 7 + 0x1005, 6))
        );
    }
}

#[test]
fn maps_into_the_hole_after_a_full_leaf_keep_leaves_full() {
    // Two full leaves with a wide hole between them, then the hole filled
    // ascending and, in a second hole, descending: neither pattern may leave
    // a trail of nearly empty leaves.
    let mut map = AreaMap::new();
    for slot in (0..LEAF as u64).chain(100_000..100_000 + LEAF as u64) {
        map.insert(area(slot));
    }
    assert_eq!(map.leaf_count(), 2);
    for slot in 1000..1000 + 10 * LEAF as u64 {
        map.insert(area(slot));
    }
    map.check();
    assert_eq!(map.leaf_count(), 12, "ascending maps fill whole leaves");
    for slot in (50_000..50_000 + 10 * LEAF as u64).rev() {
        map.insert(area(slot));
    }
    map.check();
    assert!(
        map.leaf_count() <= 12 + 11,
        "{} leaves after descending maps",
        map.leaf_count()
    );
    assert_eq!(map.len(), 22 * LEAF);
}

#[test]
fn single_lookups_build_the_radix_directory_and_a_change_drops_it() {
    let mut map = AreaMap::new();
    let n = 200 * LEAF as u64; // 1,600 full leaves, so 1,600 keys
    for slot in 0..n * 8 {
        map.insert(area(slot));
    }
    let keys = map.leaf_count();
    assert!(keys >= 1024, "{keys} keys: enough for a directory");
    let bare = map.heap_bytes();
    let mut rng = Rng(0x5eed_0001);
    // A sixteenth of the key count of single lookups builds it...
    for _ in 0..keys / 16 + 1 {
        let slot = rng.below(n * 8);
        assert_eq!(
            map.translate((slot << 16) + 9),
            Some((slot * 7 + 0x1009, 6))
        );
        assert_eq!(
            map.translate((slot << 16) + 0x4000),
            None,
            "the hole after an area"
        );
    }
    assert!(map.heap_bytes() > bare, "the directory was built");
    map.check(); // the directory agrees with binary search at every key
    for _ in 0..1000 {
        let slot = rng.below(n * 8);
        assert_eq!(
            map.translate((slot << 16) + 0x3fff),
            Some((slot * 7 + 0x1000 + 0x3fff, 6))
        );
    }
    assert_eq!(map.translate(u64::MAX), None);
    // ...and any change drops it, so no lookup reads a stale one.
    map.remove(5 << 16);
    assert_eq!(map.heap_bytes(), bare);
    assert_eq!(map.translate((5 << 16) + 9), None);
    map.check();
}

/// The first hole at or above `from` that holds `need` bytes at page
/// offset `offset` from an `align`-aligned address, by brute force over
/// the areas: the aligned candidate, as the allocator computes it.
fn brute_fit(map: &AreaMap, from: u64, need: u64, align: u64, offset: u64) -> Option<u64> {
    let fit = |s: u64, l: u64| {
        let c = s.checked_add(align - 1)? & !(align - 1);
        let c = c | offset;
        (c <= l && l - c >= need - 1).then_some(c)
    };
    let mut p = from;
    for a in map.iter() {
        if a.last < p {
            continue;
        }
        if a.iova > p {
            if let Some(c) = fit(p, a.iova - 1) {
                return Some(c);
            }
        }
        p = a.last.checked_add(1)?;
    }
    fit(p, u64::MAX)
}

#[test]
fn find_hole_steps_over_misaligned_holes_and_matches_brute_force() {
    // Areas of sub-page and odd lengths placed at page starts and at
    // random offsets leave holes that are long enough but misaligned for
    // most requests: each leaf's per-alignment summary must still let
    // through every leaf with a hole that fits, and only those.
    let mut rng = Rng(0x5eed_f175);
    let mut map = AreaMap::new();
    let mut starts: Vec<u64> = Vec::new();
    // Up to ~15,000 areas: a few hundred leaves, several blocks of 64.
    for step in 0..24_000u64 {
        let page = rng.below(1 << 16);
        let start = (page << 12) + [0, 0x800, rng.below(0x1000)][rng.below(3) as usize];
        let len = [1 + rng.below(0xfff), 0x800, 0x1000, 0x3000][rng.below(4) as usize];
        let last = start + len - 1;
        let free = map.floor(last).is_none_or(|a| a.last < start);
        if free && rng.below(4) != 0 {
            map.insert(Area {
                iova: start,
                last,
                user_va: start,
                prot: 6,
            });
            starts.push(start);
        } else if !starts.is_empty() {
            let s = starts.swap_remove(rng.below(starts.len() as u64) as usize);
            map.remove(s).expect("present");
        }
        if step % 997 == 0 {
            map.check();
        }
        if step % 8 != 0 {
            continue;
        }
        for _ in 0..2 {
            let need = [1 + rng.below(0xfff), 0x800, 0x1000, 0x2000, 0x5000][rng.below(5) as usize];
            let align = 0x1000u64 << rng.below(10);
            let offset = [0, 0x800, rng.below(0x1000)][rng.below(3) as usize];
            let from = rng.below(1 << 28);
            let got = map.find_hole(from, need, align, offset, |s, l| {
                let c = s.checked_add(align - 1)? & !(align - 1);
                let c = c | offset;
                (c <= l && l - c >= need - 1).then_some(c)
            });
            let want = brute_fit(&map, from, need, align, offset);
            assert_eq!(
                got, want,
                "need {need:#x} align {align:#x} offset {offset:#x} from {from:#x}"
            );
        }
    }
    // Every summary the scans computed is exact.
    map.check();
    assert!(
        map.leaf_count() > 2 * 64,
        "{} leaves: too few blocks to test",
        map.leaf_count()
    );
}
