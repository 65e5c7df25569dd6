//! `IoPagetable`: one IOAS's table behind a RwLock, so that translate
//! batches, maps, unmaps, copies and dirty reads run on worker threads with
//! the GIL released while the daemon's loop serves other calls. Readers see
//! a map or unmap whole or not at all.
//!
//! Lock order (python/mod.rs has the whole of it, with the GIL): a copy
//! between two tables takes the locks in address order, so two opposite
//! copies cannot deadlock. A table's lock comes before its domains'
//! (`Domain`): the core takes a domain's lock only inside a table call,
//! and `Domain`'s own methods never take a table's. Methods that can take
//! long release the GIL and then take the lock; the others take it with
//! `read_gil`/`write_gil`, never blocking on it with the GIL held.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::domain::Domain;
use super::{read_gil, to_py, write_gil};
use crate::errno::{CoreError, Errno};
use crate::io_pagetable::IoPagetable as Core;

/// Translate batches at least this long run with the GIL released.
pub const BATCH_RELEASE_GIL: usize = 4096;

/// A DMA access at least this long releases the GIL (it walks every area
/// it touches and marks their dirty pages).
pub const DMA_RELEASE_GIL: u64 = 64 << 10;

/// A Python buffer held as plain bytes (PyBUF_SIMPLE): any exporter works,
/// whatever its item format — bytes, bytearray, memoryview, array('Q'),
/// numpy arrays. Released on drop.
struct RawBuffer {
    view: ffi::Py_buffer,
}

impl RawBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::get_with(obj, ffi::PyBUF_C_CONTIGUOUS)
    }

    fn get_with(obj: &Bound<'_, PyAny>, flags: std::os::raw::c_int) -> PyResult<Self> {
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        // SAFETY: obj is a live object and the GIL is held; on success the
        // view is initialised and owned by us until PyBuffer_Release.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) };
        if rc != 0 {
            return Err(PyErr::take(obj.py())
                .unwrap_or_else(|| PyBufferError::new_err("object does not export a buffer")));
        }
        Ok(RawBuffer {
            view: unsafe { view.assume_init() },
        })
    }

    /// A writable view (bytearray, writable memoryview, numpy array).
    fn get_writable(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::get_with(obj, ffi::PyBUF_C_CONTIGUOUS | ffi::PyBUF_WRITABLE)
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn overlaps(&self, other: &RawBuffer) -> bool {
        let (a, b) = (
            self.as_slice().as_ptr_range(),
            other.as_slice().as_ptr_range(),
        );
        !self.as_slice().is_empty()
            && !other.as_slice().is_empty()
            && a.start < b.end
            && b.start < a.end
    }

    /// SAFETY: the view must be writable (get_writable) and no other slice
    /// of its memory may be alive while this one is.
    unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &mut [];
        }
        std::slice::from_raw_parts_mut(self.view.buf as *mut u8, self.view.len as usize)
    }

    fn as_slice(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter keeps `len` contiguous bytes alive while the
        // view is held (PyBUF_C_CONTIGUOUS was requested).
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for RawBuffer {
    fn drop(&mut self) {
        // Buffers are dropped with the GIL held (they never leave the call).
        unsafe { ffi::PyBuffer_Release(&mut self.view) }
    }
}

// SAFETY: the view is only read while the exporter is kept alive by it; the
// bytes may be read from a thread that released the GIL, as numpy does.
unsafe impl Send for RawBuffer {}
unsafe impl Sync for RawBuffer {}

#[pyclass(module = "iommud._core", frozen, weakref)]
pub struct IoPagetable {
    pub(super) inner: RwLock<Core>,
    /// Write locks taken so far (`write`, `write_py`, the only ways to a
    /// change): equal generations mean equal states, so a snapshot may
    /// reuse the state it wrote before (snapshot.py).
    pub(super) generation: AtomicU64,
    /// The figures as of the last write's end (and of the last read that
    /// got them): what num_areas, mapped_bytes and memory_bytes answer
    /// while another thread holds the write lock, so that a reader on the
    /// event loop (GetInfo, a metrics scrape, the admin view walking every
    /// session) never waits out a long copy or fill. Such a reader sees
    /// the table as it was before that operation: whole, not half.
    seen_areas: AtomicUsize,
    seen_mapped: AtomicU64,
    seen_memory: AtomicUsize,
}

/// A table's write guard: when released it records the figures the
/// lock-free getters answer during the next write (`IoPagetable::seen_*`).
pub(super) struct TableWrite<'a> {
    guard: RwLockWriteGuard<'a, Core>,
    table: &'a IoPagetable,
}

