//! `iommud._core.Domain`: the Python face of `crate::domain::Domain`, the
//! IO page table of one paging HWPT.
//!
//! Lock order: a table's lock, then its domains' (IoPagetable's methods
//! that fill, unfill or read a domain hold the table's lock while they take
//! the domain's). The methods here take the domain's lock alone, never a
//! table's, so they cannot close a cycle.

use pyo3::prelude::*;

use super::to_py;
use crate::domain::{read_domain, write_domain, Domain as Core, SharedDomain};
use crate::errno::{CoreError, Errno};

/// The IO page table of one paging HWPT: what its IOAS filled into it, as
/// leaves of its page sizes, with dirty state per leaf.
#[pyclass(module = "iommud._core", frozen)]
pub struct Domain {
    pub(super) inner: SharedDomain,
}

fn not_mapped(iova: u64) -> PyErr {
    to_py(CoreError::new(
        Errno::ENOENT,
        format!("The domain maps nothing at IOVA {iova:#x}."),
    ))
}

#[pymethods]
impl Domain {
    #[new]
    fn new(pgsize_bitmap: u64, aperture_start: u64, aperture_last: u64) -> PyResult<Self> {
        let core = Core::new(pgsize_bitmap, aperture_start, aperture_last).map_err(to_py)?;
        Ok(Domain {
            inner: core.shared(),
        })
    }

    #[getter]
    fn pgsize_bitmap(&self) -> u64 {
        read_domain(&self.inner).pgsize_bitmap()
    }

    #[getter]
    fn aperture_start(&self) -> u64 {
        read_domain(&self.inner).aperture_start()
    }

    #[getter]
    fn aperture_last(&self) -> u64 {
        read_domain(&self.inner).aperture_last()
    }

    /// The lowest page size of pgsize_bitmap.
    #[getter]
    fn min_page_size(&self) -> u64 {
        read_domain(&self.inner).min_page_size()
    }

    #[getter]
    fn num_entries(&self) -> usize {
        read_domain(&self.inner).num_entries()
    }

    #[getter]
    fn mapped_bytes(&self) -> u64 {
        read_domain(&self.inner).mapped_bytes()
    }

    #[getter]
    fn dirty_tracking(&self) -> bool {
        read_domain(&self.inner).dirty_tracking()
    }

    /// Whether an IoPagetable holds this domain.
    #[getter]
    fn attached(&self) -> bool {
        read_domain(&self.inner).attached()
    }

    /// [(iova, length, pa, prot, leaf_cap)] in IOVA order; leaf_cap 0: none.
    fn entries(&self) -> Vec<(u64, u64, u64, u32, u64)> {
        read_domain(&self.inner)
            .entries()
            .map(|e| (e.iova, e.length(), e.pa, e.prot, e.leaf_cap))
            .collect()
    }

    /// The leaf (IOPTE) holding `iova` as (start, size); ENOENT when unmapped.
    fn leaf_at(&self, iova: u64) -> PyResult<(u64, u64)> {
        read_domain(&self.inner)
            .leaf_at(iova)
            .ok_or_else(|| not_mapped(iova))
    }

    /// (pa, prot) of `iova` through the domain; ENOENT when unmapped.
    fn translate(&self, iova: u64) -> PyResult<(u64, u32)> {
        read_domain(&self.inner)
            .translate(iova)
            .ok_or_else(|| not_mapped(iova))
    }

    /// IOMMU_TEST_OP_MD_CHECK_MAP (iommufd_test_md_check_pa); EINVAL on
    /// misalignment, overflow, a hole or a mismatch.
    fn check_map(&self, iova: u64, length: u64, user_va: u64) -> PyResult<()> {
        read_domain(&self.inner)
            .check_map(iova, length, user_va)
            .map_err(to_py)
    }

    /// Enabling starts from a clean snapshot; disabling keeps the D bits.
    fn set_dirty_tracking(&self, enable: bool) {
        write_domain(&self.inner).set_dirty_tracking(enable)
    }

    /// IOMMU_TEST_OP_DIRTY (iommufd_test_dirty): dirty the leaf holding
    /// iova + i * page_size for each set bit i; returns the set bits counted.
    fn mark_dirty(&self, iova: u64, length: u64, page_size: u64, bitmap: &[u8]) -> PyResult<u64> {
        write_domain(&self.inner)
            .mark_dirty(iova, length, page_size, bitmap)
            .map_err(to_py)
    }
}
