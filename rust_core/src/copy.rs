//! IOMMU_IOAS_COPY: map the pages behind a source IOVA range at a new IOVA
//! of another (or the same) IOAS. The source range may span several
//! contiguous areas; each covered chunk becomes one destination area.

use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{
    reaches_ulong_max, Area, IoPagetable, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_WRITEABLE,
    MAP_FLAGS, PROT_MASK,
};

/// IOMMU_IOAS_COPY steps 1-3, run before the IOAS lookups.
pub fn check_copy_args(flags: u32, src_iova: u64, length: u64, dst_iova: u64) -> Result<()> {
    if flags & !MAP_FLAGS != 0 {
        return err(
            EOPNOTSUPP,
            format!("Unknown IOAS_COPY flag bits {:#x}.", flags & !MAP_FLAGS),
        );
    }
    if reaches_ulong_max(length) || reaches_ulong_max(src_iova) || reaches_ulong_max(dst_iova) {
        return err(
            EOVERFLOW,
            format!("length {length:#x}, src_iova {src_iova:#x} or dst_iova {dst_iova:#x} reaches 2^64-1."),
        );
    }
    if flags & PROT_MASK == 0 {
        return err(EINVAL, "A copy must be READABLE, WRITEABLE or both.");
    }
    Ok(())
}

impl IoPagetable {
    /// The source chunks covering `[src_iova, src_iova + length - 1]`, or
    /// ENOENT when any byte of it is unmapped.
    pub fn copy_chunks(&self, src_iova: u64, length: u64) -> Result<Vec<Area>> {
        if length == 0 {
            return err(EINVAL, "Copy of zero bytes.");
        }
        let Some(last) = src_iova.checked_add(length - 1) else {
            return err(
                EOVERFLOW,
                format!("src_iova {src_iova:#x} + length {length:#x} wraps past 2^64."),
            );
        };
        let mut chunks = Vec::new();
        let mut p = src_iova;
        loop {
            let Some(area) = self.area_at(p) else {
                return err(
                    ENOENT,
                    format!(
                        "The source range {src_iova:#x}..={last:#x} is not fully mapped at {p:#x}."
                    ),
                );
            };
            let chunk_last = area.last.min(last);
            chunks.push(Area {
                iova: p,
                last: chunk_last,
                user_va: area.user_va.wrapping_add(p - area.iova),
                prot: area.prot,
            });
            if chunk_last == last {
                return Ok(chunks);
            }
            p = chunk_last + 1;
        }
    }

    /// Place `chunks` (from copy_chunks) at `dst_iova` (FIXED) or at an
    /// allocated IOVA, each filled into this table's domains; returns the
    /// destination IOVA. Nothing changes on error.
    pub fn copy_insert(&mut self, flags: u32, chunks: &[Area], dst_iova: u64) -> Result<u64> {
        let length: u64 = chunks.iter().map(Area::length).sum();
        let align = self.iova_alignment;
        if chunks.iter().any(|c| c.length() % align != 0) {
            return err(
                EINVAL,
                format!("A source chunk is not a multiple of the alignment {align:#x}."),
            );
        }
        let iova = if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
            self.check_fixed(dst_iova, length)?;
            dst_iova
        } else {
            self.alloc_iova(length, chunks[0].user_va)?
        };
        for c in chunks {
            self.check_user_offset(c.user_va)?;
        }
        if flags & IOMMU_IOAS_MAP_WRITEABLE != 0 {
            if let Some(c) = chunks
                .iter()
                .find(|c| c.prot & IOMMU_IOAS_MAP_WRITEABLE == 0)
            {
                return err(
                    EPERM,
                    format!("The source {:#x}..={:#x} is mapped read-only; it cannot be copied writeable.", c.iova, c.last),
                );
            }
        }
        self.check_room(chunks.len())?;
        let base = chunks[0].iova;
        for (i, c) in chunks.iter().enumerate() {
            let at = iova + (c.iova - base);
            let filled = self.insert_filled(Area {
                iova: at,
                last: at + (c.length() - 1),
                user_va: c.user_va,
                prot: flags & PROT_MASK,
            });
            if let Err(e) = filled {
                // A domain refused a chunk: the ones placed before it go
                // again, from the table and its domains.
                for done in &chunks[..i] {
                    self.remove_area(iova + (done.iova - base));
                }
                return Err(e);
            }
        }
        Ok(iova)
    }
}

/// IOMMU_IOAS_COPY after the lookups, between two distinct tables.
pub fn copy(
    dst: &mut IoPagetable,
    src: &IoPagetable,
    flags: u32,
    src_iova: u64,
    length: u64,
    dst_iova: u64,
) -> Result<u64> {
    check_copy_args(flags, src_iova, length, dst_iova)?;
    let chunks = src.copy_chunks(src_iova, length)?;
    dst.copy_insert(flags, &chunks, dst_iova)
}

/// IOMMU_IOAS_COPY within one table.
pub fn copy_within(
    t: &mut IoPagetable,
    flags: u32,
    src_iova: u64,
    length: u64,
    dst_iova: u64,
) -> Result<u64> {
    check_copy_args(flags, src_iova, length, dst_iova)?;
    let chunks = t.copy_chunks(src_iova, length)?;
    t.copy_insert(flags, &chunks, dst_iova)
}
