//! The typed layer: a connection, sessions (processes), and their fds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::endpoint::{default_endpoint, Target};
use crate::error::{errno, Error, Result};
use crate::keepalive::{KeepalivePolicy, KeepaliveStatus, LeaseKeeper, StopReason};
use crate::{pb, uapi, Stub};

/// One unary call of the stub method `$method` through `$caller.unary`
/// (a [`Client`] with a token, or a session's shared part).
macro_rules! rpc {
    ($caller:expr, $method:ident, $($arg:expr),+) => {
        $caller.unary($($arg),+, |mut stub, request| async move { stub.$method(request).await })
    };
}

/// The request metadata key that carries the session token.
pub const SESSION_METADATA_KEY: &str = "iommud-session";

/// The daemon's default `max_message_bytes` (16 MiB): the largest message it
/// sends. tonic's own decoding limit is 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How a [`Client`] connects and calls.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline of every unary call (`None`: no deadline). Streams have none.
    pub timeout: Option<Duration>,
    /// The largest message decoded or encoded, in bytes: at least the
    /// daemon's `max_message_bytes` (GetInfo's `limits.max_message_bytes`).
    pub max_message_bytes: usize,
    /// HTTP/2 PING period on an idle connection: at least the daemon's
    /// `keepalive_min_client_ping_seconds` (5 s by default), or it answers
    /// GOAWAY `too_many_pings`.
    pub http2_keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is dropped.
    pub http2_keepalive_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Whether sessions opened or attached through the client keep their
    /// lease alive in the background (a WatchSession stream).
    pub session_keepalive: bool,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Some(Duration::from_secs(30)),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            session_keepalive: true,
        }
    }
}

/// A connection to one iommud daemon. Cloning is cheap and shares the
/// connection.
#[derive(Clone)]
pub struct Client {
    stub: Stub,
    channel: Channel,
    target: Target,
    options: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `IOMMUD_ENDPOINT`, or to the daemon's default socket.
    pub async fn connect_default() -> Result<Client> {
        Client::connect(&default_endpoint()).await
    }

    /// Connects to `endpoint` (`unix:/path`, a socket path, or `host:port`).
    pub async fn connect(endpoint: &str) -> Result<Client> {
        Client::connect_with(endpoint, ClientOptions::default()).await
    }

    /// Connects with `options`; fails at once (EIO, a transport error) when
    /// nothing listens there. Later disconnections are repaired on the next
    /// call.
    pub async fn connect_with(endpoint: &str, options: ClientOptions) -> Result<Client> {
        let target = Target::parse(endpoint)?;
        let builder = endpoint_builder(&target, &options)?;
        let channel = match &target {
            Target::Unix(path) => {
                builder
                    .connect_with_connector(unix_connector(path.clone()))
                    .await
            }
            Target::Tcp(_) => builder.connect().await,
        }
        .map_err(|e| {
            Error::local(
                errno::EIO,
                format!("transport error: cannot connect to {target}: {}", chain(&e)),
            )
        })?;
        Ok(Client::over(channel, target, options))
    }

    /// Like [`Client::connect_with`], but connects on the first call: for a
    /// VMM that may start before the daemon.
    pub fn connect_lazy(endpoint: &str, options: ClientOptions) -> Result<Client> {
        let target = Target::parse(endpoint)?;
        let builder = endpoint_builder(&target, &options)?;
        let channel = match &target {
            Target::Unix(path) => builder.connect_with_connector_lazy(unix_connector(path.clone())),
            Target::Tcp(_) => builder.connect_lazy(),
        };
        Ok(Client::over(channel, target, options))
    }

    fn over(channel: Channel, target: Target, options: ClientOptions) -> Client {
        let stub = Stub::new(channel.clone())
            .max_decoding_message_size(options.max_message_bytes)
            .max_encoding_message_size(options.max_message_bytes);
        Client {
            stub,
            channel,
            target,
            options,
        }
    }

    /// The endpoint connected to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The generated stub, with this client's message limits: for the calls
    /// the typed layer does not wrap. Build the request with
    /// [`Session::request`] to send it as a session.
    pub fn raw(&self) -> Stub {
        self.stub.clone()
    }

