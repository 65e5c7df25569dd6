//! A Rust client for iommud, the userspace model of the Linux `/dev/iommu`
//! (iommufd) control plane.
//!
//! [`pb`] is the tonic client generated from `proto/iommud/v1/iommu.proto` at
//! build time; [`Client`], [`Session`], [`Context`], [`DeviceFd`],
//! [`Container`] and [`Group`] are a small typed layer over it that mirrors
//! the kernel's objects and the Python client's API:
//!
//! ```no_run
//! # async fn demo() -> iommud_client::Result<()> {
//! use iommud_client::{Client, Prot};
//! let client = Client::connect_default().await?;       // IOMMUD_ENDPOINT, or the default socket
//! let session = client.open_session("my-vmm", 0).await?; // kept alive in the background
//! let ctx = session.open_context().await?;              // open("/dev/iommu")
//! let ioas = ctx.ioas_alloc().await?;
//! let iova = ctx.ioas_map(ioas, 0x7f00_0000_0000, 0x20_0000, None, Prot::READ_WRITE).await?;
//! assert_eq!(ctx.translate(ioas, iova).await?.pa, 0x7f00_0000_0000);
//! match ctx.ioas_map(ioas, 0, 0x1000, Some(iova), Prot::READ_WRITE).await {
//!     Err(e) => assert_eq!(e.errno_name(), "EEXIST"),
//!     Ok(_) => unreachable!(),
//! }
//! # Ok(()) }
//! ```
//!
//! Every call returns [`Error`] on failure: the errno name and number the
//! daemon sent in its `google.rpc.ErrorInfo`. Calls the typed layer does not
//! wrap go through [`Client::raw`] (the generated stub, with the raised
//! message limits) and [`Session::request`] (a request carrying the session
//! token).
//!
//! Message size: the daemon sends messages up to its `max_message_bytes`
//! (16 MiB by default). tonic decodes at most 4 MiB unless told otherwise,
//! which a TranslateBatch of 2^20 addresses (a 9 MiB reply) exceeds; this
//! crate raises the limit to [`ClientOptions::max_message_bytes`].

#![warn(missing_docs)]

mod client;
mod endpoint;
mod error;
mod keepalive;

/// The generated protobuf messages and the tonic client of `iommud.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod pb {
    tonic::include_proto!("iommud.v1");
}

/// The uAPI constants the typed layer's callers pass (include/uapi/linux/iommufd.h, vfio.h).
pub mod uapi {
    /// IOMMU_HWPT_ALLOC_NEST_PARENT.
    pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 = 1;
    /// IOMMU_HWPT_ALLOC_DIRTY_TRACKING.
    pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 = 2;
    /// VFIO_TYPE1_IOMMU (an extension and an IOMMU type).
    pub const VFIO_TYPE1_IOMMU: u32 = 1;
    /// VFIO_TYPE1v2_IOMMU (an extension and an IOMMU type).
    #[allow(non_upper_case_globals)]
    pub const VFIO_TYPE1v2_IOMMU: u32 = 3;
    /// VFIO_UNMAP_ALL (an extension).
    pub const VFIO_UNMAP_ALL: u32 = 9;
    /// VFIO_DMA_MAP_FLAG_READ.
    pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
    /// VFIO_DMA_MAP_FLAG_WRITE.
    pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 2;
    /// VFIO_GROUP_FLAGS_VIABLE.
    pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
    /// VFIO_GROUP_FLAGS_CONTAINER_SET.
    pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 2;
    /// The length that, with IOVA 0, unmaps a whole IOAS (2^64 - 1).
    pub const UNMAP_ALL_LENGTH: u64 = u64::MAX;
}

pub use client::{
    Area, BatchTranslation, Client, ClientOptions, Container, Context, DeviceFd, Group, IovaRanges,
    Prot, Session, Translation, DEFAULT_MAX_MESSAGE_BYTES, SESSION_METADATA_KEY,
};
pub use endpoint::{
    default_endpoint, default_socket_path, default_socket_path_for, Target, ENDPOINT_ENV,
    SYSTEM_SOCKET,
};
pub use error::{errno, Error, Result, ERROR_DOMAIN};
pub use keepalive::{KeepalivePolicy, KeepaliveStatus, StopReason};

/// The generated stub over a tonic channel, as [`Client::raw`] hands it out.
pub type Stub = pb::iommu_service_client::IommuServiceClient<tonic::transport::Channel>;
