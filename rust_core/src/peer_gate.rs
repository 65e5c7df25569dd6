//! The peer gate: the daemon's public UNIX socket, where each connection's
//! credentials (SO_PEERCRED, SO_PEERGROUPS) are read at accept and carried to
//! the gRPC server, which cannot see the socket itself.
//!
//! gRPC's server API exposes no file descriptor, only the peer's address. So
//! the gate accepts on the public socket, records the peer's credentials
//! under a connection id, and relays the byte stream to the gRPC server's
//! private socket over a connection whose *client* address is the abstract
//! name `<tag>/<id>`. The server reads that name back as the call's peer
//! (`unix-abstract:<tag>/<id>`) and asks the gate for the credentials.
//!
//! Naming. `<id>` is 128 random bits from getrandom(2), as 32 hex digits,
//! fresh for every connection and never reused. Nobody can predict it, so
//! nobody can bind it first: a name squatted by another local user (they
//! are all visible in /proc/net/unix, and any user may bind abstract names)
//! is one the gate will not draw again. The earlier `<tag>/<n>` names were
//! sequential: a user not even on the allow list bound the next twenty and
//! twenty clients in a row were refused. Linux autobind (bind to an empty
//! name, the kernel picks one) cannot be squatted either, but its names
//! come from one 2^20 space per network namespace that any local user can
//! fill with a million sockets, and then every autobind fails (ENOSPC);
//! 128 random bits cannot be exhausted, and a collision (EADDRINUSE) just
//! draws again. Seeing a live name gains nothing: only a process that can
//! reach the private socket, in a 0700 directory of the daemon's user,
//! could connect from it, and the name dies with its connection.
//!
//! Threading. One thread runs an epoll loop that accepts and relays every
//! connection; its cost does not grow with the number of connections (the
//! earlier design spent two threads and six fds per connection). Sockets
//! are non-blocking and edge-triggered: on any event for a connection both
//! directions are pumped until the kernel says EAGAIN or the buffer is
//! full, at most `PUMP_BUDGET` reads per turn so that one busy connection
//! cannot starve the others (a connection cut short is pumped again next
//! turn).
//!
//! Back-pressure. Each direction has a buffer of at most `buffer_cap` bytes
//! (256 KiB by default), held only while the destination is not reading
//! (empty buffers are freed, so an idle connection holds none). A full
//! buffer stops reads from the source until the destination drains it, so
//! a client that stops reading costs the gate at most `buffer_cap` per
//! direction and the kernel's own socket buffers do the rest.
//!
//! Closing. A half-close is relayed as one (EOF from a side becomes
//! shutdown(SHUT_WR) of the other once its buffer is flushed). The
//! connection is closed, both sockets, when both directions have ended;
//! when either side is gone for good (EPOLLHUP) and what it sent has been
//! delivered; when a write fails (the destination is gone); or when it was
//! idle (no byte either way) for `idle_timeout`.
//!
//! Limits. At most `max_connections` relayed connections, and at most
//! `max_per_uid` per peer uid. A connection over a limit is accepted and
//! closed at once, and counted (`refused`): the client sees EOF, not a
//! hang, and the gate never spins on a listener it will not serve. When
//! the process runs out of file descriptors (EMFILE, ENFILE) the gate
//! stops polling the listener until a connection closes or `FD_PAUSE`
//! passes, instead of waking up on it in a loop; the pending clients wait
//! in the listen backlog. The private side's socket is made before the
//! public one is accepted, so a lack of descriptors never costs a client
//! its connection.
//!
//! Invariants:
//! - The credentials are the kernel's, read from the accepted socket; the
//!   peer cannot choose them.
//! - A connection's entry lives exactly as long as its relay: it is inserted
//!   before its sockets are polled, so before the first byte is relayed,
//!   and removed when they are closed; every call on the connection finds it.
//! - The gate decides nothing about calls: policy (allowed uids and gids,
//!   admin) lives with the daemon's other checks, which answer with errno
//!   and ErrorInfo. Its limits only bound what connections cost.
//! - The relay thread never touches Python; stop() wakes it through an
//!   eventfd and joins it, and it closes every socket on its way out.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

/// Bytes a connection's name takes after the tag: '/' and 32 hex digits.
const ID_CHARS: usize = 33;