    /// The underlying tonic channel (for other services on the same
    /// connection, such as grpc.health.v1).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn request<T>(&self, message: T, token: Option<&AsciiMetadataValue>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = self.options.timeout {
            request.set_timeout(timeout);
        }
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert(SESSION_METADATA_KEY, token.clone());
        }
        request
    }

    /// One unary call: `call` gets a stub and the request.
    async fn unary<Req, Resp, Fut>(
        &self,
        token: Option<&AsciiMetadataValue>,
        message: Req,
        call: impl FnOnce(Stub, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let request = self.request(message, token);
        call(self.stub.clone(), request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(Error::from)
    }

    /// GetInfo: the daemon's version, limits and counts (no session needed).
    pub async fn info(&self) -> Result<pb::GetInfoResponse> {
        rpc!(self, get_info, None, pb::GetInfoRequest {}).await
    }

    /// Echo: `payload` back, through the same path as every call.
    pub async fn echo(&self, payload: Vec<u8>) -> Result<Vec<u8>> {
        let resp = rpc!(self, echo, None, pb::EchoRequest { payload }).await?;
        Ok(resp.payload)
    }

    /// The host's devices (`lspci -k`); no session needed.
    pub async fn list_devices(&self) -> Result<Vec<pb::HostDevice>> {
        list_devices(self, None).await
    }

    /// The host's IOMMU groups; no session needed.
    pub async fn list_groups(&self) -> Result<Vec<pb::IommuGroup>> {
        list_groups(self, None).await
    }

    /// Starts a session (a process). `lease_seconds` 0 takes the daemon's
    /// default. With [`ClientOptions::session_keepalive`] (the default) the
    /// session keeps its lease alive until it is closed or dropped.
    pub async fn open_session(&self, client_name: &str, lease_seconds: u32) -> Result<Session> {
        let request = pb::OpenSessionRequest {
            client_name: client_name.to_owned(),
            lease_seconds,
        };
        let resp = rpc!(self, open_session, None, request).await?;
        Session::new(
            self.clone(),
            resp.token,
            resp.session_id,
            resp.lease_seconds,
            self.options.session_keepalive,
        )
    }

    /// Uses an existing session by its token (for example from another
    /// process); kept alive from here as [`Client::open_session`]'s are.
    pub async fn attach_session(&self, token: &str) -> Result<Session> {
        let value = token_value(token)?;
        let lease = rpc!(self, keep_alive, Some(&value), pb::KeepAliveRequest {}).await?;
        let info = rpc!(self, get_info, Some(&value), pb::GetInfoRequest {}).await?;
        Session::new(
            self.clone(),
            token.to_owned(),
            info.session_id,
            lease.lease_seconds,
            self.options.session_keepalive,
        )
    }
}

fn endpoint_builder(target: &Target, options: &ClientOptions) -> Result<Endpoint> {
    let uri = match target {
        // The authority is not used on a UNIX socket; gRPC's own clients send "localhost".
        Target::Unix(_) => "http://localhost".to_owned(),
        Target::Tcp(uri) => uri.clone(),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::local(errno::EINVAL, format!("endpoint {target}: {e}")))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.http2_keepalive_interval)
        .keep_alive_timeout(options.http2_keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    Ok(endpoint)
}

type UnixConnect =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send>>;

fn unix_connector(
    path: std::path::PathBuf,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = UnixConnect,
> + Send
       + Clone {
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        Box::pin(async move { UnixStream::connect(path).await.map(TokioIo::new) }) as UnixConnect
    })
}

/// An error and its sources, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn token_value(token: &str) -> Result<AsciiMetadataValue> {
    token
        .parse()
        .map_err(|_| Error::local(errno::EINVAL, "a session token is printable ASCII"))
}

async fn list_devices(
    client: &Client,
    token: Option<&AsciiMetadataValue>,
) -> Result<Vec<pb::HostDevice>> {
    let resp = rpc!(client, list_devices, token, pb::ListDevicesRequest {}).await?;
    Ok(resp.devices)
}

async fn list_groups(
    client: &Client,
    token: Option<&AsciiMetadataValue>,
) -> Result<Vec<pb::IommuGroup>> {
    let resp = rpc!(client, list_groups, token, pb::ListGroupsRequest {}).await?;
    Ok(resp.groups)
}

// -- sessions ---------------------------------------------------------------------------------

/// What a session's handles share: the connection and the token.
struct SessionInner {
    client: Client,
    token: String,
    token_value: AsciiMetadataValue,
    session_id: String,
    lease_seconds: u32,
}

