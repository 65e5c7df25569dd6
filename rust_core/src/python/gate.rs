//! `iommud._core.PeerGate`: the Python face of `crate::peer_gate`.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::peer_gate::{self, GateConfig};

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
    /// connection to `upstream` from the abstract address `<tag>/<id>`
    /// (128 random bits per connection). At most `max_connections`
    /// connections (None: what RLIMIT_NOFILE allows, 3 fds each after 256)
    /// and `max_per_uid` per peer uid (None: max_connections) are relayed
    /// at once; more are accepted and closed. `idle_timeout` seconds
    /// without a byte either way close a connection (0: never).
    #[new]
    #[pyo3(signature = (listen_fd, upstream, tag, *, max_connections=None, max_per_uid=None, idle_timeout=0.0))]
    fn new(
        listen_fd: RawFd,
        upstream: PathBuf,
        tag: String,
        max_connections: Option<usize>,
        max_per_uid: Option<usize>,
        idle_timeout: f64,
    ) -> PyResult<Self> {
        if listen_fd < 0 {
            return Err(PyOSError::new_err((
                libc::EBADF,
                "listen_fd must be an open socket",
            )));
        }
        if max_connections == Some(0) || max_per_uid == Some(0) {
            return Err(PyValueError::new_err(
                "max_connections and max_per_uid must be at least 1 (None: the default)",
            ));
        }
        let idle = if idle_timeout == 0.0 {
            None
        } else if idle_timeout.is_finite() && idle_timeout > 0.0 && idle_timeout < 1e9 {
            Some(Duration::from_secs_f64(idle_timeout))
        } else {
            return Err(PyValueError::new_err(format!(
                "idle_timeout must be 0 (never) or a positive number of seconds, not {idle_timeout}"
            )));
        };
        let mut config = GateConfig::default();
        if let Some(max) = max_connections {
            config.max_connections = max;
        }
        config.max_per_uid = max_per_uid.unwrap_or(config.max_connections);
        config.idle_timeout = idle;
        // SAFETY: the caller hands the fd over (socket.detach()); we own it from here.
        let listener = UnixListener::from(unsafe { OwnedFd::from_raw_fd(listen_fd) });
        let gate =
            peer_gate::PeerGate::start_with(listener, upstream, tag, config).map_err(os_err)?;
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

    /// (accepted, failed to relay, live connections, refused over a limit,
    /// closed idle).
    fn stats(&self) -> (u64, u64, usize, u64, u64) {
        let s = self.inner.lock().unwrap().stats();
        (s.accepted, s.failed, s.live, s.refused, s.idle_closed)
    }

    /// Stop accepting and close every connection. Idempotent.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.lock().unwrap().stop());
    }
}
