//! Keeping a session's lease alive in the background, as the Python client's
//! `iommud_client.lease` does.
//!
//! The daemon reaps a session whose lease ran out (30 s after its last call
//! by default) unless a `WatchSession` stream is open: while one is, the
//! session is never reaped. A [`crate::Session`] therefore keeps one such
//! stream open on a tokio task, and reopens it when it breaks:
//!
//! - A transport failure (UNAVAILABLE without the daemon's `ErrorInfo`: the
//!   daemon restarting, the socket gone, GOAWAY) is retried every
//!   `transport_retry`. A daemon restarted with `--journal` brings the
//!   session back with its token, and the next stream finds it.
//! - Anything else the daemon answers (ESHUTDOWN while it drains, EACCES,
//!   ...) and a stream that ends cleanly are retried with capped, jittered
//!   exponential backoff, the cap well inside the lease.
//! - A stream that delivers no heartbeat for `stall_after` (a connection
//!   that died silently) is dropped and reopened.
//! - ESRCH is final: the session is gone and nothing brings it back.
//!
//! The task stops for good on ESRCH, when the session is closed or its
//! keepalive stopped, and when the [`crate::Session`] is dropped (nobody holds
//! the session any more, so its lease may run out).

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::metadata::AsciiMetadataValue;

use crate::error::{errno, Error};
use crate::pb;
use crate::{Stub, SESSION_METADATA_KEY};

/// The keeper's timing, derived from the lease by [`KeepalivePolicy::for_lease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepalivePolicy {
    /// The heartbeat period asked of the daemon (WatchSession's `interval_ms`).
    pub interval: Duration,
    /// A stream with no heartbeat for this long is taken for dead and reopened.
    pub stall_after: Duration,
    /// The first delay before reopening a stream the daemon refused or ended;
    /// it doubles up to `backoff_max` and starts over after a heartbeat.
    pub backoff_initial: Duration,
    /// The longest such delay.
    pub backoff_max: Duration,
    /// The delay after a transport failure.
    pub transport_retry: Duration,
}

impl KeepalivePolicy {
    /// Heartbeats 5 times a lease (0.1 s ..= 10 s), a stall after 3 missed
    /// heartbeats (at least 1 s), and retries never further apart than a
    /// quarter of the lease (0.2 s ..= 5 s), so a stream that broke is back
    /// well before the daemon could reap the session.
    pub fn for_lease(lease_seconds: u32) -> KeepalivePolicy {
        let lease = f64::from(lease_seconds).max(0.5);
        let interval = (lease / 5.0).clamp(0.1, 10.0);
        KeepalivePolicy {
            interval: Duration::from_secs_f64(interval),
            stall_after: Duration::from_secs_f64((3.0 * interval).max(1.0)),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs_f64((lease / 4.0).clamp(0.2, 5.0)),
            transport_retry: Duration::from_millis(200),
        }
    }
}

/// Why a keeper stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `Session::close` or `Session::stop_keepalive`.
    Closed,
    /// The daemon answered ESRCH: the session no longer exists.
    SessionGone,
    /// The `Session` was dropped.
    Released,
}

/// A snapshot of a keeper.
#[derive(Clone, Debug, Default)]
pub struct KeepaliveStatus {
    /// The keeper has not stopped for good.
    pub running: bool,
    /// A stream is open and has delivered a heartbeat.
    pub connected: bool,
    /// WatchSession streams opened so far (1 + reopenings).
    pub streams: u64,
    /// Heartbeats received over all streams.
    pub heartbeats: u64,
    /// When the last heartbeat arrived.
    pub last_heartbeat: Option<Instant>,
    /// The most recent failure, transient or final (kept after a successful
    /// reopen; `connected` says whether all is well now).
    pub last_error: Option<Error>,
    /// Why the keeper stopped for good, or `None` while it runs.
    pub stop_reason: Option<StopReason>,
}

/// The running keeper of one session.
pub(crate) struct LeaseKeeper {
    status: watch::Receiver<KeepaliveStatus>,
    stop: watch::Sender<Option<StopReason>>,
    task: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts the keeper on the current tokio runtime.
    pub(crate) fn start(
        stub: Stub,
        token: AsciiMetadataValue,
        policy: KeepalivePolicy,
    ) -> LeaseKeeper {
        let (status_tx, status) = watch::channel(KeepaliveStatus {
            running: true,
            ..Default::default()
        });
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(run(stub, token, policy, status_tx, stop_rx));
        LeaseKeeper {
            status,
            stop,
            task: Some(task),
        }
    }