impl SessionInner {
    async fn unary<Req, Resp, Fut>(
        &self,
        message: Req,
        call: impl FnOnce(Stub, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.client
            .unary(Some(&self.token_value), message, call)
            .await
    }
}

/// A session: the analogue of a process, owning an fd table.
///
/// With keepalive (the client's default) a tokio task holds a WatchSession
/// stream open and reopens it after transient failures, so the session lives
/// for as long as this value does (see the `keepalive` module doc). It stops
/// when the session is closed, the keepalive stopped, or this value dropped.
/// Handles made from it ([`Context`], [`DeviceFd`], ...) do not keep it
/// alive.
pub struct Session {
    inner: Arc<SessionInner>,
    keeper: Option<LeaseKeeper>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.inner.session_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn new(
        client: Client,
        token: String,
        session_id: String,
        lease_seconds: u32,
        keepalive: bool,
    ) -> Result<Session> {
        let token_value = token_value(&token)?;
        let mut session = Session {
            inner: Arc::new(SessionInner {
                client,
                token,
                token_value,
                session_id,
                lease_seconds,
            }),
            keeper: None,
        };
        if keepalive {
            session.start_keepalive(KeepalivePolicy::for_lease(lease_seconds));
        }
        Ok(session)
    }

    /// The secret token (send it to another process to share the session).
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The public, non-secret id the daemon's logs and admin view show.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// The lease in force, in seconds.
    pub fn lease_seconds(&self) -> u32 {
        self.inner.lease_seconds
    }

    /// The client the session calls through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// `message` as a request of this session (its token, the client's
    /// deadline), for a call through [`Client::raw`].
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.inner
            .client
            .request(message, Some(&self.inner.token_value))
    }

    // -- the lease -----------------------------------------------------------------------------

    /// Keeps the lease alive in the background with `policy` (a no-op while
    /// a keeper runs). Needs a tokio runtime.
    pub fn start_keepalive(&mut self, policy: KeepalivePolicy) {
        if self.keeper.as_ref().is_some_and(|k| k.status().running) {
            return;
        }
        self.keeper = Some(LeaseKeeper::start(
            self.inner.client.raw(),
            self.inner.token_value.clone(),
            policy,
        ));
    }

    /// Stops keeping the lease alive and waits for the keeper to end: the
    /// lease runs out `lease_seconds` after the last call.
    pub async fn stop_keepalive(&mut self) {
        if let Some(keeper) = self.keeper.as_mut() {
            keeper.stop(StopReason::Closed).await;
        }
    }

    /// A snapshot of the keepalive, or `None` without one.
    pub fn keepalive_status(&self) -> Option<KeepaliveStatus> {
        self.keeper.as_ref().map(LeaseKeeper::status)
    }

    /// Waits until `predicate` holds for the keepalive's status, at most
    /// `timeout`; the status that satisfied it, or `None` (timed out, no
    /// keeper, or the keeper ended without it holding).
    pub async fn wait_keepalive(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&KeepaliveStatus) -> bool,
    ) -> Option<KeepaliveStatus> {
        let mut rx: watch::Receiver<KeepaliveStatus> = self.keeper.as_ref()?.watch();
        let result = match tokio::time::timeout(timeout, rx.wait_for(|s| predicate(s))).await {
            Ok(Ok(status)) => Some(status.clone()),
            _ => None,
        };
        result
    }

    /// KeepAlive: renews the lease once; returns it in seconds.
    pub async fn keepalive(&self) -> Result<u32> {
        let resp = rpc!(self.inner, keep_alive, pb::KeepAliveRequest {}).await?;
        Ok(resp.lease_seconds)
    }

    /// Stops the keepalive, then closes every fd of the session (process
    /// exit); returns how many were closed.
    pub async fn close(mut self) -> Result<u32> {
        self.stop_keepalive().await;
        let resp = rpc!(self.inner, close_session, pb::CloseSessionRequest {}).await?;
        Ok(resp.closed_fds)
    }

    /// GetInfo with this session's counts.
    pub async fn info(&self) -> Result<pb::GetInfoResponse> {
        rpc!(self.inner, get_info, pb::GetInfoRequest {}).await
    }

    /// DebugAdvanceClock: ages every lease by `seconds` and returns the
    /// sessions reaped (admin, on a daemon run with `debug_clock = 1`).
    pub async fn debug_advance_clock(&self, seconds: f64) -> Result<u32> {
        let request = pb::DebugAdvanceClockRequest { seconds };
        let resp = rpc!(self.inner, debug_advance_clock, request).await?;
        Ok(resp.reaped)
    }

    // -- fds -------------------------------------------------------------------------------------

    /// `open("/dev/iommu")`: a new iommufd context.
    pub async fn open_context(&self) -> Result<Context> {
        let resp = rpc!(self.inner, open_context, pb::OpenContextRequest {}).await?;
        Ok(self.context(resp.iommufd))
    }

    /// A handle on an iommufd context fd the session already holds.
    pub fn context(&self, iommufd: i32) -> Context {
        Context {
            session: self.inner.clone(),
            iommufd,
        }
    }

    /// `open("/dev/vfio/devices/vfioN")` of the host device `name` (a PCI
    /// address such as `0000:03:00.0`, on vfio-pci).
    pub async fn open_device(&self, name: &str) -> Result<DeviceFd> {
        let request = pb::OpenDeviceRequest {
            name: name.to_owned(),
        };
        let resp = rpc!(self.inner, open_device, request).await?;
        Ok(DeviceFd {
            session: self.inner.clone(),
            device_fd: resp.device_fd,
            name: name.to_owned(),
        })
    }

    /// `open("/dev/vfio/vfio")`: a legacy VFIO container (also an iommufd).
    pub async fn open_container(&self) -> Result<Container> {
        let resp = rpc!(self.inner, open_container, pb::OpenContainerRequest {}).await?;
        Ok(Container {
            session: self.inner.clone(),
            container_fd: resp.container_fd,
        })
    }

    /// `open("/dev/vfio/<group>")`.
    pub async fn open_group(&self, group: u32) -> Result<Group> {
        let resp = rpc!(self.inner, open_group, pb::OpenGroupRequest { group }).await?;
        Ok(Group {
            session: self.inner.clone(),
            group_fd: resp.group_fd,
            group,
        })
    }

    /// `close(fd)` of any fd of the session; returns the objects destroyed.
    pub async fn close_fd(&self, fd: i32) -> Result<u32> {
        let resp = rpc!(self.inner, close_fd, pb::CloseFdRequest { fd }).await?;
        Ok(resp.destroyed_objects)
    }

    /// The host's devices.
    pub async fn list_devices(&self) -> Result<Vec<pb::HostDevice>> {
        list_devices(&self.inner.client, Some(&self.inner.token_value)).await
    }

    /// The host's IOMMU groups.
    pub async fn list_groups(&self) -> Result<Vec<pb::IommuGroup>> {
        list_groups(&self.inner.client, Some(&self.inner.token_value)).await
    }
}

