//! The peer gate: the daemon's public UNIX socket, where each connection's
//! credentials (SO_PEERCRED, SO_PEERGROUPS) are read at accept and carried to
//! the gRPC server, which cannot see the socket itself.
//!
//! gRPC's server API exposes no file descriptor, only the peer's address. So
//! the gate accepts on the public socket, records the peer's credentials
//! under a connection number, and relays the byte stream to the gRPC server's
//! private socket over a connection whose *client* address is the abstract
//! name `<tag>/<n>`. The server reads that name back as the call's peer
//! (`unix-abstract:<tag>/<n>`) and asks the gate for connection n's
//! credentials.
//!
//! Invariants:
//! - The credentials are the kernel's, read from the accepted socket; the
//!   peer cannot choose them. The abstract name could be forged only by a
//!   process able to connect to the private socket, which lives in a 0700
//!   directory of the daemon's user; and the tag carries a per-daemon random
//!   nonce chosen by the caller.
//! - A connection's entry lives exactly as long as its relay: it is inserted
//!   before the first byte is relayed and removed after both directions end,
//!   so every call on the connection finds it.
//! - The gate decides nothing: policy (allowed uids and gids, admin) lives
//!   with the daemon's other checks, which answer with errno and ErrorInfo.
//! - Relay threads never touch Python; stopping shuts every socket down,
//!   which wakes every blocked accept, read and write.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::mem;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// What the kernel says about the process at the other end of a socket,
/// as of its connect().
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (SO_PEERGROUPS); empty where the kernel lacks it.
    pub groups: Vec<u32>,
}

/// SO_PEERCRED and SO_PEERGROUPS of a connected UNIX socket.
pub fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let mut cred: libc::ucred = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(fd),
    })
}

fn peer_groups(fd: RawFd) -> Vec<u32> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: groups has room for len bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / mem::size_of::<u32>();
        if rc == 0 {
            groups.truncate(n);
            return groups;
        }
        // ERANGE tells the size needed; anything else (an old kernel) means none known.
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            return Vec::new();
        }
        groups.resize(n, 0);
    }
}

/// A UNIX stream socket bound to the abstract `name`, connected to `path`.
fn connect_from_abstract(name: &[u8], path: &Path) -> io::Result<UnixStream> {
    fn sockaddr(bytes: &[u8], abstract_: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let start = usize::from(abstract_);
        if start + bytes.len() >= addr.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "socket address too long",
            ));
        }
        for (i, b) in bytes.iter().enumerate() {
            addr.sun_path[start + i] = *b as libc::c_char;
        }
        let base = mem::size_of::<libc::sa_family_t>();
        // Abstract names are counted exactly; paths are NUL-terminated.
        let len = base + start + bytes.len() + usize::from(!abstract_);
        Ok((addr, len as libc::socklen_t))
    }
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain socket creation; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (local, local_len) = sockaddr(name, true)?;
    let (remote, remote_len) = sockaddr(path.as_os_str().as_bytes(), false)?;
    // SAFETY: the addresses are initialised sockaddr_un of the lengths given.
    unsafe {
        if libc::bind(fd, (&local as *const libc::sockaddr_un).cast(), local_len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_un).cast(), remote_len) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(UnixStream::from(owned))
}

struct Conn {
    cred: PeerCred,
    // Clones kept to shut the relay down from stop().
    public: UnixStream,
    private: UnixStream,
}

#[derive(Default)]
struct Shared {
    conns: Mutex<HashMap<u64, Conn>>,
    stopping: AtomicBool,
    accepted: AtomicU64,
    failed: AtomicU64,
}

/// A running gate; see the module comment.
pub struct PeerGate {
    shared: Arc<Shared>,
    listener_fd: RawFd,
    acceptor: Option<JoinHandle<()>>,
    tag: String,
}

impl PeerGate {
    /// Serve `listener`, relaying each connection to the socket at `upstream`
    /// from the abstract address `<tag>/<n>`.
    pub fn start(listener: UnixListener, upstream: PathBuf, tag: String) -> io::Result<PeerGate> {
        if tag.is_empty() || tag.len() + 21 >= 107 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tag must be 1..85 bytes",
            ));
        }
        let shared = Arc::new(Shared::default());
        let listener_fd = listener.as_raw_fd();
        let (s, t) = (Arc::clone(&shared), tag.clone());
        let acceptor = thread::Builder::new()
            .name("iommud-gate".into())
            .spawn(move || accept_loop(listener, upstream, t, s))?;
        Ok(PeerGate {
            shared,
            listener_fd,
            acceptor: Some(acceptor),
            tag,
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The credentials of live connection `n`.
    pub fn peer(&self, n: u64) -> Option<PeerCred> {
        self.shared
            .conns
            .lock()
            .unwrap()
            .get(&n)
            .map(|c| c.cred.clone())
    }

    /// Connection number of a gRPC peer string `unix-abstract:<tag>/<n>`.
    pub fn connection_of(&self, peer: &str) -> Option<u64> {
        let rest = peer
            .strip_prefix("unix-abstract:")?
            .strip_prefix(self.tag.as_str())?;
        rest.strip_prefix('/')?.parse().ok()
    }

    /// (connections accepted, connections that could not be relayed, live connections).
    pub fn stats(&self) -> (u64, u64, usize) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
            self.shared.conns.lock().unwrap().len(),
        )
    }

    /// Stop accepting and end every relay. Idempotent.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the blocked accept(); the acceptor owns and closes the listener.
        // SAFETY: the fd stays open until the acceptor returns, joined below.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
        for conn in self.shared.conns.lock().unwrap().values() {
            let _ = conn.public.shutdown(Shutdown::Both);
            let _ = conn.private.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for PeerGate {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: UnixListener, upstream: PathBuf, tag: String, shared: Arc<Shared>) {
    let mut next: u64 = 0;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(public) = incoming else {
            continue; // ECONNABORTED and friends concern one client only
        };
        next += 1;
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(_e) = start_relay(public, next, &upstream, &tag, &shared) {
            // The client sees its connection closed, as on any server failure.
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn start_relay(
    public: UnixStream,
    n: u64,
    upstream: &Path,
    tag: &str,
    shared: &Arc<Shared>,
) -> io::Result<()> {
    let cred = peer_cred(public.as_raw_fd())?;
    let private = connect_from_abstract(format!("{tag}/{n}").as_bytes(), upstream)?;
    let conn = Conn {
        cred,
        public: public.try_clone()?,
        private: private.try_clone()?,
    };
    shared.conns.lock().unwrap().insert(n, conn);
    let done = Arc::new(AtomicU64::new(0));
    let spawn = |from: UnixStream, to: UnixStream, name: &str| {
        let (shared, done) = (Arc::clone(shared), Arc::clone(&done));
        thread::Builder::new().name(name.into()).spawn(move || {
            relay(from, to);
            // The second direction to finish retires the connection.
            if done.fetch_add(1, Ordering::SeqCst) == 1 {
                shared.conns.lock().unwrap().remove(&n);
            }
        })
    };
    let result = spawn(public.try_clone()?, private.try_clone()?, "iommud-gate-in")
        .and_then(|_| spawn(private, public, "iommud-gate-out"));
    if result.is_err() {
        if let Some(conn) = shared.conns.lock().unwrap().remove(&n) {
            let _ = conn.public.shutdown(Shutdown::Both);
            let _ = conn.private.shutdown(Shutdown::Both);
        }
    }
    result.map(|_| ())
}

/// Copy until EOF or error, then pass the end on as a half-close.
fn relay(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