/// Longest abstract name: sun_path less its leading NUL.
const MAX_NAME: usize = 107;

/// How long the listener rests after the process ran out of descriptors,
/// unless a connection closes first.
pub const FD_PAUSE: Duration = Duration::from_millis(100);

/// Reads per connection per turn of the loop (of up to `SCRATCH` bytes).
const PUMP_BUDGET: usize = 16;

/// The loop's read buffer.
const SCRATCH: usize = 64 << 10;

/// Accepts per turn of the loop; the listener is level-triggered, so the
/// rest are reported again at once.
const ACCEPT_BUDGET: usize = 64;

/// File descriptors one relayed connection costs the daemon's process: the
/// public socket, the private one, and the gRPC server's end of it.
pub const FDS_PER_CONNECTION: usize = 3;

/// Descriptors left to the rest of the daemon by the default connection limit.
pub const FD_RESERVE: usize = 256;

/// The gate's bounds.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// Most connections relayed at once; more are accepted and closed.
    pub max_connections: usize,
    /// Most connections relayed at once per peer uid; more are accepted and closed.
    pub max_per_uid: usize,
    /// Close a connection after this long without a byte either way; None: never.
    pub idle_timeout: Option<Duration>,
    /// Most bytes buffered per connection per direction.
    pub buffer_cap: usize,
}

impl GateConfig {
    /// The default connection limit: what the soft RLIMIT_NOFILE leaves for
    /// connections after `FD_RESERVE`, at `FDS_PER_CONNECTION` each (256
    /// connections at the common soft limit of 1024), at least 16.
    pub fn default_max_connections() -> usize {
        let mut lim: libc::rlimit = unsafe { mem::zeroed() };
        // SAFETY: lim is valid for writes.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        (soft.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION).max(16)
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        let max = GateConfig::default_max_connections();
        GateConfig {
            max_connections: max,
            max_per_uid: max,
            idle_timeout: None,
            buffer_cap: 256 << 10,
        }
    }
}

/// What the gate has done (see `PeerGate::stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Connections accepted from the public socket, refused ones included.
    pub accepted: u64,
    /// Connections that could not be relayed (credentials unreadable, the
    /// upstream refused or unreachable).
    pub failed: u64,
    /// Connections relayed now.
    pub live: usize,
    /// Connections closed at once over `max_connections` or `max_per_uid`.
    pub refused: u64,
    /// Connections closed after `idle_timeout` without a byte.
    pub idle_closed: u64,
    /// Times the listener was paused for want of file descriptors.
    pub fd_pauses: u64,
    /// Bytes held in relay buffers now.
    pub buffered: usize,
}

#[derive(Default)]
struct Shared {
    peers: Mutex<HashMap<u128, PeerCred>>,
    stopping: AtomicBool,
    accepted: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    idle_closed: AtomicU64,
    fd_pauses: AtomicU64,
    buffered: AtomicUsize,
}