// -- results -----------------------------------------------------------------------------------

/// READABLE and WRITEABLE permission bits of a mapping (`IOMMU_IOAS_MAP_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot(u32);

impl Prot {
    /// No permission (an unmapped address in a batch translation).
    pub const NONE: Prot = Prot(0);
    /// IOMMU_IOAS_MAP_WRITEABLE (2).
    pub const WRITE: Prot = Prot(2);
    /// IOMMU_IOAS_MAP_READABLE (4).
    pub const READ: Prot = Prot(4);
    /// Both.
    pub const READ_WRITE: Prot = Prot(6);

    /// From the wire's bits (other bits are dropped).
    pub fn from_bits(bits: u32) -> Prot {
        Prot(bits & 6)
    }

    /// The wire's bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Devices may read.
    pub fn readable(self) -> bool {
        self.0 & 4 != 0
    }

    /// Devices may write.
    pub fn writeable(self) -> bool {
        self.0 & 2 != 0
    }
}

impl std::ops::BitOr for Prot {
    type Output = Prot;
    fn bitor(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }
}

impl std::fmt::Display for Prot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = if self.readable() { "r" } else { "-" };
        let w = if self.writeable() { "w" } else { "-" };
        write!(f, "{r}{w}")
    }
}

/// Where one IOVA leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The IOVA asked for.
    pub iova: u64,
    /// The address mapped there.
    pub pa: u64,
    /// The area's permissions.
    pub prot: Prot,
}

/// Many IOVAs resolved at once, in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchTranslation {
    /// The address behind each IOVA; 0 where unmapped.
    pub pas: Vec<u64>,
    /// The permissions at each IOVA; [`Prot::NONE`] where unmapped.
    pub prots: Vec<Prot>,
    /// How many IOVAs were mapped.
    pub mapped_count: u64,
}

/// The IOVA ranges a map may use, and the alignment it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IovaRanges {
    /// `(start, last)` pairs, `last` inclusive, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// The alignment of every IOVA and length mapped, in bytes.
    pub alignment: u64,
}

/// One mapping of an IOAS.
pub type Area = pb::Area;