impl Deref for TableWrite<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.guard
    }
}

impl DerefMut for TableWrite<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.guard
    }
}

impl Drop for TableWrite<'_> {
    fn drop(&mut self) {
        // Still under the lock. memory_bytes is not recorded here: it reads
        // the domains' locks, which a caller may hold past this guard.
        self.table
            .seen_areas
            .store(self.guard.num_areas(), Ordering::Relaxed);
        self.table
            .seen_mapped
            .store(self.guard.mapped_bytes(), Ordering::Relaxed);
    }
}

impl IoPagetable {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Core> {
        // State changes only after every check passed, so a poisoned lock
        // (a core bug) still guards a consistent table.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> TableWrite<'_> {
        let guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::Relaxed);
        TableWrite { guard, table: self }
    }

    /// The read lock if no writer holds it (a poisoned lock still guards a
    /// consistent table, see `read`); None while a write is under way.
    fn try_read(&self) -> Option<RwLockReadGuard<'_, Core>> {
        match self.inner.try_read() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The read lock from a thread holding the GIL (python/mod.rs).
    pub(super) fn read_py(&self, py: Python<'_>) -> RwLockReadGuard<'_, Core> {
        read_gil(py, &self.inner)
    }

    /// The write lock from a thread holding the GIL (python/mod.rs).
    pub(super) fn write_py(&self, py: Python<'_>) -> TableWrite<'_> {
        let guard = write_gil(py, &self.inner);
        self.generation.fetch_add(1, Ordering::Relaxed);
        TableWrite { guard, table: self }
    }

    pub(super) fn from_core(core: Core) -> Self {
        IoPagetable {
            seen_areas: AtomicUsize::new(core.num_areas()),
            seen_mapped: AtomicU64::new(core.mapped_bytes()),
            seen_memory: AtomicUsize::new(core.memory_bytes()),
            inner: RwLock::new(core),
            generation: AtomicU64::new(0),
        }
    }
}

fn packed_u64s<'py>(py: Python<'py>, words: &[u64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

fn unpack_u64(raw: &[u8], out: &mut Vec<u64>) {
    out.extend(
        raw.chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))),
    );
}

/// A buffer of native-endian u64 values, copied out.
fn u64s(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u64>> {
    let buf = RawBuffer::get(obj)?;
    let mut out = Vec::with_capacity(whole_u64s(buf.as_slice(), what)?);
    unpack_u64(buf.as_slice(), &mut out);
    Ok(out)
}

/// How many u64 values `raw` holds; ValueError unless a whole number.
fn whole_u64s(raw: &[u8], what: &str) -> PyResult<usize> {
    if !raw.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(format!(
            "The {what} buffer holds {:#x} bytes, not a whole number of u64 values.",
            raw.len()
        )));
    }
    Ok(raw.len() / 8)
}

fn thread_count(threads: Option<usize>) -> PyResult<usize> {
    match threads {
        None => Ok(std::thread::available_parallelism().map_or(1, |t| t.get())),
        Some(0) => Err(PyValueError::new_err("threads must be at least 1.")),
        Some(t) => Ok(t),
    }
}

