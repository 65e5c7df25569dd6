//! `iommud._core.PeerGate`: the Python face of `crate::peer_gate`.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::peer_gate;

#[pyclass(module = "iommud._core", frozen)]
pub struct PeerGate {
    inner: Mutex<peer_gate::PeerGate>,
}

fn os_err(e: std::io::Error) -> PyErr {
    PyOSError::new_err((e.raw_os_error().unwrap_or(libc::EINVAL), e.to_string()))
}

#[pymethods]
impl PeerGate {
    /// Take ownership of the listening socket `listen_fd` and relay each
    /// connection to `upstream` from the abstract address `<tag>/<n>`.
    #[new]
    fn new(listen_fd: RawFd, upstream: PathBuf, tag: String) -> PyResult<Self> {
        if listen_fd < 0 {
            return Err(PyOSError::new_err((
                libc::EBADF,
                "listen_fd must be an open socket",
            )));
        }
        // SAFETY: the caller hands the fd over (socket.detach()); we own it from here.
        let listener = UnixListener::from(unsafe { OwnedFd::from_raw_fd(listen_fd) });
        let gate = peer_gate::PeerGate::start(listener, upstream, tag).map_err(os_err)?;
        Ok(PeerGate {
            inner: Mutex::new(gate),
        })
    }

    /// (pid, uid, gid, groups) of the connection behind gRPC peer string
    /// `peer`, or None when the peer did not come through this gate.
    fn peer(&self, peer: &str) -> Option<(i32, u32, u32, Vec<u32>)> {
        let gate = self.inner.lock().unwrap();
        let cred = gate.peer(gate.connection_of(peer)?)?;
        Some((cred.pid, cred.uid, cred.gid, cred.groups))
    }

    /// (connections accepted, connections that failed to relay, live connections).
    fn stats(&self) -> (u64, u64, usize) {
        self.inner.lock().unwrap().stats()
    }

    /// Stop accepting and end every relay. Idempotent.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.lock().unwrap().stop());
    }
}
