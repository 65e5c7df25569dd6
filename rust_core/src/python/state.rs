//! Snapshot records for the daemon's journal (state.rs): module functions
//! rather than methods, because snapshot.py registers them as the pickle
//! reductions of the three classes (copyreg), which name a callable and
//! its arguments. Records are built and read with the GIL released; the
//! object's own lock is held while its record is built, so a record is
//! one consistent state.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::domain::Domain;
use super::ioas::IoPagetable;
use super::type1::Type1Dma;
use super::{lock_gil, to_py};
use crate::domain::{read_domain, Domain as DomainCore};
use crate::io_pagetable::IoPagetable as IoptCore;
use crate::type1::Type1Dma as Type1Core;

/// The table's record (not its domains: each HWPT pickles its own).
#[pyfunction]
fn iopt_state<'py>(py: Python<'py>, table: &IoPagetable) -> Bound<'py, PyBytes> {
    let bytes = py.detach(|| table.read().to_state());
    PyBytes::new(py, &bytes)
}

/// A table from its record, with no domain attached yet (attach_filled).
#[pyfunction]
fn iopt_from_state(py: Python<'_>, state: &[u8]) -> PyResult<IoPagetable> {
    let core = py.detach(|| IoptCore::from_state(state)).map_err(to_py)?;
    Ok(IoPagetable::from_core(core))
}

#[pyfunction]
fn domain_state<'py>(py: Python<'py>, domain: &Domain) -> Bound<'py, PyBytes> {
    let bytes = py.detach(|| read_domain(&domain.inner).to_state());
    PyBytes::new(py, &bytes)
}

/// A domain from its record, unattached.
#[pyfunction]
fn domain_from_state(py: Python<'_>, state: &[u8]) -> PyResult<Domain> {
    let core = py.detach(|| DomainCore::from_state(state)).map_err(to_py)?;
    Ok(Domain {
        inner: core.shared(),
    })
}

#[pyfunction]
fn type1_state<'py>(py: Python<'py>, dma: &Type1Dma) -> Bound<'py, PyBytes> {
    let bytes = lock_gil(py, &dma.inner).to_state();
    PyBytes::new(py, &bytes)
}

#[pyfunction]
fn type1_from_state(state: &[u8]) -> PyResult<Type1Dma> {
    let core = Type1Core::from_state(state).map_err(to_py)?;
    Ok(Type1Dma {
        inner: Mutex::new(core),
    })
}

/// Attach `domain`, which a snapshot loaded filled with exactly this
/// table's areas, without filling it again.
#[pyfunction]
fn iopt_attach_filled(py: Python<'_>, table: &IoPagetable, domain: &Domain) -> PyResult<()> {
    py.detach(|| table.write().attach_filled(&domain.inner))
        .map_err(to_py)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(iopt_state, m)?)?;
    m.add_function(wrap_pyfunction!(iopt_from_state, m)?)?;
    m.add_function(wrap_pyfunction!(domain_state, m)?)?;
    m.add_function(wrap_pyfunction!(domain_from_state, m)?)?;
    m.add_function(wrap_pyfunction!(type1_state, m)?)?;
    m.add_function(wrap_pyfunction!(type1_from_state, m)?)?;
    m.add_function(wrap_pyfunction!(iopt_attach_filled, m)?)?;
    Ok(())
}