fn pack_u64(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn unpack_u64(data: &[u8]) -> Vec<u64> {
    data.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

// -- contexts -----------------------------------------------------------------------------------

/// One iommufd context (an open `/dev/iommu` fd) of a session.
#[derive(Clone)]
pub struct Context {
    session: Arc<SessionInner>,
    iommufd: i32,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("iommufd", &self.iommufd)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context's fd number in the session.
    pub fn iommufd(&self) -> i32 {
        self.iommufd
    }

    /// `close(iommufd)`: destroys every object of the context; returns how many.
    pub async fn close(self) -> Result<u32> {
        let request = pb::CloseContextRequest {
            iommufd: self.iommufd,
        };
        let resp = rpc!(self.session, close_context, request).await?;
        Ok(resp.destroyed_objects)
    }

    /// IOMMU_DESTROY of object `id`.
    pub async fn destroy(&self, id: u32) -> Result<()> {
        let request = pb::DestroyRequest {
            iommufd: self.iommufd,
            id,
        };
        rpc!(self.session, destroy, request).await?;
        Ok(())
    }

    /// IOMMU_IOAS_ALLOC: a new IOAS; returns its id.
    pub async fn ioas_alloc(&self) -> Result<u32> {
        let request = pb::IoasAllocRequest {
            iommufd: self.iommufd,
            flags: 0,
        };
        let resp = rpc!(self.session, ioas_alloc, request).await?;
        Ok(resp.out_ioas_id)
    }

    /// IOMMU_IOAS_IOVA_RANGES: the usable IOVA ranges and the alignment.
    pub async fn ioas_iova_ranges(&self, ioas_id: u32) -> Result<IovaRanges> {
        let request = pb::IoasIovaRangesRequest {
            iommufd: self.iommufd,
            ioas_id,
            num_iovas: None,
            reserved: 0,
        };
        let resp = rpc!(self.session, ioas_iova_ranges, request).await?;
        Ok(IovaRanges {
            ranges: resp
                .allowed_iovas
                .iter()
                .map(|r| (r.start, r.last))
                .collect(),
            alignment: resp.out_iova_alignment,
        })
    }

    /// IOMMU_IOAS_ALLOW_IOVAS: replaces the allowed list (`(start, last)`
    /// pairs; empty clears it).
    pub async fn ioas_allow_iovas(&self, ioas_id: u32, ranges: &[(u64, u64)]) -> Result<()> {
        let allowed_iovas = ranges
            .iter()
            .map(|&(start, last)| pb::IovaRange { start, last })
            .collect();
        let request = pb::IoasAllowIovasRequest {
            iommufd: self.iommufd,
            ioas_id,
            allowed_iovas,
            reserved: 0,
        };
        rpc!(self.session, ioas_allow_iovas, request).await?;
        Ok(())
    }

    /// IOMMU_IOAS_MAP of `length` bytes at `user_va`: at `iova` (FIXED_IOVA)
    /// or where the daemon chooses (`None`); returns the area's IOVA.
    pub async fn ioas_map(
        &self,
        ioas_id: u32,
        user_va: u64,
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        let fixed = if iova.is_some() {
            pb::IoasMapFlag::FixedIova as u32
        } else {
            0
        };
        let request = pb::IoasMapRequest {
            iommufd: self.iommufd,
            flags: fixed | prot.bits(),
            ioas_id,
            reserved: 0,
            user_va,
            length,
            iova: iova.unwrap_or(0),
            user_pages_missing: false,
        };
        let resp = rpc!(self.session, ioas_map, request).await?;
        Ok(resp.iova)
    }

    /// IoasMapBatch: `(user_va, length)` entries mapped all or nothing, at
    /// IOVAs the daemon chooses; returns them in order.
    pub async fn ioas_map_batch(
        &self,
        ioas_id: u32,
        entries: &[(u64, u64)],
        prot: Prot,
    ) -> Result<Vec<u64>> {
        let user_vas: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let lengths: Vec<u64> = entries.iter().map(|e| e.1).collect();
        let request = pb::IoasMapBatchRequest {
            iommufd: self.iommufd,
            flags: prot.bits(),
            ioas_id,
            reserved: 0,
            user_vas: pack_u64(&user_vas),
            lengths: pack_u64(&lengths),
            iovas: Vec::new(),
        };
        let resp = rpc!(self.session, ioas_map_batch, request).await?;
        Ok(unpack_u64(&resp.iovas))
    }

    /// IOMMU_IOAS_UNMAP of whole areas in `[iova, iova + length)`; returns
    /// the bytes unmapped.
    pub async fn ioas_unmap(&self, ioas_id: u32, iova: u64, length: u64) -> Result<u64> {
        let request = pb::IoasUnmapRequest {
            iommufd: self.iommufd,
            ioas_id,
            iova,
            length,
        };
        let resp = rpc!(self.session, ioas_unmap, request).await?;
        Ok(resp.length)
    }

    /// Unmaps everything (IOVA 0, length 2^64 - 1); returns the bytes unmapped.
    pub async fn ioas_unmap_all(&self, ioas_id: u32) -> Result<u64> {
        self.ioas_unmap(ioas_id, 0, uapi::UNMAP_ALL_LENGTH).await
    }

    /// Translate: the address and permissions behind one IOVA (ENOENT when unmapped).
    pub async fn translate(&self, ioas_id: u32, iova: u64) -> Result<Translation> {
        let request = pb::TranslateRequest {
            iommufd: self.iommufd,
            ioas_id,
            iova,
        };
        let resp = rpc!(self.session, translate, request).await?;
        Ok(Translation {
            iova: resp.iova,
            pa: resp.pa,
            prot: Prot::from_bits(resp.prot),
        })
    }

    /// TranslateBatch: many IOVAs in one call (at most the daemon's
    /// `max_translate_batch`, ENOMEM past it). The reply is 9 bytes per
    /// address: 2^20 addresses need the raised message limit.
    pub async fn translate_batch(&self, ioas_id: u32, iovas: &[u64]) -> Result<BatchTranslation> {
        let request = pb::TranslateBatchRequest {
            iommufd: self.iommufd,
            ioas_id,
            iovas: pack_u64(iovas),
        };
        let resp = rpc!(self.session, translate_batch, request).await?;
        Ok(BatchTranslation {
            pas: unpack_u64(&resp.pas),
            prots: resp
                .prots
                .iter()
                .map(|&p| Prot::from_bits(u32::from(p)))
                .collect(),
            mapped_count: resp.mapped_count,
        })
    }

    /// Every area of the IOAS in IOVA order, fetched page by page (the
    /// daemon answers at most 4096 per call).
    pub async fn list_areas(&self, ioas_id: u32) -> Result<Vec<Area>> {
        let mut areas = Vec::new();
        let mut start_iova = 0;
        loop {
            let request = pb::ListAreasRequest {
                iommufd: self.iommufd,
                ioas_id,
                start_iova,
                max_areas: 0,
            };
            let resp = rpc!(self.session, list_areas, request).await?;
            areas.extend(resp.areas);
            if !resp.more {
                return Ok(areas);
            }
            start_iova = resp.next_iova;
        }
    }

    /// The context's objects.
    pub async fn list_objects(&self) -> Result<Vec<pb::ObjectInfo>> {
        let request = pb::ListObjectsRequest {
            iommufd: self.iommufd,
        };
        let resp = rpc!(self.session, list_objects, request).await?;
        Ok(resp.objects)
    }

    /// IOMMU_HWPT_SET_DIRTY_TRACKING: turns dirty tracking of a paging HWPT
    /// (allocated with `uapi::IOMMU_HWPT_ALLOC_DIRTY_TRACKING`) on, from a
    /// clean state, or off.
    pub async fn hwpt_set_dirty_tracking(&self, hwpt_id: u32, enable: bool) -> Result<()> {
        let request = pb::HwptSetDirtyTrackingRequest {
            iommufd: self.iommufd,
            flags: u32::from(enable),
            hwpt_id,
            reserved: 0,
        };
        rpc!(self.session, hwpt_set_dirty_tracking, request).await?;
        Ok(())
    }

    /// IOMMU_HWPT_GET_DIRTY_BITMAP of `[iova, iova + length)` at `page_size`
    /// bytes per bit: bit k (byte k / 8, bit k % 8) covers
    /// `[iova + k * page_size, +page_size)`. Reading clears the bits unless
    /// `clear` is false (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR). The bitmap of
    /// 128 GiB at 4 KiB pages is 4 MiB: past tonic's default message limit.
    pub async fn hwpt_get_dirty_bitmap(
        &self,
        hwpt_id: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        clear: bool,
    ) -> Result<Vec<u8>> {
        let flags = u32::from(!clear);
        let request = pb::HwptGetDirtyBitmapRequest {
            iommufd: self.iommufd,
            hwpt_id,
            flags,
            reserved: 0,
            iova,
            length,
            page_size,
        };
        let resp = rpc!(self.session, hwpt_get_dirty_bitmap, request).await?;
        Ok(resp.data)
    }

    /// IOMMU_HWPT_ALLOC of a paging HWPT over `pt_id` (an IOAS) for the
    /// IOMMU of `dev_id`, with `flags` (`uapi::IOMMU_HWPT_ALLOC_*`); returns its id.
    pub async fn hwpt_alloc(&self, dev_id: u32, pt_id: u32, flags: u32) -> Result<u32> {
        let request = pb::HwptAllocRequest {
            iommufd: self.iommufd,
            flags,
            dev_id,
            pt_id,
            ..Default::default()
        };
        let resp = rpc!(self.session, hwpt_alloc, request).await?;
        Ok(resp.out_hwpt_id)
    }
}

// -- device fds ---------------------------------------------------------------------------------

/// An open VFIO device fd (`/dev/vfio/devices/vfioN`, or from a group).
#[derive(Clone)]
pub struct DeviceFd {
    session: Arc<SessionInner>,
    device_fd: i32,
    name: String,
}

impl std::fmt::Debug for DeviceFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFd")
            .field("device_fd", &self.device_fd)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DeviceFd {
    /// The fd number in the session.
    pub fn fd(&self) -> i32 {
        self.device_fd
    }

    /// The device's PCI address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DeviceGetInfo: the device, its binding and attachments.
    pub async fn info(&self) -> Result<pb::DeviceGetInfoResponse> {
        let request = pb::DeviceGetInfoRequest {
            device_fd: self.device_fd,
        };
        rpc!(self.session, device_get_info, request).await
    }

    /// VFIO_DEVICE_BIND_IOMMUFD to `ctx` with a fault `cookie`; returns the dev_id.
    pub async fn bind(&self, ctx: &Context, cookie: u64) -> Result<u32> {
        let request = pb::DeviceBindIommufdRequest {
            device_fd: self.device_fd,
            flags: 0,
            iommufd: ctx.iommufd,
            cookie,
        };
        let resp = rpc!(self.session, device_bind_iommufd, request).await?;
        Ok(resp.out_devid)
    }

    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT of the RID to `pt_id` (an IOAS or a
    /// HWPT; a replace when attached); returns the HWPT attached.
    pub async fn attach(&self, pt_id: u32) -> Result<u32> {
        let request = pb::DeviceAttachIommufdPtRequest {
            device_fd: self.device_fd,
            flags: 0,
            pt_id,
            pasid: 0,
        };
        let resp = rpc!(self.session, device_attach_iommufd_pt, request).await?;
        Ok(resp.pt_id)
    }

    /// VFIO_DEVICE_DETACH_IOMMUFD_PT of the RID (a no-op when not attached).
    pub async fn detach(&self) -> Result<()> {
        let request = pb::DeviceDetachIommufdPtRequest {
            device_fd: self.device_fd,
            flags: 0,
            pasid: 0,
        };
        rpc!(self.session, device_detach_iommufd_pt, request).await?;
        Ok(())
    }

    /// `close(device_fd)`: unbinds and detaches the device.
    pub async fn close(self) -> Result<()> {
        let request = pb::CloseDeviceRequest {
            device_fd: self.device_fd,
        };
        rpc!(self.session, close_device, request).await?;
        Ok(())
    }
}

// -- the legacy VFIO API ------------------------------------------------------------------------

/// A legacy VFIO container (`/dev/vfio/vfio`); it is an iommufd context too.
#[derive(Clone)]
pub struct Container {
    session: Arc<SessionInner>,
    container_fd: i32,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("container_fd", &self.container_fd)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// The fd number in the session.
    pub fn fd(&self) -> i32 {
        self.container_fd
    }

    /// The container as an iommufd context (IOMMU_* calls work on it).
    pub fn as_context(&self) -> Context {
        Context {
            session: self.session.clone(),
            iommufd: self.container_fd,
        }
    }

    /// VFIO_GET_API_VERSION (0).
    pub async fn api_version(&self) -> Result<i32> {
        let request = pb::VfioGetApiVersionRequest {
            container_fd: self.container_fd,
        };
        let resp = rpc!(self.session, vfio_get_api_version, request).await?;
        Ok(resp.version)
    }

    /// VFIO_CHECK_EXTENSION of `extension` (`uapi::VFIO_TYPE1v2_IOMMU`, ...).
    pub async fn check_extension(&self, extension: u32) -> Result<i32> {
        let request = pb::VfioCheckExtensionRequest {
            container_fd: self.container_fd,
            extension,
        };
        let resp = rpc!(self.session, vfio_check_extension, request).await?;
        Ok(resp.value)
    }

    /// VFIO_SET_IOMMU with `iommu_type` (`uapi::VFIO_TYPE1v2_IOMMU`).
    pub async fn set_iommu(&self, iommu_type: u32) -> Result<()> {
        let request = pb::VfioSetIommuRequest {
            container_fd: self.container_fd,
            r#type: iommu_type,
        };
        rpc!(self.session, vfio_set_iommu, request).await?;
        Ok(())
    }

    /// VFIO_IOMMU_GET_INFO with its capabilities decoded.
    pub async fn iommu_info(&self) -> Result<pb::VfioIommuGetInfoResponse> {
        let request = pb::VfioIommuGetInfoRequest {
            container_fd: self.container_fd,
            argsz: 0,
        };
        rpc!(self.session, vfio_iommu_get_info, request).await
    }

    /// VFIO_IOMMU_MAP_DMA of `size` bytes at `vaddr` to `iova`, readable and writeable.
    pub async fn map_dma(&self, iova: u64, size: u64, vaddr: u64) -> Result<()> {
        let request = pb::VfioIommuMapDmaRequest {
            container_fd: self.container_fd,
            argsz: 0,
            flags: uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        };
        rpc!(self.session, vfio_iommu_map_dma, request).await?;
        Ok(())
    }

    /// VFIO_IOMMU_UNMAP_DMA of `[iova, iova + size)`; returns the bytes unmapped.
    pub async fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        let request = pb::VfioIommuUnmapDmaRequest {
            container_fd: self.container_fd,
            iova,
            size,
            ..Default::default()
        };
        let resp = rpc!(self.session, vfio_iommu_unmap_dma, request).await?;
        Ok(resp.size)
    }

    /// `close(container_fd)`; returns the objects destroyed.
    pub async fn close(self) -> Result<u32> {
        let request = pb::CloseFdRequest {
            fd: self.container_fd,
        };
        let resp = rpc!(self.session, close_fd, request).await?;
        Ok(resp.destroyed_objects)
    }
}

/// A legacy VFIO group fd (`/dev/vfio/<group>`).
#[derive(Clone)]
pub struct Group {
    session: Arc<SessionInner>,
    group_fd: i32,
    group: u32,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("group_fd", &self.group_fd)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// The fd number in the session.
    pub fn fd(&self) -> i32 {
        self.group_fd
    }

    /// The IOMMU group number.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// VFIO_GROUP_GET_STATUS: `uapi::VFIO_GROUP_FLAGS_*` bits.
    pub async fn status(&self) -> Result<u32> {
        let request = pb::VfioGroupGetStatusRequest {
            group_fd: self.group_fd,
            argsz: 0,
        };
        let resp = rpc!(self.session, vfio_group_get_status, request).await?;
        Ok(resp.flags)
    }

    /// VFIO_GROUP_SET_CONTAINER.
    pub async fn set_container(&self, container: &Container) -> Result<()> {
        let request = pb::VfioGroupSetContainerRequest {
            group_fd: self.group_fd,
            container_fd: container.container_fd,
        };
        rpc!(self.session, vfio_group_set_container, request).await?;
        Ok(())
    }

    /// VFIO_GROUP_UNSET_CONTAINER.
    pub async fn unset_container(&self) -> Result<()> {
        let request = pb::VfioGroupUnsetContainerRequest {
            group_fd: self.group_fd,
        };
        rpc!(self.session, vfio_group_unset_container, request).await?;
        Ok(())
    }

    /// VFIO_GROUP_GET_DEVICE_FD of the member `name`: a device fd bound and
    /// attached to the container's IOAS.
    pub async fn device_fd(&self, name: &str) -> Result<DeviceFd> {
        let request = pb::VfioGroupGetDeviceFdRequest {
            group_fd: self.group_fd,
            name: name.to_owned(),
        };
        let resp = rpc!(self.session, vfio_group_get_device_fd, request).await?;
        Ok(DeviceFd {
            session: self.session.clone(),
            device_fd: resp.device_fd,
            name: name.to_owned(),
        })
    }

    /// `close(group_fd)`.
    pub async fn close(self) -> Result<()> {
        let request = pb::CloseGroupRequest {
            group_fd: self.group_fd,
        };
        rpc!(self.session, close_group, request).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_packing_is_little_endian() {
        let packed = pack_u64(&[1, 0x0102_0304_0506_0708]);
        assert_eq!(packed[..8], [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(packed[8..], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(unpack_u64(&packed), vec![1, 0x0102_0304_0506_0708]);
    }

    #[test]
    fn prot_bits_match_the_uapi() {
        assert_eq!(Prot::READ | Prot::WRITE, Prot::READ_WRITE);
        assert_eq!(
            Prot::READ_WRITE.bits(),
            pb::IoasMapFlag::Readable as u32 | pb::IoasMapFlag::Writeable as u32
        );
        assert_eq!(Prot::from_bits(4).to_string(), "r-");
        assert_eq!(Prot::from_bits(0xff), Prot::READ_WRITE);
    }
}