    pub(crate) fn status(&self) -> KeepaliveStatus {
        self.status.borrow().clone()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<KeepaliveStatus> {
        self.status.clone()
    }

    /// Asks the task to stop (the first reason given is the one that counts).
    pub(crate) fn signal(&self, reason: StopReason) {
        self.stop.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Stops the task and waits for it to end.
    pub(crate) async fn stop(&mut self, reason: StopReason) {
        self.signal(reason);
        if let Some(task) = self.task.take() {
            // The task only ends by returning; a panic in it is a bug worth seeing.
            if let Err(e) = task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.signal(StopReason::Released);
    }
}

/// A small xorshift generator: jitter needs no cryptographic quality, and
/// this avoids a dependency.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Jitter(u64::from(nanos) | 1)
    }

    /// `delay` shortened by up to half.
    fn apply(&mut self, delay: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        delay.mul_f64(0.5 + 0.5 * unit)
    }
}

enum Outcome {
    /// The stream ended: cleanly (`None`) or with this error.
    Ended(Option<Error>),
    /// The keeper was told to stop.
    Stopped,
}

async fn run(
    mut stub: Stub,
    token: AsciiMetadataValue,
    policy: KeepalivePolicy,
    status: watch::Sender<KeepaliveStatus>,
    mut stop: watch::Receiver<Option<StopReason>>,
) {
    let mut jitter = Jitter::new();
    let mut backoff = policy.backoff_initial;
    let interval_ms = u32::try_from(policy.interval.as_millis())
        .unwrap_or(u32::MAX)
        .max(100);
    loop {
        if stop.borrow_and_update().is_some() {
            break;
        }
        status.send_modify(|s| {
            s.streams += 1;
            s.connected = false;
        });
        let mut request = tonic::Request::new(pb::WatchSessionRequest { interval_ms });
        request
            .metadata_mut()
            .insert(SESSION_METADATA_KEY, token.clone());
        let outcome = tokio::select! {
            _ = stop.changed() => Outcome::Stopped,
            outcome = stream_once(&mut stub, request, &policy, &status, &mut backoff) => outcome,
        };
        let error = match outcome {
            Outcome::Stopped => break,
            Outcome::Ended(error) => error,
        };
        status.send_modify(|s| {
            s.connected = false;
            if error.is_some() {
                s.last_error.clone_from(&error);
            }
        });
        let delay = match &error {
            Some(e) if !e.is_transport() && e.errno() == errno::ESRCH => {
                stop_for_good(&status, StopReason::SessionGone);
                return;
            }
            Some(e) if e.is_transport() && e.code() == tonic::Code::Unavailable => {
                policy.transport_retry
            }
            _ => {
                let delay = backoff;
                backoff = (backoff * 2).min(policy.backoff_max);
                delay
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(jitter.apply(delay)) => {}
        }
    }
    let reason = stop.borrow().unwrap_or(StopReason::Released);
    stop_for_good(&status, reason);
}

/// Opens one WatchSession stream and reads heartbeats until it ends or stalls.
async fn stream_once(
    stub: &mut Stub,
    request: tonic::Request<pb::WatchSessionRequest>,
    policy: &KeepalivePolicy,
    status: &watch::Sender<KeepaliveStatus>,
    backoff: &mut Duration,
) -> Outcome {
    let stalled = || {
        Error::local(
            errno::ETIMEDOUT,
            format!(
                "no heartbeat on the WatchSession stream for {:.1} s; reopening it",
                policy.stall_after.as_secs_f64()
            ),
        )
    };
    let mut stream =
        match tokio::time::timeout(policy.stall_after, stub.watch_session(request)).await {
            Err(_) => return Outcome::Ended(Some(stalled())),
            Ok(Err(status)) => return Outcome::Ended(Some(Error::from(status))),
            Ok(Ok(response)) => response.into_inner(),
        };
    let mut beats = 0u64;
    loop {
        match tokio::time::timeout(policy.stall_after, stream.message()).await {
            Err(_) => return Outcome::Ended(Some(stalled())),
            Ok(Err(status)) => return Outcome::Ended(Some(Error::from(status))),
            Ok(Ok(None)) => return Outcome::Ended(None),
            Ok(Ok(Some(_heartbeat))) => {
                if beats == 0 {
                    *backoff = policy.backoff_initial; // the daemon is back: start over
                }
                beats += 1;
                status.send_modify(|s| {
                    s.heartbeats += 1;
                    s.connected = true;
                    s.last_heartbeat = Some(Instant::now());
                });
            }
        }
    }
}

fn stop_for_good(status: &watch::Sender<KeepaliveStatus>, reason: StopReason) {
    status.send_modify(|s| {
        s.running = false;
        s.connected = false;
        s.stop_reason.get_or_insert(reason);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_scales_with_the_lease_within_bounds() {
        let p = KeepalivePolicy::for_lease(30);
        assert_eq!(p.interval, Duration::from_secs(6));
        assert_eq!(p.stall_after, Duration::from_secs(18));
        assert_eq!(p.backoff_max, Duration::from_secs_f64(5.0));
        let short = KeepalivePolicy::for_lease(1);
        assert_eq!(short.interval, Duration::from_millis(200));
        assert_eq!(short.stall_after, Duration::from_secs(1));
        assert_eq!(short.backoff_max, Duration::from_millis(250));
        let long = KeepalivePolicy::for_lease(3600);
        assert_eq!(long.interval, Duration::from_secs(10));
        assert_eq!(long.stall_after, Duration::from_secs(30));
    }

    #[test]
    fn jitter_only_shortens_a_delay_by_up_to_half() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let d = j.apply(Duration::from_secs(1));
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }
}
