//! The peer gate against real sockets: credentials recorded per connection,
//! the relay's client address naming the connection with 128 random bits,
//! bytes relayed both ways under load with half-closes, entries retired
//! with their connection, one thread for every connection, the connection
//! limits, the idle timeout, back-pressure, running out of descriptors
//! without spinning, and stop() ending it all.
//!
//! Tests that change process-wide state (RLIMIT_NOFILE) or count the
//! process's threads run alone in a child process (`isolated`).

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iommud_core::peer_gate::{peer_cred, GateConfig, GateStats, PeerGate};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommud-gate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// This test binary, copied where another uid can run it: the build tree
/// may sit below a private directory (a `mktemp -d` checkout is 0700).
fn exe_for_any_uid(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("gate-client");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// Poll `cond` until it holds, failing after a generous deadline.
fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition never held");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn config() -> GateConfig {
    GateConfig::default()
}

fn gate_with(dir: &Path, tag: &str, cfg: GateConfig) -> (PeerGate, PathBuf, UnixListener) {
    let public = dir.join("public.sock");
    let private = dir.join("private.sock");
    let upstream = UnixListener::bind(&private).unwrap();
    let g = PeerGate::start_with(
        UnixListener::bind(&public).unwrap(),
        private,
        tag.into(),
        cfg,
    )
    .unwrap();
    (g, public, upstream)
}

fn gate(dir: &Path, tag: &str) -> (PeerGate, PathBuf, UnixListener) {
    gate_with(dir, tag, config())
}

/// The abstract name a relayed connection came from.
fn name(addr: &SocketAddr) -> String {
    String::from_utf8(
        addr.as_abstract_name()
            .expect("relay connects from an abstract name")
            .to_vec(),
    )
    .unwrap()
}

/// Whether the peer of `s` closed it (EOF or reset) within `within`.
fn closed_within(s: &mut UnixStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

/// Run the calling test alone in a child process (this test binary, asked
/// for that one test); true in the child, where the body runs.
fn isolated(test: &str) -> bool {
    if std::env::var("IOMMUD_GATE_ISOLATED").as_deref() == Ok(test) {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env("IOMMUD_GATE_ISOLATED", test)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in its child process:\n{stdout}\n{stderr}"
    );
    false
}

/// Threads of this process, and how many are named `comm`.
fn threads(comm: &str) -> (usize, usize) {
    let mut all = 0;
    let mut named = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        all += 1;
        let path = task.unwrap().path().join("comm");
        if std::fs::read_to_string(path).is_ok_and(|c| c.trim() == comm) {
            named += 1;
        }
    }
    (all, named)
}

/// The /proc stat file of this process's thread named `comm`, opened now
/// so that reading it later needs no new descriptor.
fn thread_stat(comm: &str) -> std::fs::File {
    // A thread names itself once it runs.
    eventually(|| threads(comm).1 == 1);
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == comm) {
            return std::fs::File::open(dir.join("stat")).unwrap();
        }
    }
    panic!("no thread named {comm}");
}