/// A running gate; see the module comment.
pub struct PeerGate {
    shared: Arc<Shared>,
    /// Wakes the loop for stop(); the loop holds the other reference.
    wake: Arc<OwnedFd>,
    relay: Option<JoinHandle<()>>,
    tag: String,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// A sockaddr_un for an abstract `name` or a filesystem path.
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

/// 128 bits from the kernel's CSPRNG.
fn random_id() -> io::Result<u128> {
    let mut bytes = [0u8; 16];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: the buffer has room for the bytes asked.
        let n = unsafe { libc::getrandom(bytes[got..].as_mut_ptr().cast(), bytes.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(u128::from_ne_bytes(bytes))
}

fn name_of(tag: &str, id: u128) -> String {
    format!("{tag}/{id:032x}")
}

/// The connection id of a name's tail ("/" and 32 lowercase hex digits).
fn parse_id(rest: &str) -> Option<u128> {
    let hex = rest.strip_prefix('/')?;
    if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the fd is owned at once.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl PeerGate {
    /// Serve `listener` with the default bounds (GateConfig::default).
    pub fn start(listener: UnixListener, upstream: PathBuf, tag: String) -> io::Result<PeerGate> {
        PeerGate::start_with(listener, upstream, tag, GateConfig::default())
    }

    /// Serve `listener`, relaying each connection to the socket at
    /// `upstream` from the abstract address `<tag>/<id>`, within `config`.
    pub fn start_with(
        listener: UnixListener,
        upstream: PathBuf,
        tag: String,
        config: GateConfig,
    ) -> io::Result<PeerGate> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if tag.is_empty() || tag.len() + ID_CHARS > MAX_NAME {
            return Err(invalid("tag must be 1..74 bytes"));
        }
        if config.max_connections == 0 || config.max_per_uid == 0 || config.buffer_cap == 0 {
            return Err(invalid(
                "max_connections, max_per_uid and buffer_cap must be at least 1",
            ));
        }
        if config.idle_timeout == Some(Duration::ZERO) {
            return Err(invalid("an idle timeout must be positive (None: never)"));
        }
        listener.set_nonblocking(true)?;
        let upstream = sockaddr(upstream.as_os_str().as_bytes(), false)?;
        // SAFETY: plain fd creation; each is owned at once.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let wake = Arc::new(unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        });
        let shared = Arc::new(Shared::default());
        let mut relay = Relay {
            epoll,
            wake: Arc::clone(&wake),
            listener,
            listening: false,
            paused_until: None,
            upstream,
            tag: tag.clone(),
            config,
            shared: Arc::clone(&shared),
            conns: Vec::new(),
            free: Vec::new(),
            generation: 0,
            per_uid: HashMap::new(),
            spare: None,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            again: Vec::new(),
            buffered: 0,
            next_sweep: None,
        };
        relay.register(relay.wake.as_raw_fd(), WAKE, libc::EPOLLIN as u32)?;
        relay.listen()?;
        let handle = thread::Builder::new()
            .name("iommud-gate".into())
            .spawn(move || relay.run())?;
        Ok(PeerGate {
            shared,
            wake,
            relay: Some(handle),
            tag,
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The credentials of live connection `id`.
    pub fn peer(&self, id: u128) -> Option<PeerCred> {
        self.shared.peers.lock().unwrap().get(&id).cloned()
    }

    /// Connection id of a gRPC peer string `unix-abstract:<tag>/<id>`.
    pub fn connection_of(&self, peer: &str) -> Option<u128> {
        let rest = peer
            .strip_prefix("unix-abstract:")?
            .strip_prefix(self.tag.as_str())?;
        parse_id(rest)
    }

    /// The abstract name the relay of connection `id` connects from.
    pub fn name_of(&self, id: u128) -> String {
        name_of(&self.tag, id)
    }

    pub fn stats(&self) -> GateStats {
        let s = &self.shared;
        GateStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            live: s.peers.lock().unwrap().len(),
            refused: s.refused.load(Ordering::Relaxed),
            idle_closed: s.idle_closed.load(Ordering::Relaxed),
            fd_pauses: s.fd_pauses.load(Ordering::Relaxed),
            buffered: s.buffered.load(Ordering::Relaxed),
        }
    }

    /// Stop accepting and close every connection. Idempotent.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(handle) = self.relay.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for PeerGate {
    fn drop(&mut self) {
        self.stop();
    }
}

/// epoll tokens: the listener, the eventfd, and connection sockets as
/// slot << 32 | generation << 1 | side.
const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;

const PUBLIC: usize = 0;
const PRIVATE: usize = 1;

/// One direction of a connection: bytes read from one side, not yet
/// written to the other.
#[derive(Default)]
struct Pipe {
    buf: Vec<u8>,
    /// buf[start..] is still to be written.
    start: usize,
    /// The source said EOF (or reset).
    eof: bool,
    /// EOF was passed on as shutdown(SHUT_WR) of the destination.
    shut: bool,
}

impl Pipe {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn done(&self) -> bool {
        self.shut
    }

    fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.buf.len() + data.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn consumed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            // Drained: give the memory back, so idle connections hold none.
            self.buf = Vec::new();
            self.start = 0;
        }
    }
}

struct Conn {
    id: u128,
    uid: u32,
    generation: u32,
    /// [public, private]
    fds: [OwnedFd; 2],
    /// [public → private, private → public]
    pipes: [Pipe; 2],
    /// The side's peer is gone for good (EPOLLHUP).
    hup: [bool; 2],
    last_active: Instant,
}

/// Why a connection closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Done,
    Idle,
}

/// Result of one transfer: whether bytes moved, whether the budget ran out
/// before EAGAIN, or a fatal error.
struct Moved {
    bytes: bool,
    more: bool,
}

/// The relay thread's state; see the module comment.
struct Relay {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    listener: UnixListener,
    listening: bool,
    paused_until: Option<Instant>,
    upstream: (libc::sockaddr_un, libc::socklen_t),
    tag: String,
    config: GateConfig,
    shared: Arc<Shared>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generation: u32,
    per_uid: HashMap<u32, usize>,
    /// The private socket of the next connection, made before its accept.
    spare: Option<OwnedFd>,
    scratch: Box<[u8]>,
    /// Connections whose pump ran out of budget: (slot, generation).
    again: Vec<(usize, u32)>,
    buffered: usize,
    next_sweep: Option<Instant>,
}

fn fd_exhausted(e: &io::Error) -> bool {
    matches!(
        errno_of(e),
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Relay {
    fn register(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event; both fds are open.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    fn listen(&mut self) -> io::Result<()> {
        // Level-triggered: connections left in the backlog are reported again.
        self.register(self.listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
        self.listening = true;
        self.paused_until = None;
        Ok(())
    }

    /// Stop polling the listener until a connection closes or FD_PAUSE passes.
    fn pause(&mut self) {
        if self.listening {
            // SAFETY: both fds are open; a null event is allowed for DEL.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                )
            };
            self.listening = false;
            self.shared.fd_pauses.fetch_add(1, Ordering::Relaxed);
        }
        self.paused_until = Some(Instant::now() + FD_PAUSE);
    }

    fn resume(&mut self) {
        if !self.listening && self.listen().is_err() {
            // Out of memory for the epoll entry: try again after a pause.
            self.paused_until = Some(Instant::now() + FD_PAUSE);
        }
    }

    fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let timeout = self.timeout_ms();
            // SAFETY: events has room for the count given.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    timeout,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // EBADF/EINVAL cannot happen with our own epoll fd; do not spin.
                thread::sleep(FD_PAUSE);
                continue;
            }
            let again = mem::take(&mut self.again);
            for ev in &events[..n as usize] {
                let (token, flags) = (ev.u64, ev.events);
                match token {
                    WAKE => {} // stop() set the flag; the loop condition sees it
                    LISTENER => self.accept_ready(),
                    _ => self.conn_event(token, flags),
                }
            }
            for (slot, generation) in again {
                if self.live(slot, generation) {
                    self.pump(slot);
                }
            }
            self.timers();
            self.shared.buffered.store(self.buffered, Ordering::Relaxed);
        }
        // Stopping: every socket closes with the Relay; forget every peer.
        self.shared.peers.lock().unwrap().clear();
        self.shared.buffered.store(0, Ordering::Relaxed);
    }

    fn timeout_ms(&mut self) -> libc::c_int {
        if !self.again.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = self.paused_until;
        if self.config.idle_timeout.is_some() && self.conns.len() > self.free.len() {
            let sweep = *self.next_sweep.get_or_insert(now + self.sweep_interval());
            next = Some(next.map_or(sweep, |n| n.min(sweep)));
        }
        match next {
            None => -1,
            // Rounded up, so that the deadline has passed when we wake.
            Some(t) => t
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(60_000) as libc::c_int,
        }
    }

    fn sweep_interval(&self) -> Duration {
        let idle = self.config.idle_timeout.unwrap_or(Duration::from_secs(1));
        (idle / 8).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.paused_until.is_some_and(|t| now >= t) {
            self.resume();
        }
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        if self.next_sweep.is_none_or(|t| now < t) {
            return;
        }
        self.next_sweep = None;
        let stale: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| {
                c.as_ref()
                    .filter(|c| now.duration_since(c.last_active) >= idle)
                    .map(|_| slot)
            })
            .collect();
        for slot in stale {
            self.close(slot, Close::Idle);
        }
    }

    fn live(&self, slot: usize, generation: u32) -> bool {
        self.conns
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.generation == generation)
    }

