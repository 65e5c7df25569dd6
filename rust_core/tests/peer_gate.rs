//! The peer gate against real sockets: credentials recorded per connection,
//! the relay's client address naming the connection, bytes relayed both
//! ways, entries retired with their connection, and stop() ending it all.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iommud_core::peer_gate::{peer_cred, PeerGate};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommud-gate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Poll `cond` until it holds, failing after a generous deadline.
fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition never held");
        std::thread::yield_now();
    }
}

fn gate(dir: &Path, tag: &str) -> (PeerGate, PathBuf, UnixListener) {
    let public = dir.join("public.sock");
    let private = dir.join("private.sock");
    let upstream = UnixListener::bind(&private).unwrap();
    let g = PeerGate::start(UnixListener::bind(&public).unwrap(), private, tag.into()).unwrap();
    (g, public, upstream)
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
    for n in 1..=2u64 {
        let mut client = UnixStream::connect(&public).unwrap();
        let (mut server, addr) = upstream.accept().unwrap();
        let name = addr
            .as_abstract_name()
            .expect("relay connects from an abstract name");
        assert_eq!(name, format!("{tag}/{n}").as_bytes());
        let peer = format!("unix-abstract:{tag}/{n}");
        assert_eq!(g.connection_of(&peer), Some(n));
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Recorded before the first byte was relayed, so any call finds it.
        let cred = g.peer(n).expect("live connection has credentials");
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
        eventually(|| g.peer(n).is_none());
    }
    assert_eq!(g.stats(), (2, 0, 0));
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
    for peer in [
        "unix-abstract:iommud-abc/x",
        "unix-abstract:iommud-abd/1",
        "unix:/tmp/x",
        "ipv4:127.0.0.1:5",
        "unix-abstract:iommud-abc1",
        "unix-abstract:iommud-abc/",
    ] {
        assert_eq!(g.connection_of(peer), None, "{peer}");
    }
    assert_eq!(g.peer(1), None);
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
    eventually(|| g.stats().2 == 0);
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
    eventually(|| g.stats() == (1, 1, 0));
}
