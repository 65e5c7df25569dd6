//! `iommud._core.Type1Dma`: the Python face of `crate::type1`.
//!
//! Lock order: this object's mutex, then the table's lock (then, inside
//! the core, the table's domains' locks, as everywhere). Neither is held
//! while MAP_DMA's `charge` runs: it is Python code, which may read the
//! table (the session's mapped bytes) or this object, and would deadlock on
//! a lock its own thread holds. MAP_DMA's two halves, UNMAP_DMA,
//! DIRTY_PAGES and reset run with the GIL released and take both locks
//! inside; the getters take the mutex without blocking while they hold the
//! GIL (python/mod.rs).

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::ioas::IoPagetable;
use super::{lock_gil, to_py};
use crate::type1::Type1Dma as Core;

/// vfio_iommu_type1's per-container DMA state: IOMMU type, dma_entry_limit
/// accounting, UPDATE_VADDR invalidations, dirty logging.
#[pyclass(module = "iommud._core", frozen)]
pub struct Type1Dma {
    pub(super) inner: Mutex<Core>,
}

impl Type1Dma {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // Every call checks before it changes anything, so a poisoned lock
        // (a core bug) still guards consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mutex from a thread holding the GIL (python/mod.rs).
    fn lock_py(&self, py: Python<'_>) -> MutexGuard<'_, Core> {
        lock_gil(py, &self.inner)
    }
}

fn packed<'py>(py: Python<'py>, words: &[u64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

#[pymethods]
impl Type1Dma {
    #[new]
    fn new(dma_entry_limit: u64) -> Self {
        Type1Dma {
            inner: Mutex::new(Core::new(dma_entry_limit)),
        }
    }

    #[getter]
    fn dma_entry_limit(&self, py: Python<'_>) -> u64 {
        self.lock_py(py).dma_entry_limit()
    }

    #[getter]
    fn dma_avail(&self, py: Python<'_>) -> u64 {
        self.lock_py(py).dma_avail()
    }

    /// 0 until set.
    #[getter]
    fn iommu_type(&self, py: Python<'_>) -> u32 {
        self.lock_py(py).iommu_type()
    }

    #[getter]
    fn dirty_started(&self, py: Python<'_>) -> bool {
        self.lock_py(py).dirty_started()
    }

    /// VFIO_SET_IOMMU's effect, once the caller has applied the container
    /// rules; EINVAL for a type other than 1 (TYPE1) or 3 (TYPE1v2).
    fn set_iommu_type(&self, py: Python<'_>, iommu_type: u32) -> PyResult<()> {
        self.lock_py(py).set_iommu_type(iommu_type).map_err(to_py)
    }

    /// The last group left the container: stop dirty tracking on iopt,
    /// unmap everything, type back to 0, dma_avail = limit, no invalid vaddrs.
    #[pyo3(signature = (iopt))]
    fn reset(&self, py: Python<'_>, iopt: Option<&IoPagetable>) {
        py.detach(|| {
            let mut dma = self.lock();
            let mut table = iopt.map(IoPagetable::write);
            dma.reset(table.as_deref_mut());
        })
    }

    /// VFIO_IOMMU_MAP_DMA in type1's order. iopt None: the container has no
    /// compat IOAS (ENODEV). `charge(size)` is called right before the new
    /// mapping is made; an exception from it propagates unchanged and
    /// nothing changes.
    #[pyo3(signature = (iopt, argsz, flags, vaddr, iova, size, charge))]
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    fn map_dma(
        &self,
        py: Python<'_>,
        iopt: Option<&IoPagetable>,
        argsz: u32,
        flags: u32,
        vaddr: u64,
        iova: u64,
        size: u64,
        charge: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let pending = py
            .detach(|| {
                let mut dma = self.lock();
                let mut table = iopt.map(IoPagetable::write);
                dma.map_dma_prepare(table.as_deref_mut(), argsz, flags, vaddr, iova, size)
            })
            .map_err(to_py)?;
        let Some(pending) = pending else {
            return Ok(());
        };
        charge.call1((pending.size(),))?;
        let table = iopt.expect("prepare found the table");
        py.detach(|| self.lock().map_dma_commit(&mut table.write(), pending))
            .map_err(to_py)
    }

    /// VFIO_IOMMU_UNMAP_DMA: (bytes unmapped, dirty bitmap bytes or b"").
    #[pyo3(signature = (iopt, argsz, flags, iova, size, bitmap_pgsize, bitmap_size))]
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    fn unmap_dma<'py>(
        &self,
        py: Python<'py>,
        iopt: Option<&IoPagetable>,
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        bitmap_pgsize: u64,
        bitmap_size: u64,
    ) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let (bytes, words) = py
            .detach(|| {
                let mut dma = self.lock();
                let mut table = iopt.map(IoPagetable::write);
                dma.unmap_dma(
                    table.as_deref_mut(),
                    argsz,
                    flags,
                    iova,
                    size,
                    bitmap_pgsize,
                    bitmap_size,
                )
            })
            .map_err(to_py)?;
        Ok((bytes, packed(py, &words)))
    }

    /// VFIO_IOMMU_DIRTY_PAGES START/STOP/GET_BITMAP in type1's order (ready
    /// EINVAL, not v2 EACCES, then argsz, ...); b"" for START and STOP.
    #[pyo3(signature = (iopt, argsz, flags, iova, size, bitmap_pgsize, bitmap_size))]
    #[allow(clippy::too_many_arguments)] // the ioctl's fields, one argument each
    fn dirty_pages<'py>(
        &self,
        py: Python<'py>,
        iopt: Option<&IoPagetable>,
        argsz: u32,
        flags: u32,
        iova: u64,
        size: u64,
        bitmap_pgsize: u64,
        bitmap_size: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let words = py
            .detach(|| {
                let mut dma = self.lock();
                let mut table = iopt.map(IoPagetable::write);
                dma.dirty_pages(
                    table.as_deref_mut(),
                    argsz,
                    flags,
                    iova,
                    size,
                    bitmap_pgsize,
                    bitmap_size,
                )
            })
            .map_err(to_py)?;
        Ok(packed(py, &words))
    }

    /// VFIO_CHECK_EXTENSION(VFIO_UPDATE_VADDR): 1 once an IOMMU type is set, else 0.
    fn check_extension_update_vaddr(&self, py: Python<'_>) -> u32 {
        self.lock_py(py).check_extension_update_vaddr()
    }
}