impl IoPagetable {
    /// Translate the u64s of `raw` into `pa_out` (8 bytes each) and
    /// `prot_out`, reading and writing in place when the buffers are
    /// u64-aligned (bytes objects and numpy arrays are) and through copies
    /// when not. Large batches release the GIL.
    fn translate_raw(
        &self,
        py: Python<'_>,
        raw: &[u8],
        pa_out: &mut [u8],
        prot_out: &mut [u8],
        threads: usize,
    ) -> usize {
        let n = raw.len() / 8;
        let work = |table: &Core, pa_out: &mut [u8], prot_out: &mut [u8]| -> usize {
            // SAFETY: every bit pattern is a valid u64.
            let (head, aligned, tail) = unsafe { raw.align_to::<u64>() };
            let copied: Vec<u64>;
            let addrs: &[u64] = if head.is_empty() && tail.is_empty() {
                aligned
            } else {
                let mut v = Vec::with_capacity(n);
                unpack_u64(raw, &mut v);
                copied = v;
                &copied
            };
            // SAFETY: as above.
            let (head, out64, tail) = unsafe { pa_out.align_to_mut::<u64>() };
            if head.is_empty() && tail.is_empty() {
                table.translate_batch_on(addrs, out64, prot_out, threads)
            } else {
                let mut pas = vec![0u64; n];
                let mapped = table.translate_batch_on(addrs, &mut pas, prot_out, threads);
                for (dst, pa) in pa_out.chunks_exact_mut(8).zip(pas) {
                    dst.copy_from_slice(&pa.to_ne_bytes());
                }
                mapped
            }
        };
        if n >= BATCH_RELEASE_GIL {
            py.detach(|| work(&self.read(), pa_out, prot_out))
        } else {
            work(&self.read_py(py), pa_out, prot_out)
        }
    }
}

#[pymethods]
impl IoPagetable {
    #[new]
    fn new() -> Self {
        IoPagetable::from_core(Core::new())
    }

    /// Changes so far: equal generations mean equal states (snapshot.py
    /// reuses an unchanged table's state).
    #[getter]
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// IOMMU_IOAS_MAP after the IOAS lookup; returns the IOVA.
    fn map(
        &self,
        py: Python<'_>,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> PyResult<u64> {
        self.write_py(py)
            .map(flags, user_va, length, iova)
            .map_err(to_py)
    }

    /// iopt_map_user_pages (compat MAP_DMA): IOAS_MAP without the ioctl's
    /// READABLE/WRITEABLE requirement; such an area fails any domain fill
    /// with EINVAL.
    fn map_user_pages(
        &self,
        py: Python<'_>,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> PyResult<u64> {
        self.write_py(py)
            .map_user_pages(flags, user_va, length, iova)
            .map_err(to_py)
    }

    /// IOMMU_IOAS_UNMAP after the IOAS lookup; returns the bytes unmapped.
    /// Releases the GIL: a range may hold any number of areas.
    fn unmap(&self, py: Python<'_>, iova: u64, length: u64) -> PyResult<u64> {
        py.detach(|| self.write().unmap(iova, length))
            .map_err(to_py)
    }