/// CPU time (user + system) of the thread whose stat file this is.
fn thread_cpu(stat: &mut std::fs::File) -> Duration {
    use std::io::Seek;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    stat.rewind().unwrap();
    let mut text = String::new();
    stat.read_to_string(&mut text).unwrap();
    // Fields after the ")" closing comm: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

/// Raise the soft RLIMIT_NOFILE to the hard one (as the daemon does);
/// returns the new soft limit.
fn raise_fd_limit() -> u64 {
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur
}

/// The next connection on `upstream`, waiting at most `within`.
fn accept_within(upstream: &UnixListener, within: Duration) -> Option<UnixStream> {
    upstream.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + within;
    let got = loop {
        match upstream.accept() {
            Ok((s, _)) => break Some(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break None,
        }
    };
    upstream.set_nonblocking(false).unwrap();
    got.inspect(|s| s.set_nonblocking(false).unwrap())
}

#[test]
fn peer_cred_of_a_socketpair_is_this_process() {
    let (a, _b) = UnixStream::pair().unwrap();
    let cred = peer_cred(std::os::fd::AsRawFd::as_raw_fd(&a)).unwrap();
    assert_eq!(cred.pid as u32, std::process::id());
    assert_eq!(cred.uid, unsafe { libc::getuid() });
    assert_eq!(cred.gid, unsafe { libc::getgid() });
}

#[test]
fn relays_bytes_and_names_each_connection_with_its_credentials() {
    let dir = scratch("relay");
    let tag = format!("iommud-test-{}", std::process::id());
    let (mut g, public, upstream) = gate(&dir, &tag);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut client = UnixStream::connect(&public).unwrap();
        let (mut server, addr) = upstream.accept().unwrap();
        let name = name(&addr);
        let peer = format!("unix-abstract:{name}");
        let id = g.connection_of(&peer).expect("the gate's own name");
        assert_eq!(name, g.name_of(id));
        assert_eq!(name.len(), tag.len() + 33, "{name}");
        seen.push(id);
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Recorded before the first byte was relayed, so any call finds it.
        let cred = g.peer(id).expect("live connection has credentials");
        assert_eq!(cred.pid as u32, std::process::id());
        assert_eq!(cred.uid, unsafe { libc::getuid() });
        server.write_all(&vec![7u8; 200_000]).unwrap();
        let mut got = vec![0u8; 200_000];
        client.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == 7));

        // Closing the client ends the relay and retires the entry.
        drop(client);
        assert_eq!(server.read(&mut buf).unwrap(), 0, "EOF reaches the server");
        drop(server);
        eventually(|| g.peer(id).is_none());
    }
    assert_ne!(seen[0], seen[1]);
    let s = g.stats();
    assert_eq!((s.accepted, s.failed, s.live, s.refused), (2, 0, 0, 0));
    g.stop();
    assert!(
        UnixStream::connect(&public)
            .map(|mut s| s.read(&mut [0u8; 1]).unwrap_or(0) == 0)
            .unwrap_or(true),
        "a stopped gate relays nothing"
    );
}

#[test]
fn foreign_peer_strings_name_no_connection() {
    let dir = scratch("parse");
    let (g, _public, _upstream) = gate(&dir, "iommud-abc");
    let hex = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        g.connection_of(&format!("unix-abstract:iommud-abc/{hex}")),
        Some(0x0123456789abcdef0123456789abcdef)
    );
    for peer in [
        "unix-abstract:iommud-abc/1".to_string(),
        format!("unix-abstract:iommud-abd/{hex}"),
        format!("unix-abstract:iommud-abc/{}", hex.to_uppercase()),
        format!("unix-abstract:iommud-abc/{}", &hex[1..]),
        format!("unix-abstract:iommud-abc/{hex}0"),
        format!("unix-abstract:iommud-abc/+{}", &hex[1..]),
        format!("unix-abstract:iommud-abc{hex}"),
        format!("unix:/tmp/iommud-abc/{hex}"),
        "ipv4:127.0.0.1:5".to_string(),
        "unix-abstract:iommud-abc/".to_string(),
    ] {
        assert_eq!(g.connection_of(&peer), None, "{peer}");
    }
    assert_eq!(g.peer(1), None);
}

#[test]
fn names_are_unpredictable_and_squatting_them_breaks_nothing() {
    // A local user may bind any abstract name, and sees every bound one in
    // /proc/net/unix. Squat what the old scheme would use next, every name
    // the gate has used so far, and a few guesses: new connections still
    // go through, from names nobody held.
    let dir = scratch("squat");
    let tag = format!("iommud-squat-{}", std::process::id());
    let (g, public, upstream) = gate(&dir, &tag);
    let bind = |name: &str| {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixListener::bind_addr(&addr).unwrap()
    };
    let mut squatted: Vec<UnixListener> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for n in 0..=40 {
        names.push(format!("{tag}/{n}"));
    }
    names.push(format!("{tag}/{:032x}", 0));
    names.push(format!("{tag}/{:032x}", 1));
    for n in &names {
        squatted.push(bind(n));
    }
    let mut used = std::collections::HashSet::new();
    for round in 0..20 {
        let mut client = UnixStream::connect(&public).unwrap();
        let (mut server, addr) = upstream.accept().unwrap();
        let name = name(&addr);
        assert!(!names.contains(&name), "{name} was squatted");
        let id = g.connection_of(&format!("unix-abstract:{name}")).unwrap();
        assert!(used.insert(id), "a name drawn twice");
        client.write_all(&[round]).unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
        assert_eq!(b[0], round);
        server.write_all(&[round ^ 0xff]).unwrap();
        client.read_exact(&mut b).unwrap();
        assert_eq!(b[0], round ^ 0xff);
        // The name comes free when the connection ends; take it.
        drop(client);
        drop(server);
        eventually(|| g.peer(id).is_none());
        squatted.push(bind(&name));
        names.push(name);
    }
    // Names share no visible pattern: no two of the 20 agree on their
    // first 8 hex digits (chance of a false failure: about 2^-25).
    let heads: std::collections::HashSet<u128> = used.iter().map(|id| id >> 96).collect();
    assert_eq!(heads.len(), used.len());
    let s = g.stats();
    assert_eq!((s.accepted, s.failed, s.refused), (20, 0, 0));
}

