//! The thin PyO3 layer: `iommud._core`. It converts arguments, takes the
//! table's lock and maps CoreError to OSError(errno, message); every rule
//! lives in the pure-Rust modules.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::errno::CoreError;

mod domain;
mod gate;
mod ioas;
mod type1;

pub(crate) fn to_py(e: CoreError) -> PyErr {
    PyOSError::new_err((e.errno as i32, e.message))
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
    Ok(())
}
