//! IOVA allocation throughput: `n` automatic maps of page-sized and of
//! sub-page lengths (and of page lengths at a page offset), each shape
//! timed at doubling n. Before the allocator kept per-alignment hole
//! summaries, the sub-page shapes doubled their time four-fold per step
//! (every leaf had a hole long enough but none aligned to fit: 2^16 maps
//! took 8-16 s); now every shape costs what page-sized maps cost, and with
//! the summaries per block of 64 leaves the cost per map stays near flat
//! (about 0.5-1 us up to 2^20 maps, where reading every leaf's summary on
//! every map took 2.6 us each at 2^18 and grew linearly).
//!
//! `cargo bench --bench alloc [-- MAX_LOG2]` (default 17).

use std::time::Instant;

use iommud_core::io_pagetable::{IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE};
use iommud_core::IoPagetable;

const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/// (name, IOAS alignment, (user_va, length) of map i).
type Shape = (&'static str, u64, fn(u64) -> (u64, u64));

const SHAPES: [Shape; 4] = [
    ("page 0x1000", 1, |_| (0, 0x1000)),
    ("sub-page 0x800, alignment 0x800", 0x800, |_| (0, 0x800)),
    ("sub-page 1..0xfff, alignment 1", 1, |i| (0, 1 + i % 0xfff)),
    ("page 0x1000 at page offset 0x800", 1, |_| (0x1800, 0x1000)),
];

fn run(n: u64, align: u64, req: fn(u64) -> (u64, u64)) -> f64 {
    let mut t = IoPagetable::new();
    t.set_iova_alignment(align).unwrap();
    let started = Instant::now();
    for i in 0..n {
        let (user_va, length) = req(i);
        t.map(RW, user_va, length, 0).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(t.num_areas() as u64, n);
    secs
}

fn main() {
    let max_log2: u32 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(17);
    for (name, align, req) in SHAPES {
        for log2 in 14..=max_log2 {
            let n = 1u64 << log2;
            let secs = run(n, align, req);
            println!(
                "{name:<34} n=2^{log2:<2} {secs:>8.3} s  {:>7.0} ns/map",
                secs * 1e9 / n as f64
            );
        }
    }
}