#[test]
fn stop_ends_live_relays() {
    let dir = scratch("stop");
    let (mut g, public, upstream) = gate(&dir, "iommud-stop");
    let mut client = UnixStream::connect(&public).unwrap();
    let (mut server, _) = upstream.accept().unwrap();
    g.stop();
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
    assert_eq!(server.read(&mut buf).unwrap_or(0), 0);
    assert_eq!(g.stats().live, 0);
    g.stop(); // idempotent
}

#[test]
fn unreachable_upstream_closes_the_client_and_counts_it() {
    let dir = scratch("down");
    let public = dir.join("public.sock");
    let g = PeerGate::start(
        UnixListener::bind(&public).unwrap(),
        dir.join("nobody.sock"),
        "iommud-down".into(),
    )
    .unwrap();
    let mut client = UnixStream::connect(&public).unwrap();
    assert_eq!(client.read(&mut [0u8; 1]).unwrap_or(0), 0);
    eventually(|| {
        let s = g.stats();
        (s.accepted, s.failed, s.live) == (1, 1, 0)
    });
}

#[test]
fn closing_either_side_closes_both() {
    let dir = scratch("close");
    let (g, public, upstream) = gate(&dir, "iommud-close");
    // The server closes: the client sees EOF, and a write then fails.
    let mut client = UnixStream::connect(&public).unwrap();
    let (server, _) = upstream.accept().unwrap();
    drop(server);
    assert!(closed_within(&mut client, Duration::from_secs(10)));
    eventually(|| g.stats().live == 0);
    let _ = client.write_all(b"x");
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        client.write_all(b"x").is_err(),
        "the gate's socket is closed"
    );
    // The client closes: the server sees EOF, and a write then fails.
    let client = UnixStream::connect(&public).unwrap();
    let (mut server, _) = upstream.accept().unwrap();
    drop(client);
    assert!(closed_within(&mut server, Duration::from_secs(10)));
    eventually(|| g.stats().live == 0);
    let _ = server.write_all(b"x");
    std::thread::sleep(Duration::from_millis(20));
    assert!(server.write_all(b"x").is_err());
}

#[test]
fn half_closes_are_relayed_both_ways() {
    let dir = scratch("half");
    let (g, public, upstream) = gate(&dir, "iommud-half");
    // The client half-closes: the server reads EOF and still answers.
    let mut client = UnixStream::connect(&public).unwrap();
    let (mut server, _) = upstream.accept().unwrap();
    client.write_all(b"request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"request");
    server.write_all(b"reply").unwrap();
    drop(server);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"reply");
    eventually(|| g.stats().live == 0);
    // The server half-closes: the client reads EOF and may still send.
    let mut client = UnixStream::connect(&public).unwrap();
    let (mut server, _) = upstream.accept().unwrap();
    server.write_all(b"bye").unwrap();
    server.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    client.write_all(b"late").unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"late");
    drop(client);
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
    eventually(|| g.stats().live == 0);
}

/// Bytes of stream `seed`, position `i` on.
fn pattern(seed: u64, from: usize, out: &mut [u8]) {
    for (k, b) in out.iter_mut().enumerate() {
        let i = (from + k) as u64;
        *b = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd) >> (i % 7)) as u8;
    }
}

