//! The session keepalive at work, in two scenarios (tests/test_rust_client.py
//! runs both against real daemons):
//!
//!     lease idle     a daemon run with --debug-clock 1: a kept session outlives
//!                    a jump of an hour on the lease clock, one without keepalive
//!                    is reaped (ESRCH), and a keeper whose session is closed
//!                    elsewhere stops for good
//!     lease restart  prints "ready", waits for a line on stdin (meanwhile the
//!                    daemon is restarted with its journal), then proves the
//!                    keeper reopened its stream and the session survived
//!
//! The endpoint is IOMMUD_ENDPOINT, then the daemon's default socket.

use std::process::ExitCode;
use std::time::Duration;

use iommud_client::{pb, Client, ClientOptions, Error, Prot, StopReason};

const WAIT: Duration = Duration::from_secs(30);
const USER_VA: u64 = 0x7f00_0000_0000;

fn show(e: &Error) -> String {
    format!("{} (errno {})", e.errno_name(), e.errno())
}

async fn idle(client: &Client) -> Result<(), Error> {
    let kept = client.open_session("rust-kept", 0).await?;
    let bare_client = Client::connect_with(
        &client.target().to_string(),
        ClientOptions {
            session_keepalive: false,
            ..ClientOptions::default()
        },
    )
    .await?;
    let bare = bare_client.open_session("rust-bare", 0).await?;
    let ctx = kept.open_context().await?;
    let ioas = ctx.ioas_alloc().await?;
    ctx.ioas_map(ioas, USER_VA, 0x1000, Some(0x1000), Prot::READ_WRITE)
        .await?;
    bare.open_context().await?;
    let connected = kept.wait_keepalive(WAIT, |s| s.connected).await.is_some();
    println!("kept: keepalive connected {connected}");
    println!(
        "bare: keepalive {:?}",
        bare.keepalive_status().map(|s| s.running)
    );

    let reaped = kept.debug_advance_clock(3600.0).await?;
    println!("clock: +3600 s, {reaped} reaped");
    let e = bare
        .keepalive()
        .await
        .expect_err("the bare session was reaped");
    println!("bare: {}", show(&e));
    let t = ctx.translate(ioas, 0x1000).await?;
    println!("kept: translate {:#x} -> {:#x}", t.iova, t.pa);

    // Closed behind the keeper's back: its stream ends, and reopening it is ESRCH.
    client
        .raw()
        .close_session(kept.request(pb::CloseSessionRequest {}))
        .await
        .map_err(Error::from)?;
    let status = kept.wait_keepalive(WAIT, |s| !s.running).await;
    match status {
        Some(s) => {
            let reason = s.stop_reason.map(|r| format!("{r:?}")).unwrap_or_default();
            let error = s.last_error.as_ref().map(show).unwrap_or_default();
            println!("kept: keeper stopped: {reason}, last error {error}");
            assert_eq!(s.stop_reason, Some(StopReason::SessionGone));
        }
        None => println!("kept: keeper still running"),
    }
    Ok(())
}

async fn restart(client: &Client) -> Result<(), Error> {
    let session = client.open_session("rust-restart", 0).await?;
    let ctx = session.open_context().await?;
    let ioas = ctx.ioas_alloc().await?;
    ctx.ioas_map(ioas, USER_VA, 0x20_0000, Some(0x10_0000), Prot::READ_WRITE)
        .await?;
    let ready = session.wait_keepalive(WAIT, |s| s.connected).await;
    println!("ready: keepalive connected {}", ready.is_some());
    let before = ready.map_or(0, |s| s.streams);
    // Wait for the go-ahead off the runtime's thread: the keeper runs meanwhile.
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .expect("the stdin reader does not panic")
    .map_err(|e| Error::from(tonic::Status::internal(format!("stdin: {e}"))))?;
    if line.trim() != "go" {
        println!("restart: expected \"go\" on stdin, read {line:?}");
        return Ok(());
    }
    let status = session
        .wait_keepalive(WAIT, |s| s.streams > before && s.connected)
        .await;
    match status {
        Some(s) => {
            println!("reopened: connected, running {}", s.running);
            println!("streams: {}", s.streams);
        }
        None => println!("reopened: no, {:?}", session.keepalive_status()),
    }
    let t = ctx.translate(ioas, 0x18_0000).await?;
    println!("session: translate {:#x} -> {:#x}", t.iova, t.pa);
    let fds = session.close().await?;
    println!("session: closed, {fds} fds");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let client = match Client::connect_default().await {
        Ok(client) => client,
        Err(e) => {
            println!("lease: failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match mode.as_str() {
        "idle" => idle(&client).await,
        "restart" => restart(&client).await,
        _ => {
            eprintln!("usage: lease idle|restart");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => {
            println!("lease {mode}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("lease {mode}: failed: {e}");
            ExitCode::FAILURE
        }
    }
}