    fn conn_event(&mut self, token: u64, flags: u32) {
        let slot = (token >> 32) as usize;
        let generation = ((token >> 1) & 0x7fff_ffff) as u32;
        let side = (token & 1) as usize;
        if !self.live(slot, generation) {
            return; // closed earlier in this batch
        }
        if flags & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            self.conns[slot].as_mut().expect("live").hup[side] = true;
        }
        self.pump(slot);
    }

    /// Move what can be moved both ways, then close the connection if it
    /// has ended (see the module comment).
    fn pump(&mut self, slot: usize) {
        let cap = self.config.buffer_cap;
        let conn = self.conns[slot].as_mut().expect("live");
        let before = conn.pipes[0].pending() + conn.pipes[1].pending();
        let mut fatal = false;
        let mut moved = false;
        let mut more = false;
        for (from, to) in [(PUBLIC, PRIVATE), (PRIVATE, PUBLIC)] {
            let (src, dst) = (conn.fds[from].as_raw_fd(), conn.fds[to].as_raw_fd());
            match transfer(src, dst, &mut conn.pipes[from], &mut self.scratch, cap) {
                Ok(m) => {
                    moved |= m.bytes;
                    more |= m.more;
                }
                Err(_) => fatal = true,
            }
        }
        let after = conn.pipes[0].pending() + conn.pipes[1].pending();
        self.buffered = self.buffered + after - before;
        if moved {
            conn.last_active = Instant::now();
        }
        let [up, down] = &conn.pipes;
        let ended = fatal
            || (up.done() && down.done())
            || (conn.hup[PUBLIC] && up.done())
            || (conn.hup[PRIVATE] && down.done());
        if ended {
            self.close(slot, Close::Done);
        } else if more {
            self.again.push((slot, conn.generation));
        }
    }

    fn close(&mut self, slot: usize, why: Close) {
        let Some(conn) = self.conns[slot].take() else {
            return;
        };
        self.free.push(slot);
        self.buffered -= conn.pipes[0].pending() + conn.pipes[1].pending();
        if let Some(n) = self.per_uid.get_mut(&conn.uid) {
            *n -= 1;
            if *n == 0 {
                self.per_uid.remove(&conn.uid);
            }
        }
        if why == Close::Idle {
            self.shared.idle_closed.fetch_add(1, Ordering::Relaxed);
        }
        let id = conn.id;
        // Closing the fds takes them out of the epoll set and frees the
        // name; only then does the entry go, so a connection that is gone
        // from the stats is gone from the kernel too.
        drop(conn);
        self.shared.peers.lock().unwrap().remove(&id);
        // A descriptor came free: a paused listener may accept again.
        self.resume();
    }

    fn accept_ready(&mut self) {
        for _ in 0..ACCEPT_BUDGET {
            // The private side first: without a descriptor for it, leave the
            // client in the backlog rather than accept and drop it.
            let spare = match self.spare.take() {
                Some(s) => s,
                None => match new_socket() {
                    Ok(s) => s,
                    Err(_) => {
                        // EMFILE/ENFILE/ENOMEM: all mean "not now".
                        self.pause();
                        return;
                    }
                },
            };
            // SAFETY: the listener is open; no address is asked for.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                self.spare = Some(spare);
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    return;
                }
                if fd_exhausted(&e) {
                    self.pause();
                    return;
                }
                continue; // ECONNABORTED, EINTR, EPROTO...: one client only
            }
            // SAFETY: accept4 returned a new fd we now own.
            let public = unsafe { OwnedFd::from_raw_fd(fd) };
            self.admit(public, spare);
        }
    }

    fn admit(&mut self, public: OwnedFd, spare: OwnedFd) {
        self.shared.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(cred) = peer_cred(public.as_raw_fd()) else {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            self.spare = Some(spare);
            return;
        };
        let live = self.conns.len() - self.free.len();
        let of_uid = self.per_uid.get(&cred.uid).copied().unwrap_or(0);
        if live >= self.config.max_connections || of_uid >= self.config.max_per_uid {
            // Accepted and closed at once: the client sees EOF.
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            self.spare = Some(spare);
            return;
        }
        let Ok(id) = self.connect_upstream(&spare) else {
            // The spare is bound (or broken) now: it goes with the client.
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let generation = self.generation;
        let uid = cred.uid;
        // Recorded before either socket is polled: before the first byte.
        self.shared.peers.lock().unwrap().insert(id, cred);
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        let token = |side: u64| ((slot as u64) << 32) | (u64::from(generation) << 1) | side;
        self.conns[slot] = Some(Conn {
            id,
            uid,
            generation,
            fds: [public, spare],
            pipes: [Pipe::default(), Pipe::default()],
            hup: [false; 2],
            last_active: Instant::now(),
        });
        *self.per_uid.entry(uid).or_insert(0) += 1;
        let conn = self.conns[slot].as_ref().expect("just made");
        let (pfd, qfd) = (conn.fds[PUBLIC].as_raw_fd(), conn.fds[PRIVATE].as_raw_fd());
        if self.register(pfd, token(0), events).is_err()
            || self.register(qfd, token(1), events).is_err()
        {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            self.close(slot, Close::Done);
        }
    }

    /// Bind `sock` to a fresh random name and connect it to the upstream.
    fn connect_upstream(&self, sock: &OwnedFd) -> io::Result<u128> {
        let fd = sock.as_raw_fd();
        let mut tries = 0;
        let id = loop {
            let id = random_id()?;
            let (addr, len) = sockaddr(name_of(&self.tag, id).as_bytes(), true)?;
            // SAFETY: addr is an initialised sockaddr_un of length len.
            let rc = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
            if rc == 0 {
                break id;
            }
            let e = io::Error::last_os_error();
            tries += 1;
            // A collision of 128 random bits: someone guessed; draw again.
            if errno_of(&e) != libc::EADDRINUSE || tries >= 4 {
                return Err(e);
            }
        };
        let (addr, len) = &self.upstream;
        // SAFETY: as above. A non-blocking UNIX connect completes at once
        // or fails (EAGAIN when the server's backlog is full).
        cvt(unsafe { libc::connect(fd, (addr as *const libc::sockaddr_un).cast(), *len) })?;
        Ok(id)
    }
}

