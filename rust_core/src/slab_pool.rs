//! A pool of fixed-size nodes carved from slabs, for the area map's leaves.
//!
//! Why not one Box per leaf: at 16M areas the leaves fill ~600 MB, and a
//! translation of a random address lands on a random leaf. In 4 KiB pages
//! that is a TLB miss (a nested page walk under a hypervisor) on top of
//! the cache misses. Slabs of 2 MiB, aligned and advised MADV_HUGEPAGE,
//! let the kernel back them with transparent huge pages where it allows
//! (THP "madvise" mode included), so the whole pool fits the second-level
//! TLB. Small pools use small slabs, so a table of a few areas stays small.
//!
//! Invariants: every node handed out is inside exactly one slab and is
//! not in the free list until it is given back; a slab is freed only when
//! the pool is dropped or rebuilt (`compact`), when no node points into it
//! any more. Nodes are plain data (`T: Copy`): nothing runs on release.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// The size and alignment of a large slab: one x86-64 huge page.
const HUGE: usize = 2 << 20;

/// A node owned by a pool: dereferences to the node, like a Box, but its
/// memory returns to the pool (`SlabPool::release`), not to the allocator.
#[derive(Debug)]
pub struct Node<T>(NonNull<T>);

impl<T> std::ops::Deref for Node<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a Node is only made by SlabPool::alloc, points at an
        // initialised node the pool keeps alive, and is unique (not Clone).
        unsafe { self.0.as_ref() }
    }
}

impl<T> std::ops::DerefMut for Node<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for Deref; uniqueness makes the borrow exclusive.
        unsafe { self.0.as_mut() }
    }
}

// SAFETY: a Node is the only handle to its memory, as a Box is.
unsafe impl<T: Send> Send for Node<T> {}
unsafe impl<T: Sync> Sync for Node<T> {}

#[derive(Debug)]
struct Slab {
    ptr: NonNull<u8>,
    layout: Layout,
}

#[derive(Debug)]
pub struct SlabPool<T> {
    slabs: Vec<Slab>,
    /// Next unused node of the last slab, and how many it has.
    bump: usize,
    bump_cap: usize,
    free: Vec<NonNull<T>>,
    live: usize,
}

// SAFETY: the pool owns its slabs exclusively; the raw pointers are never
// shared outside Nodes, which are unique.
unsafe impl<T: Send> Send for SlabPool<T> {}
unsafe impl<T: Sync> Sync for SlabPool<T> {}

impl<T> Default for SlabPool<T> {
    fn default() -> Self {
        SlabPool {
            slabs: Vec::new(),
            bump: 0,
            bump_cap: 0,
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T: Copy> SlabPool<T> {
    /// Nodes in a slab of `HUGE` bytes.
    fn huge_nodes() -> usize {
        (HUGE / std::mem::size_of::<T>()).max(1)
    }

    /// A node holding `value`.
    pub fn alloc(&mut self, value: T) -> Node<T> {
        let ptr = match self.free.pop() {
            Some(p) => p,
            None => {
                if self.bump == self.bump_cap {
                    self.grow();
                }
                let slab = self.slabs.last().expect("grow added a slab");
                // SAFETY: bump < bump_cap nodes fit in the last slab.
                let p = unsafe { (slab.ptr.as_ptr() as *mut T).add(self.bump) };
                self.bump += 1;
                NonNull::new(p).expect("slab pointers are non-null")
            }
        };
        // SAFETY: ptr is an unused node slot of a live slab, aligned for T.
        unsafe { ptr.as_ptr().write(value) };
        self.live += 1;
        Node(ptr)
    }

    /// Give a node back; its slot is reused by a later alloc.
    pub fn release(&mut self, node: Node<T>) {
        self.live -= 1;
        self.free.push(node.0);
    }

    /// Add a slab of half the nodes held so far (so at most a third of the
    /// pool is slack), up to huge-page slabs of 2 MiB.
    fn grow(&mut self) {
        let size = std::mem::size_of::<T>();
        let held: usize = self.slabs.iter().map(|s| s.layout.size() / size).sum();
        let nodes = (held / 2).clamp(1, Self::huge_nodes());
        let layout = if nodes == Self::huge_nodes() {
            Layout::from_size_align(HUGE, HUGE.max(std::mem::align_of::<T>()))
        } else {
            Layout::from_size_align(nodes * size, std::mem::align_of::<T>())
        }
        .expect("slab layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(layout)
        };
        if layout.size() == HUGE {
            advise_huge(ptr.as_ptr(), HUGE);
        }
        self.slabs.push(Slab { ptr, layout });
        self.bump = 0;
        self.bump_cap = nodes;
    }

    /// Nodes in use.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Bytes of slab held, used or free.
    pub fn slab_bytes(&self) -> usize {
        self.slabs.iter().map(|s| s.layout.size()).sum()
    }

    /// Whether free slots outweigh live nodes enough that a rebuild would
    /// give memory back: more than twice the live nodes and more than two
    /// huge slabs' worth. After a table shrinks, `compact` then returns
    /// the pool to about its live size.
    pub fn worth_compacting(&self) -> bool {
        let unused = self.free.len() + (self.bump_cap - self.bump);
        unused > 2 * self.live && unused > 2 * Self::huge_nodes()
    }

    /// Move every node of `nodes` (which must be all the live nodes) into a
    /// fresh pool and drop the old slabs. O(live nodes).
    pub fn compact(&mut self, nodes: &mut [Node<T>]) {
        assert_eq!(nodes.len(), self.live, "compact needs every live node");
        let mut fresh = SlabPool::default();
        for node in nodes.iter_mut() {
            // The old handle needs no release: its slab goes with the old pool.
            *node = fresh.alloc(**node);
        }
        *self = fresh;
    }
}

impl<T> Drop for SlabPool<T> {
    fn drop(&mut self) {
        for slab in &self.slabs {
            // SAFETY: allocated in grow with this layout; T is Copy, so no
            // node needs dropping.
            unsafe { dealloc(slab.ptr.as_ptr(), slab.layout) };
        }
    }
}

/// Ask for transparent huge pages on [ptr, ptr + len). A hint: where THP is
/// off the call fails or does nothing, and the slab works the same.
fn advise_huge(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: madvise only changes how the kernel backs this range, which
    // we own; it never changes its contents.
    unsafe {
        libc::madvise(ptr as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}
