//! `iommud._core.Domain`: the Python face of `crate::domain::Domain`, the
//! IO page table of one paging HWPT.
//!
//! Lock order: a table's lock, then its domains' (IoPagetable's methods
//! that fill, unfill or read a domain hold the table's lock while they take
//! the domain's). The methods here take the domain's lock alone, never a
//! table's, so they cannot close a cycle. Those that can take long
//! (mark_dirty, check_map, entries, set_dirty_tracking) release the GIL and
//! then take the lock; the others take it without blocking while they hold
//! the GIL (python/mod.rs).

use std::sync::RwLockReadGuard;

use pyo3::prelude::*;

use super::{read_gil, to_py};
use crate::domain::{read_domain, write_domain, Domain as Core, SharedDomain};
use crate::errno::{CoreError, Errno};

/// The IO page table of one paging HWPT: what its IOAS filled into it, as
/// leaves of its page sizes, with dirty state per leaf.
#[pyclass(module = "iommud._core", frozen, weakref)]
pub struct Domain {
    pub(super) inner: SharedDomain,
}

impl Domain {
    fn read_py(&self, py: Python<'_>) -> RwLockReadGuard<'_, Core> {
        read_gil(py, &self.inner)
    }
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

    /// Changes so far (write locks): equal generations mean equal states
    /// (snapshot.py reuses an unchanged domain's state).
    #[getter]
    fn generation(&self, py: Python<'_>) -> u64 {
        self.read_py(py).generation()
    }

    #[getter]
    fn pgsize_bitmap(&self, py: Python<'_>) -> u64 {
        self.read_py(py).pgsize_bitmap()
    }

    #[getter]
    fn aperture_start(&self, py: Python<'_>) -> u64 {
        self.read_py(py).aperture_start()
    }

    #[getter]
    fn aperture_last(&self, py: Python<'_>) -> u64 {
        self.read_py(py).aperture_last()
    }

    /// The lowest page size of pgsize_bitmap.
    #[getter]
    fn min_page_size(&self, py: Python<'_>) -> u64 {
        self.read_py(py).min_page_size()
    }

    #[getter]
    fn num_entries(&self, py: Python<'_>) -> usize {
        self.read_py(py).num_entries()
    }

    #[getter]
    fn mapped_bytes(&self, py: Python<'_>) -> u64 {
        self.read_py(py).mapped_bytes()
    }

    #[getter]
    fn dirty_tracking(&self, py: Python<'_>) -> bool {
        self.read_py(py).dirty_tracking()
    }

    /// Whether an IoPagetable holds this domain.
    #[getter]
    fn attached(&self, py: Python<'_>) -> bool {
        self.read_py(py).attached()
    }

    /// [(iova, length, pa, prot, leaf_cap)] in IOVA order; leaf_cap 0: none.
    /// Collected with the GIL released.
    fn entries(&self, py: Python<'_>) -> Vec<(u64, u64, u64, u32, u64)> {
        py.detach(|| {
            read_domain(&self.inner)
                .entries()
                .map(|e| (e.iova, e.length(), e.pa, e.prot, e.leaf_cap))
                .collect()
        })
    }

    /// The leaf (IOPTE) holding `iova` as (start, size); ENOENT when unmapped.
    fn leaf_at(&self, py: Python<'_>, iova: u64) -> PyResult<(u64, u64)> {
        self.read_py(py)
            .leaf_at(iova)
            .ok_or_else(|| not_mapped(iova))
    }

    /// (pa, prot) of `iova` through the domain; ENOENT when unmapped.
    fn translate(&self, py: Python<'_>, iova: u64) -> PyResult<(u64, u32)> {
        self.read_py(py)
            .translate(iova)
            .ok_or_else(|| not_mapped(iova))
    }

    /// IOMMU_TEST_OP_MD_CHECK_MAP (iommufd_test_md_check_pa); EINVAL on
    /// misalignment, overflow, a hole or a mismatch. Releases the GIL: it
    /// walks the range one smallest page at a time.
    fn check_map(&self, py: Python<'_>, iova: u64, length: u64, user_va: u64) -> PyResult<()> {
        py.detach(|| read_domain(&self.inner).check_map(iova, length, user_va))
            .map_err(to_py)
    }

    /// Enabling starts from a clean snapshot; disabling keeps the D bits.
    /// Releases the GIL (the snapshot drops every dirty range).
    fn set_dirty_tracking(&self, py: Python<'_>, enable: bool) {
        py.detach(|| write_domain(&self.inner).set_dirty_tracking(enable))
    }

    /// IOMMU_TEST_OP_DIRTY (iommufd_test_dirty): dirty the leaf holding
    /// iova + i * page_size for each set bit i; returns the set bits counted.
    /// Releases the GIL (the bitmap may hold 2^27 bits).
    fn mark_dirty(
        &self,
        py: Python<'_>,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u8],
    ) -> PyResult<u64> {
        py.detach(|| write_domain(&self.inner).mark_dirty(iova, length, page_size, bitmap))
            .map_err(to_py)
    }

    /// Heap bytes of the domain (an upper estimate, for memory budgets):
    /// its entries and dirty ranges. An attached domain is counted in its
    /// table's memory_bytes too.
    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.read_py(py).memory_bytes()
    }
}