/// Move bytes from `src` to `dst` through `pipe` until the kernel says
/// EAGAIN, the buffer is full, or the budget runs out. Err: a write failed
/// or a read failed other than by EOF or reset; the connection is over.
fn transfer(
    src: RawFd,
    dst: RawFd,
    pipe: &mut Pipe,
    scratch: &mut [u8],
    cap: usize,
) -> io::Result<Moved> {
    let mut moved = false;
    let mut dst_full = false;
    for _ in 0..PUMP_BUDGET {
        // Flush what is buffered.
        while pipe.pending() > 0 && !dst_full {
            match send(dst, &pipe.buf[pipe.start..]) {
                Ok(n) => {
                    pipe.consumed(n);
                    moved = true;
                }
                Err(e) if would_block(&e) => dst_full = true,
                Err(e) => return Err(e),
            }
        }
        if pipe.eof {
            if pipe.pending() == 0 && !pipe.shut {
                // SAFETY: dst is an open socket; ENOTCONN is harmless here.
                unsafe { libc::shutdown(dst, libc::SHUT_WR) };
                pipe.shut = true;
            }
            return Ok(Moved {
                bytes: moved,
                more: false,
            });
        }
        let room = cap - pipe.pending();
        if room == 0 {
            // Back-pressure: leave the rest in the source's socket until
            // the destination drains the buffer (its EPOLLOUT pumps again).
            return Ok(Moved {
                bytes: moved,
                more: false,
            });
        }
        let want = room.min(scratch.len());
        // SAFETY: scratch has room for `want` bytes.
        let n = unsafe { libc::recv(src, scratch.as_mut_ptr().cast(), want, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match errno_of(&e) {
                libc::EAGAIN => {
                    return Ok(Moved {
                        bytes: moved,
                        more: false,
                    })
                }
                libc::EINTR => continue,
                // The peer closed with our bytes unread: what it sent before
                // has been read; pass the end on.
                libc::ECONNRESET => {
                    pipe.eof = true;
                    continue;
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            pipe.eof = true;
            continue;
        }
        let data = &scratch[..n as usize];
        moved = true;
        let mut sent = 0;
        if pipe.pending() == 0 && !dst_full {
            // The common case: straight through, nothing buffered.
            match send(dst, data) {
                Ok(k) => sent = k,
                Err(e) if would_block(&e) => dst_full = true,
                Err(e) => return Err(e),
            }
            if sent < data.len() {
                dst_full = true;
            }
        }
        pipe.push(&data[sent..]);
    }
    Ok(Moved {
        bytes: moved,
        more: true,
    })
}

/// send(2) without SIGPIPE, retrying EINTR.
fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: data is valid for reads of its length.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