#[test]
fn relays_every_byte_both_ways_under_load() {
    // 32 clients at once each send 1 MiB through the gate to an echo
    // server and read it back while they send, then half-close: every byte
    // arrives in order, then EOF, and every connection is retired.
    const CLIENTS: u64 = 32;
    const BYTES: usize = 1 << 20;
    let dir = scratch("load");
    let (g, public, upstream) = gate(&dir, "iommud-load");
    let echo = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..CLIENTS {
            let (mut s, _) = upstream.accept().unwrap();
            workers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 37_000];
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).unwrap();
                }
                // EOF from the client: echo is complete; close.
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let public = public.clone();
            std::thread::spawn(move || {
                let mut tx = UnixStream::connect(&public).unwrap();
                let mut rx = tx.try_clone().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut got = Vec::with_capacity(BYTES);
                    rx.read_to_end(&mut got).unwrap();
                    got
                });
                let mut chunk = vec![0u8; 50_000 + seed as usize * 1000];
                let mut sent = 0;
                while sent < BYTES {
                    let n = chunk.len().min(BYTES - sent);
                    pattern(seed, sent, &mut chunk[..n]);
                    tx.write_all(&chunk[..n]).unwrap();
                    sent += n;
                }
                tx.shutdown(Shutdown::Write).unwrap();
                let got = reader.join().unwrap();
                let mut want = vec![0u8; BYTES];
                pattern(seed, 0, &mut want);
                assert!(got == want, "client {seed}: {} bytes back", got.len());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    echo.join().unwrap();
    eventually(|| g.stats().live == 0);
    let s = g.stats();
    assert_eq!((s.accepted, s.failed, s.refused), (CLIENTS, 0, 0));
    assert_eq!(s.buffered, 0);
}

