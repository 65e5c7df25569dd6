//! The thin PyO3 layer: `iommud._core`. It converts arguments, takes the
//! table's lock and maps CoreError to OSError(errno, message); every rule
//! lives in the pure-Rust modules.
//!
//! The GIL and the locks. Every method that can take long (a batch, an
//! unmap of any range, a copy, a dirty bitmap, a fill of a domain, a
//! large DMA, ...) converts its arguments with the GIL, then releases it
//! (`Python::detach`) and does its work, locks included, without it; the
//! results become Python objects after. So the daemon may call them from
//! worker threads (asyncio.to_thread) while its loop runs, and since each
//! holds the object's lock for its whole operation, every other caller
//! sees it whole or not at all. Short methods keep the GIL, but take their
//! lock through `read_gil`/`write_gil`/`lock_gil`: at once when it is free,
//! else waiting with the GIL released. Two rules make this deadlock-free:
//! no thread waits for the GIL while it holds one of these locks (a
//! detached closure drops its guards before it returns, and no lock is
//! held across a call into Python: Type1Dma.map_dma calls `charge` with
//! none), and the locks themselves are always taken in one order:
//!
//!   Type1Dma's mutex → the tables' locks (two tables: lower address
//!   first) → the tables' domains' locks (in attach order).
//!
//! `Domain`'s own methods take only their domain's lock.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::errno::CoreError;

mod domain;
mod gate;
mod ioas;
mod state;
mod type1;

pub(crate) fn to_py(e: CoreError) -> PyErr {
    PyOSError::new_err((e.errno as i32, e.message))
}

// The lock helpers below hand back the guard of a poisoned lock: every core
// call checks before it changes anything, so a panic (a core bug) leaves
// consistent state behind.

/// A read lock, from a thread that holds the GIL: at once when free, else
/// waited for with the GIL released (see the module comment).
pub(crate) fn read_gil<'a, T: Send + Sync>(
    py: Python<'_>,
    lock: &'a RwLock<T>,
) -> RwLockReadGuard<'a, T> {
    loop {
        match lock.try_read() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(lock.read())),
        }
    }
}

/// A write lock, as `read_gil`.
pub(crate) fn write_gil<'a, T: Send + Sync>(
    py: Python<'_>,
    lock: &'a RwLock<T>,
) -> RwLockWriteGuard<'a, T> {
    loop {
        match lock.try_write() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(lock.write())),
        }
    }
}

/// A mutex, as `read_gil`.
pub(crate) fn lock_gil<'a, T: Send>(py: Python<'_>, lock: &'a Mutex<T>) -> MutexGuard<'a, T> {
    loop {
        match lock.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => py.detach(|| drop(lock.lock())),
        }
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PAGE_SIZE", crate::io_pagetable::PAGE_SIZE)?;
    m.add(
        "IOMMU_IOAS_MAP_FIXED_IOVA",
        crate::io_pagetable::IOMMU_IOAS_MAP_FIXED_IOVA,
    )?;
    m.add(
        "IOMMU_IOAS_MAP_WRITEABLE",
        crate::io_pagetable::IOMMU_IOAS_MAP_WRITEABLE,
    )?;
    m.add(
        "IOMMU_IOAS_MAP_READABLE",
        crate::io_pagetable::IOMMU_IOAS_MAP_READABLE,
    )?;
    m.add("BATCH_RELEASE_GIL", ioas::BATCH_RELEASE_GIL)?;
    m.add_class::<ioas::IoPagetable>()?;
    m.add_class::<domain::Domain>()?;
    m.add_class::<gate::PeerGate>()?;
    m.add_class::<type1::Type1Dma>()?;
    m.add_function(wrap_pyfunction!(ioas::check_map_args, m)?)?;
    m.add_function(wrap_pyfunction!(ioas::check_copy_args, m)?)?;
    m.add_function(wrap_pyfunction!(ioas::copy, m)?)?;
    state::register(m)?;
    Ok(())
}
