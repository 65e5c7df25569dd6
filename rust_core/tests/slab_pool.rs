//! The leaf pool: nodes keep their values through growth, reuse and
//! compaction; slots are reused before new slabs are taken; a pool that
//! shrank gives its memory back when compacted.

use iommud_core::slab_pool::{Node, SlabPool};

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
struct Block([u64; 64]);

fn block(v: u64) -> Block {
    Block([v; 64])
}

#[test]
fn nodes_keep_their_values_across_growth_into_huge_slabs() {
    let mut pool = SlabPool::default();
    // 512 B nodes: 4096 per 2 MiB slab, so 10,000 reach the third huge slab.
    let nodes: Vec<Node<Block>> = (0..10_000).map(|v| pool.alloc(block(v))).collect();
    assert_eq!(pool.live(), 10_000);
    for (v, n) in nodes.iter().enumerate() {
        assert_eq!(**n, block(v as u64));
        assert_eq!(
            (&**n as *const Block as usize) % 64,
            0,
            "nodes keep T's alignment"
        );
    }
    // Small slabs growing by half, then 2 MiB ones: slack under one huge slab.
    assert!(pool.slab_bytes() >= 10_000 * 512 && pool.slab_bytes() < 10_000 * 512 + (2 << 20));
}

#[test]
fn released_slots_are_reused_before_the_pool_grows() {
    let mut pool = SlabPool::default();
    let mut nodes: Vec<Node<Block>> = (0..100).map(|v| pool.alloc(block(v))).collect();
    let bytes = pool.slab_bytes();
    for _ in 0..50 {
        pool.release(nodes.pop().unwrap());
    }
    for v in 0..50 {
        nodes.push(pool.alloc(block(1000 + v)));
    }
    assert_eq!(
        pool.slab_bytes(),
        bytes,
        "no new slab while free slots remain"
    );
    assert_eq!(pool.live(), 100);
    assert_eq!(*nodes[99], block(1049));
    assert_eq!(*nodes[0], block(0));
}

#[test]
fn a_pool_that_shrank_compacts_to_its_live_size() {
    let mut pool = SlabPool::default();
    let mut nodes: Vec<Node<Block>> = (0..20_000).map(|v| pool.alloc(block(v))).collect();
    let big = pool.slab_bytes();
    let mut kept = Vec::new();
    for (i, n) in nodes.drain(..).enumerate() {
        if i % 100 == 0 {
            kept.push(n);
        } else {
            pool.release(n);
        }
    }
    assert!(pool.worth_compacting());
    pool.compact(&mut kept);
    assert!(!pool.worth_compacting());
    assert_eq!(pool.live(), 200);
    assert!(
        pool.slab_bytes() * 50 < big,
        "{} of {big} bytes kept",
        pool.slab_bytes()
    );
    for (k, n) in kept.iter().enumerate() {
        assert_eq!(**n, block(100 * k as u64));
    }
}