    /// Drop every area; returns the bytes they covered. Releases the GIL.
    fn unmap_all(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.write().unmap_all())
    }

    /// (pa, prot) of one IOVA; OSError(ENOENT) when unmapped.
    fn translate(&self, py: Python<'_>, iova: u64) -> PyResult<(u64, u32)> {
        self.read_py(py).translate(iova).ok_or_else(|| {
            to_py(CoreError::new(
                Errno::ENOENT,
                format!("No area maps IOVA {iova:#x}."),
            ))
        })
    }

    /// Translate a buffer of native-endian u64 IOVAs. Returns (pas, prots):
    /// packed native-endian u64 PAs and one prot byte per IOVA, both 0 where
    /// unmapped. Large batches release the GIL and use up to `threads`
    /// threads (None: every core).
    #[pyo3(signature = (iovas, *, threads=None))]
    fn translate_batch<'py>(
        &self,
        py: Python<'py>,
        iovas: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let threads = thread_count(threads)?;
        let buf = RawBuffer::get(iovas)?;
        let n = whole_u64s(buf.as_slice(), "IOVA")?;
        // A bytes object is immutable once Python can see it, so both results
        // are written inside PyBytes::new_with, the one place that hands out
        // a unique, initialised (zero-filled) &mut [u8] over a bytes object
        // that no other code can reach yet. The zero fill costs a memset, but
        // writing through a slice of uninitialised memory, or deriving &mut
        // from a shared Bound, would be undefined behaviour.
        let mut prots = None;
        let pas = PyBytes::new_with(py, n * 8, |pa_out| {
            let made = PyBytes::new_with(py, n, |prot_out| {
                self.translate_raw(py, buf.as_slice(), pa_out, prot_out, threads);
                Ok(())
            })?;
            prots = Some(made);
            Ok(())
        })?;
        Ok((pas, prots.expect("new_with ran its initialiser")))
    }

    /// Translate into caller buffers: `pas` (writable, 8 bytes per IOVA) gets
    /// the native-endian u64 PAs and `prots` (writable, 1 byte per IOVA) the
    /// prot bytes, both 0 where unmapped. Returns how many IOVAs were mapped.
    /// Reusing the buffers saves the allocation and page faults of new
    /// result objects; `pas` may be the `iovas` buffer itself.
    #[pyo3(signature = (iovas, pas, prots, *, threads=None))]
    fn translate_into(
        &self,
        py: Python<'_>,
        iovas: &Bound<'_, PyAny>,
        pas: &Bound<'_, PyAny>,
        prots: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<usize> {
        let threads = thread_count(threads)?;
        let inp = RawBuffer::get(iovas)?;
        let n = whole_u64s(inp.as_slice(), "IOVA")?;
        let mut pa_buf = RawBuffer::get_writable(pas)?;
        let mut prot_buf = RawBuffer::get_writable(prots)?;
        if pa_buf.len() != n * 8 || prot_buf.len() != n {
            return Err(PyValueError::new_err(format!(
                "translate_into needs {:#x} bytes for pas and {:#x} for prots for {:#x} IOVAs, \
                 not {:#x} and {:#x}.",
                n * 8,
                n,
                n,
                pa_buf.len(),
                prot_buf.len()
            )));
        }
        if prot_buf.overlaps(&inp) || prot_buf.overlaps(&pa_buf) {
            return Err(PyValueError::new_err(
                "The prots buffer shares memory with the iovas or pas buffer.",
            ));
        }
        // Translating in place (pas is iovas) is allowed: read from a copy,
        // since the output would otherwise alias the input.
        let copy: Vec<u8>;
        let input = if pa_buf.overlaps(&inp) {
            copy = inp.as_slice().to_vec();
            &copy[..]
        } else {
            inp.as_slice()
        };
        // SAFETY: the views are writable, held until the end of this call,
        // and do not overlap each other or `input`.
        let (pa_out, prot_out) = unsafe { (pa_buf.as_mut_slice(), prot_buf.as_mut_slice()) };
        Ok(self.translate_raw(py, input, pa_out, prot_out, threads))
    }

    /// Many IOAS_MAPs, all or nothing: buffers of native-endian u64
    /// user_vas, lengths and iovas (iovas used with FIXED_IOVA only), one
    /// entry each per area. Returns the new areas' IOVAs packed as u64. On a
    /// failure nothing stays mapped and the OSError names the request.
    fn map_batch<'py>(
        &self,
        py: Python<'py>,
        flags: u32,
        user_vas: &Bound<'py, PyAny>,
        lengths: &Bound<'py, PyAny>,
        iovas: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (vas, lens, ios) = (
            u64s(user_vas, "user_vas")?,
            u64s(lengths, "lengths")?,
            u64s(iovas, "iovas")?,
        );
        if vas.len() != lens.len() || vas.len() != ios.len() {
            return Err(PyValueError::new_err(format!(
                "map_batch takes equal counts of user_vas, lengths and iovas, not {:#x}, {:#x} \
                 and {:#x}.",
                vas.len(),
                lens.len(),
                ios.len()
            )));
        }
        let reqs: Vec<(u64, u64, u64)> = vas
            .iter()
            .zip(&lens)
            .zip(&ios)
            .map(|((&v, &l), &i)| (v, l, i))
            .collect();
        let out = py
            .detach(|| self.write().map_batch(flags, &reqs))
            .map_err(to_py)?;
        Ok(packed_u64s(py, &out))
    }

    /// Many IOAS_UNMAPs of whole areas, in order; returns the bytes unmapped.
    /// Not atomic, as the kernel's unmap: the OSError names the failing
    /// request and the ones before it stay done.
    fn unmap_batch(
        &self,
        py: Python<'_>,
        iovas: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let (ios, lens) = (u64s(iovas, "iovas")?, u64s(lengths, "lengths")?);
        if ios.len() != lens.len() {
            return Err(PyValueError::new_err(format!(
                "unmap_batch takes equal counts of iovas and lengths, not {:#x} and {:#x}.",
                ios.len(),
                lens.len()
            )));
        }
        let reqs: Vec<(u64, u64)> = ios.into_iter().zip(lens).collect();
        py.detach(|| self.write().unmap_batch(&reqs)).map_err(to_py)
    }

    /// IOMMU_IOAS_IOVA_RANGES: [(start, last)] usable ranges, last inclusive.
    fn iova_ranges(&self, py: Python<'_>) -> Vec<(u64, u64)> {
        self.read_py(py).iova_ranges()
    }

    #[getter]
    fn iova_alignment(&self, py: Python<'_>) -> u64 {
        self.read_py(py).iova_alignment()
    }

    /// Raise or lower the IOVA alignment; EADDRINUSE if areas conflict.
    /// Releases the GIL: it checks every area.
    fn set_iova_alignment(&self, py: Python<'_>, align: u64) -> PyResult<()> {
        py.detach(|| self.write().set_iova_alignment(align))
            .map_err(to_py)
    }

    /// Most areas the table may hold (None: unlimited); maps and copies
    /// past it fail with ENOSPC and change nothing.
    #[pyo3(signature = (max))]
    fn set_max_areas(&self, py: Python<'_>, max: Option<usize>) {
        self.write_py(py).set_max_areas(max);
    }

    /// Reserve [start, last] for `owner`; EADDRINUSE on conflict.
    fn add_reserved(&self, py: Python<'_>, start: u64, last: u64, owner: u64) -> PyResult<()> {
        self.write_py(py)
            .add_reserved(start, last, owner)
            .map_err(to_py)
    }

    /// Remove every range reserved by `owner`.
    fn remove_reserved(&self, py: Python<'_>, owner: u64) {
        self.write_py(py).remove_reserved(owner)
    }

    /// [(start, last, owner)] reserved ranges.
    fn reserved(&self, py: Python<'_>) -> Vec<(u64, u64, u64)> {
        self.read_py(py)
            .reserved()
            .iter()
            .map(|r| (r.start, r.last, r.owner))
            .collect()
    }

    /// IOMMU_IOAS_ALLOW_IOVAS: replace the allowed list atomically.
    /// Releases the GIL (the list is sorted and checked).
    fn allow_iovas(&self, py: Python<'_>, ranges: Vec<(u64, u64)>) -> PyResult<()> {
        py.detach(|| self.write().allow_iovas(&ranges))
            .map_err(to_py)
    }

    fn allowed_iovas(&self, py: Python<'_>) -> Vec<(u64, u64)> {
        self.read_py(py).allowed().to_vec()
    }

    /// [(iova, length, user_va, prot)] in IOVA order, collected with the
    /// GIL released.
    fn areas(&self, py: Python<'_>) -> Vec<(u64, u64, u64, u32)> {
        py.detach(|| {
            self.read()
                .areas()
                .map(|a| (a.iova, a.length(), a.user_va, a.prot))
                .collect()
        })
    }

    /// The area containing `iova`, else the first one above it, as
    /// (iova, length, user_va, prot); None when there is none.
    fn area_from(&self, py: Python<'_>, iova: u64) -> Option<(u64, u64, u64, u32)> {
        self.read_py(py)
            .area_from(iova)
            .map(|a| (a.iova, a.length(), a.user_va, a.prot))
    }

    #[getter]
    fn num_areas(&self) -> usize {
        match self.try_read() {
            Some(t) => t.num_areas(),
            None => self.seen_areas.load(Ordering::Relaxed),
        }
    }

    /// Heap bytes held by the area map (the memory benchmark reads this).
    #[getter]
    fn area_heap_bytes(&self, py: Python<'_>) -> usize {
        self.read_py(py).area_heap_bytes()
    }

    /// Heap bytes of the whole table, for a memory budget: areas, dirty
    /// state, reserved and allowed lists, and the attached domains' entries
    /// and dirty ranges (each domain's memory_bytes). While another thread
    /// writes the table: as of the last time these bytes were read (every
    /// charge of the session reads them).
    #[getter]
    fn memory_bytes(&self) -> usize {
        match self.try_read() {
            Some(t) => {
                let bytes = t.memory_bytes();
                self.seen_memory.store(bytes, Ordering::Relaxed);
                bytes
            }
            None => self.seen_memory.load(Ordering::Relaxed),
        }
    }

    #[getter]
    fn mapped_bytes(&self) -> u64 {
        match self.try_read() {
            Some(t) => t.mapped_bytes(),
            None => self.seen_mapped.load(Ordering::Relaxed),
        }
    }

    /// Turn dirty tracking on (from a clean state) or off (state dropped).
    /// Releases the GIL: dropping the state frees per-area bitmaps.
    fn set_dirty_tracking(&self, py: Python<'_>, enable: bool) {
        py.detach(|| self.write().set_dirty_tracking(enable))
    }

    #[getter]
    fn dirty_tracking(&self, py: Python<'_>) -> bool {
        self.read_py(py).dirty_tracking()
    }

    /// A device DMA access; returns the PA of the first byte. ENOENT when
    /// unmapped, EPERM when the mapping forbids it. With `domain` the access
    /// goes through that attached domain and a write dirties its leaves
    /// while it tracks; the table's own dirty pages are marked either way.
    /// Accesses of DMA_RELEASE_GIL bytes or more release the GIL.
    #[pyo3(signature = (iova, length, write, domain=None))]
    fn dma(
        &self,
        py: Python<'_>,
        iova: u64,
        length: u64,
        write: bool,
        domain: Option<&Domain>,
    ) -> PyResult<u64> {
        let access = |t: &mut Core| match domain {
            Some(d) => t.dma_domain(&d.inner, iova, length, write),
            None => t.dma(iova, length, write),
        };
        if length >= DMA_RELEASE_GIL {
            py.detach(|| access(&mut self.write()))
        } else {
            access(&mut self.write_py(py))
        }
        .map_err(to_py)
    }

    /// The dirty bitmap of [iova, iova + length) at `page_size` bits, as
    /// packed native-endian u64 words; `clear` makes the reported pages clean.
    /// With `domain`, IOMMU_HWPT_GET_DIRTY_BITMAP of that attached domain
    /// (iopt_read_and_clear_dirty_data: whole leaves, tracking not checked).
    /// Releases the GIL.
    #[pyo3(signature = (iova, length, page_size, clear, domain=None))]
    fn read_dirty_bitmap<'py>(
        &self,
        py: Python<'py>,
        iova: u64,
        length: u64,
        page_size: u64,
        clear: bool,
        domain: Option<&Domain>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let words = py
            .detach(|| match domain {
                Some(d) => self
                    .read()
                    .read_domain_dirty_bitmap(&d.inner, iova, length, page_size, clear),
                None => self
                    .write()
                    .read_dirty_bitmap(iova, length, page_size, clear),
            })
            .map_err(to_py)?;
        Ok(packed_u64s(py, &words))
    }

    /// iopt_table_add_domain's fill step: fill every area into `domain`,
    /// all or nothing; later maps and copies fill it too. EINVAL for an area
    /// neither readable nor writeable, EEXIST if attached here already,
    /// EBUSY if attached to another table. Releases the GIL.
    fn add_domain(&self, py: Python<'_>, domain: &Domain) -> PyResult<()> {
        py.detach(|| self.write().add_domain(&domain.inner))
            .map_err(to_py)
    }

    /// iopt_table_remove_domain: empty `domain` and let it go; ENOENT if
    /// this table does not hold it. Releases the GIL.
    fn remove_domain(&self, py: Python<'_>, domain: &Domain) -> PyResult<()> {
        py.detach(|| self.write().remove_domain(&domain.inner))
            .map_err(to_py)
    }

    #[getter]
    fn num_domains(&self, py: Python<'_>) -> usize {
        self.read_py(py).num_domains()
    }

    /// Whether fills may use large leaves (IOMMU_OPTION HUGE_PAGES).
    #[getter]
    fn large_pages(&self, py: Python<'_>) -> bool {
        self.read_py(py).large_pages()
    }

    /// Allow or forbid large leaves in fills made from now on (existing
    /// entries keep theirs); the kernel's conditions are the caller's.
    fn set_large_pages(&self, py: Python<'_>, enabled: bool) {
        self.write_py(py).set_large_pages(enabled)
    }

    /// iopt_cut_iova: split the area holding each IOVA p into [start, p]
    /// and [p + 1, last]; not atomic. EINVAL for a misaligned p + 1 or an
    /// area filled into a domain while large pages are enabled. Releases
    /// the GIL.
    fn cut(&self, py: Python<'_>, iovas: Vec<u64>) -> PyResult<()> {
        py.detach(|| self.write().cut(&iovas)).map_err(to_py)
    }
}