#[test]
fn back_pressure_bounds_what_the_gate_buffers() {
    // Neither end reads: both directions fill the kernel's buffers and the
    // gate's, which stop at buffer_cap each; writers then block. When the
    // ends read again every byte arrives in order.
    const CAP: usize = 64 << 10;
    let dir = scratch("pressure");
    let cfg = GateConfig {
        buffer_cap: CAP,
        ..config()
    };
    let (g, public, upstream) = gate_with(&dir, "iommud-pressure", cfg);
    let mut client = UnixStream::connect(&public).unwrap();
    let (mut server, _) = upstream.accept().unwrap();
    let fill = |s: &mut UnixStream, seed: u64| -> usize {
        s.set_nonblocking(true).unwrap();
        let mut chunk = vec![0u8; 16 << 10];
        let (mut sent, mut idle_since) = (0usize, Instant::now());
        // Until nothing more goes for 300 ms.
        while idle_since.elapsed() < Duration::from_millis(300) {
            pattern(seed, sent, &mut chunk);
            match s.write(&chunk) {
                Ok(n) => {
                    sent += n;
                    idle_since = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        s.set_nonblocking(false).unwrap();
        sent
    };
    let up = fill(&mut client, 1);
    let down = fill(&mut server, 2);
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(212_992);
    // Each direction: the writer's socket buffer, the gate's buffer, the
    // gate's socket buffer toward the reader (a UNIX stream writer may
    // pass its sndbuf by at most half of it, its last allocation).
    let bound = CAP + 3 * wmem;
    assert!(
        up > CAP && up <= bound,
        "client sent {up} bytes, bound {bound}"
    );
    assert!(
        down > CAP && down <= bound,
        "server sent {down}, bound {bound}"
    );
    let s = g.stats();
    assert!(
        s.buffered > 0 && s.buffered <= 2 * CAP,
        "buffered {}",
        s.buffered
    );
    // Now read: every byte, in order, both ways.
    let check = |s: &mut UnixStream, seed: u64, n: usize| {
        let mut got = vec![0u8; n];
        s.read_exact(&mut got).unwrap();
        let mut want = vec![0u8; n];
        pattern(seed, 0, &mut want);
        assert!(got == want, "stream {seed} corrupted");
    };
    let mut server2 = server.try_clone().unwrap();
    let reader = std::thread::spawn(move || check(&mut server2, 1, up));
    check(&mut client, 2, down);
    reader.join().unwrap();
    eventually(|| g.stats().buffered == 0);
    drop(client);
    eventually(|| g.stats().live == 0);
}

#[test]
fn limits_refuse_exactly_the_excess() {
    let dir = scratch("limits");
    let cfg = GateConfig {
        max_connections: 4,
        max_per_uid: 4,
        ..config()
    };
    let (g, public, upstream) = gate_with(&dir, "iommud-limits", cfg);
    let mut kept = Vec::new();
    for _ in 0..4 {
        let c = UnixStream::connect(&public).unwrap();
        let (s, _) = upstream.accept().unwrap();
        kept.push((c, s));
    }
    // Two more: accepted and closed at once, counted.
    for _ in 0..2 {
        let mut c = UnixStream::connect(&public).unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(10)));
    }
    let s = g.stats();
    assert_eq!((s.accepted, s.live, s.refused, s.failed), (6, 4, 2, 0));
    // One ends; the next connection takes its place.
    drop(kept.pop());
    eventually(|| g.stats().live == 3);
    let mut c = UnixStream::connect(&public).unwrap();
    let (mut s, _) = upstream.accept().unwrap();
    c.write_all(b"ok").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    let st = g.stats();
    assert_eq!((st.accepted, st.live, st.refused), (7, 4, 2));
}

#[test]
fn per_uid_limit_refuses_only_that_uid() {
    let dir = scratch("peruid");
    let cfg = GateConfig {
        max_connections: 10,
        max_per_uid: 2,
        ..config()
    };
    let (g, public, upstream) = gate_with(&dir, "iommud-peruid", cfg);
    let mut kept = Vec::new();
    for _ in 0..2 {
        let c = UnixStream::connect(&public).unwrap();
        kept.push((c, upstream.accept().unwrap().0));
    }
    for _ in 0..3 {
        let mut c = UnixStream::connect(&public).unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(10)));
    }
    let s = g.stats();
    assert_eq!((s.accepted, s.live, s.refused), (5, 2, 3));
    // Another uid has its own allowance (needs root to take one).
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    std::fs::set_permissions(&public, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut child = Command::new(exe_for_any_uid(&dir))
        .args([
            "client_process",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("IOMMUD_GATE_CLIENT", &public)
        .env("IOMMUD_GATE_CLIENTS", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .uid(4242)
        .gid(4242)
        .spawn()
        .unwrap();
    // Its first two are relayed: answer each with a byte.
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut s = accept_within(&upstream, Duration::from_secs(20))
            .expect("the other uid's connection is relayed");
        s.write_all(b"!").unwrap();
        servers.push(s);
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut text = String::new();
    while seen.len() < 3 {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        seen = text
            .lines()
            .filter_map(|l| l.split("gate-client: ").nth(1))
            .map(|w| w.split_whitespace().next().unwrap_or("").to_string())
            .collect();
    }
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(seen, ["relayed", "relayed", "closed"], "{text}");
    let s = g.stats();
    assert_eq!((s.accepted, s.refused), (8, 4));
    eventually(|| g.stats().live == 2);
}

/// Not a test of its own: per_uid_limit_refuses_only_that_uid runs this
/// binary as another user with IOMMUD_GATE_CLIENT set, and this connects
/// that many clients, one after the other, printing for each whether it
/// was relayed (a byte came) or closed, and holds them until stdin closes.
#[test]
fn client_process() {
    let Ok(path) = std::env::var("IOMMUD_GATE_CLIENT") else {
        return;
    };
    let n: usize = std::env::var("IOMMUD_GATE_CLIENTS")
        .unwrap()
        .parse()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..n {
        let mut c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        let what = match c.read(&mut b) {
            Ok(1) => "relayed",
            _ => "closed",
        };
        println!("gate-client: {what}");
        held.push(c);
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let dir = scratch("idle");
    let cfg = GateConfig {
        idle_timeout: Some(Duration::from_millis(400)),
        ..config()
    };
    let (g, public, upstream) = gate_with(&dir, "iommud-idle", cfg);
    let mut quiet = UnixStream::connect(&public).unwrap();
    let (mut quiet_server, _) = upstream.accept().unwrap();
    let mut busy = UnixStream::connect(&public).unwrap();
    let (mut busy_server, _) = upstream.accept().unwrap();
    quiet.write_all(b"hello").unwrap();
    quiet_server.read_exact(&mut [0u8; 5]).unwrap();
    let started = Instant::now();
    // The busy one moves a byte every 20 ms for a second.
    let mut b = [0u8; 1];
    while started.elapsed() < Duration::from_secs(1) {
        busy.write_all(b"x").unwrap();
        busy_server.read_exact(&mut b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closed_within(&mut quiet, Duration::from_secs(5)));
    assert!(closed_within(&mut quiet_server, Duration::from_secs(5)));
    busy.write_all(b"y").unwrap();
    busy_server.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y", "the busy connection is still relayed");
    let s = g.stats();
    assert_eq!((s.live, s.idle_closed), (1, 1));
}

#[test]
fn one_thread_relays_many_connections() {
    if !isolated("one_thread_relays_many_connections") {
        return;
    }
    // Four descriptors per connection here: client, server and the gate's two.
    let n = ((raise_fd_limit() as usize).saturating_sub(100) / 4).min(500);
    assert!(n >= 100, "too few descriptors for the test");
    let dir = scratch("threads");
    let (before, _) = threads("iommud-gate");
    let (g, public, upstream) = gate(&dir, "iommud-threads");
    // A thread names itself once it runs.
    eventually(|| threads("iommud-gate").1 == 1);
    assert_eq!(threads("iommud-gate"), (before + 1, 1));
    let mut pairs = Vec::new();
    for k in 0..n {
        let mut c = UnixStream::connect(&public).unwrap();
        let (mut s, _) = upstream.accept().unwrap();
        c.write_all(&[k as u8]).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], k as u8);
        pairs.push((c, s));
    }
    assert_eq!(g.stats().live, n);
    assert_eq!(
        threads("iommud-gate"),
        (before + 1, 1),
        "no thread per connection"
    );
    drop(pairs);
    eventually(|| g.stats().live == 0);
    assert_eq!(threads("iommud-gate").0, before + 1);
}

#[test]
fn running_out_of_descriptors_pauses_without_spinning() {
    if !isolated("running_out_of_descriptors_pauses_without_spinning") {
        return;
    }
    const CLIENTS: usize = 40;
    let dir = scratch("emfile");
    let (g, public, upstream) = gate(&dir, "iommud-emfile");
    // The clients' sockets are made first: connecting them needs no new
    // descriptor once the limit is low.
    let socks: Vec<OwnedFd> = (0..CLIENTS)
        .map(|_| {
            // SAFETY: plain socket creation, owned at once.
            let fd =
                unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            assert!(fd >= 0);
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect();
    let mut stat = thread_stat("iommud-gate");
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let saved = lim;
    // Room for three connections (two descriptors each): the limit below
    // which exactly six descriptor numbers are free (read_dir's own is
    // closed again by now).
    let mut free = 0;
    let mut limit = 0;
    while free < 6 {
        free += usize::from(!open.contains(&limit));
        limit += 1;
    }
    lim.rlim_cur = limit;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let (addr, len) = {
        let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        a.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in std::os::unix::ffi::OsStrExt::as_bytes(public.as_os_str())
            .iter()
            .enumerate()
        {
            a.sun_path[i] = *b as libc::c_char;
        }
        (
            a,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    for s in &socks {
        // SAFETY: addr is an initialised sockaddr_un.
        let rc = unsafe {
            libc::connect(
                s.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
    let clients: Vec<UnixStream> = socks.into_iter().map(UnixStream::from).collect();
    eventually(|| g.stats().fd_pauses >= 1);
    let cpu0 = thread_cpu(&mut stat);
    std::thread::sleep(Duration::from_secs(1));
    let spent = thread_cpu(&mut stat) - cpu0;
    let stalled: GateStats = g.stats();
    eprintln!("gate CPU over 1 s out of descriptors: {spent:?}; {stalled:?}");
    assert!(
        spent < Duration::from_millis(150),
        "the gate spent {spent:?} of a second waiting for descriptors"
    );
    assert!(
        stalled.live >= 1 && stalled.live < CLIENTS,
        "{stalled:?}: some relayed, the rest waiting"
    );
    assert_eq!((stalled.failed, stalled.refused), (0, 0), "nobody dropped");
    // Closing a relayed connection frees descriptors: the gate takes the
    // next client at once.
    let accepted = stalled.accepted;
    let mut clients = clients;
    let mut relayed: Vec<UnixStream> = Vec::new();
    while relayed.len() < stalled.live {
        // The first ones in the backlog were accepted first.
        relayed.push(clients.remove(0));
    }
    drop(relayed.remove(0));
    eventually(|| g.stats().accepted > accepted);
    // With the limit back, the pause ends on its timer and every client is
    // relayed; nobody was dropped.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) }, 0);
    eventually(|| g.stats().accepted == CLIENTS as u64);
    let s = g.stats();
    assert_eq!((s.failed, s.refused, s.live), (0, 0, CLIENTS - 1));
    // Every relayed client reaches the upstream.
    upstream.set_nonblocking(true).unwrap();
    let mut servers = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers < CLIENTS && Instant::now() < deadline {
        match upstream.accept() {
            Ok(_) => servers += 1,
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    assert_eq!(
        servers, CLIENTS,
        "every relayed connection reached the server"
    );
    drop(clients);
}