/// IOMMU_IOAS_MAP steps 1-3 (before the IOAS lookup).
#[pyfunction]
pub fn check_map_args(flags: u32, iova: u64, length: u64) -> PyResult<()> {
    crate::io_pagetable::check_map_args(flags, iova, length).map_err(to_py)
}

/// IOMMU_IOAS_COPY steps 1-3 (before the IOAS lookups).
#[pyfunction]
pub fn check_copy_args(flags: u32, src_iova: u64, length: u64, dst_iova: u64) -> PyResult<()> {
    crate::copy::check_copy_args(flags, src_iova, length, dst_iova).map_err(to_py)
}

/// IOMMU_IOAS_COPY after the lookups; returns the destination IOVA.
/// Releases the GIL: the source range may hold any number of areas.
#[pyfunction]
pub fn copy(
    py: Python<'_>,
    dst: &IoPagetable,
    src: &IoPagetable,
    flags: u32,
    src_iova: u64,
    length: u64,
    dst_iova: u64,
) -> PyResult<u64> {
    py.detach(|| {
        if std::ptr::eq(dst, src) {
            let mut t = dst.write();
            return crate::copy::copy_within(&mut t, flags, src_iova, length, dst_iova);
        }
        // Lock order: lower address first.
        let dst_first = (dst as *const IoPagetable as usize) < (src as *const IoPagetable as usize);
        let (mut d, s);
        if dst_first {
            d = dst.write();
            s = src.read();
        } else {
            s = src.read();
            d = dst.write();
        }
        crate::copy::copy(&mut d, &s, flags, src_iova, length, dst_iova)
    })
    .map_err(to_py)
}
