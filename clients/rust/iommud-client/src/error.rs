//! The one error type: an errno, as the kernel would return it.
//!
//! The daemon attaches a `google.rpc.ErrorInfo` to every error (domain
//! `iommud.v1`, reason the errno name, metadata `errno` the number plus the
//! ids and 0x-hex addresses involved; `docs/errors.md`). [`Error`] decodes
//! it, so callers branch on [`Error::errno`] exactly as on an ioctl's errno.
//! A status without it (the connection failed, or the peer is not iommud) is
//! reported as `EIO` with [`Error::is_transport`] set.

use std::collections::BTreeMap;
use std::fmt;

use tonic_types::StatusExt;

/// The `ErrorInfo` domain of every iommud error.
pub const ERROR_DOMAIN: &str = "iommud.v1";

/// errno numbers the daemon reports (Linux values; `docs/errors.md`).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such object, IOVA or file.
    pub const ENOENT: i32 = 2;
    /// No such session: the `iommud-session` token names none.
    pub const ESRCH: i32 = 3;
    /// I/O error; also every transport failure (no `ErrorInfo`).
    pub const EIO: i32 = 5;
    /// The request carries fields the daemon does not know.
    pub const E2BIG: i32 = 7;
    /// Bad fd number.
    pub const EBADF: i32 = 9;
    /// A byte limit would be exceeded.
    pub const ENOMEM: i32 = 12;
    /// The caller's identity is not allowed.
    pub const EACCES: i32 = 13;
    /// User memory could not be pinned.
    pub const EFAULT: i32 = 14;
    /// The object is held by something else.
    pub const EBUSY: i32 = 16;
    /// A fixed-IOVA map over an existing area.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Understood but wrong.
    pub const EINVAL: i32 = 22;
    /// The session's fd table is full.
    pub const EMFILE: i32 = 24;
    /// An ioctl the modelled interface does not have.
    pub const ENOTTY: i32 = 25;
    /// No IOVA hole fits; an object or session limit.
    pub const ENOSPC: i32 = 28;
    /// A read or write of the wrong size.
    pub const ESPIPE: i32 = 29;
    /// Unmap kept racing with an access.
    pub const EDEADLK: i32 = 35;
    /// Selftest: the pinned pages are not the user pages named.
    pub const EBADE: i32 = 52;
    /// Address arithmetic wraps past 2^64.
    pub const EOVERFLOW: i32 = 75;
    /// An fd of the wrong kind.
    pub const EBADFD: i32 = 77;
    /// A capacity too small (IOVA_RANGES).
    pub const EMSGSIZE: i32 = 90;
    /// Unknown flags, non-zero reserved fields, unsupported types.
    pub const EOPNOTSUPP: i32 = 95;
    /// A reserved range conflicts with mappings or the allowed list.
    pub const EADDRINUSE: i32 = 98;
    /// Too many replies left unread.
    pub const ENOBUFS: i32 = 105;
    /// The daemon is shutting down.
    pub const ESHUTDOWN: i32 = 108;
    /// The daemon gave up waiting on an object.
    pub const ETIMEDOUT: i32 = 110;

    pub(crate) const NAMES: &[(&str, i32)] = &[
        ("EPERM", EPERM),
        ("ENOENT", ENOENT),
        ("ESRCH", ESRCH),
        ("EIO", EIO),
        ("E2BIG", E2BIG),
        ("EBADF", EBADF),
        ("ENOMEM", ENOMEM),
        ("EACCES", EACCES),
        ("EFAULT", EFAULT),
        ("EBUSY", EBUSY),
        ("EEXIST", EEXIST),
        ("ENODEV", ENODEV),
        ("EINVAL", EINVAL),
        ("EMFILE", EMFILE),
        ("ENOTTY", ENOTTY),
        ("ENOSPC", ENOSPC),
        ("ESPIPE", ESPIPE),
        ("EDEADLK", EDEADLK),
        ("EBADE", EBADE),
        ("EOVERFLOW", EOVERFLOW),
        ("EBADFD", EBADFD),
        ("EMSGSIZE", EMSGSIZE),
        ("EOPNOTSUPP", EOPNOTSUPP),
        ("EADDRINUSE", EADDRINUSE),
        ("ENOBUFS", ENOBUFS),
        ("ESHUTDOWN", ESHUTDOWN),
        ("ETIMEDOUT", ETIMEDOUT),
    ];

    /// The name of an errno number, as the kernel spells it (`E<n>` if unknown).
    pub fn name_of(number: i32) -> String {
        NAMES
            .iter()
            .find(|(_, n)| *n == number)
            .map_or_else(|| format!("E{number}"), |(name, _)| (*name).to_owned())
    }

    /// The number of an errno name, if it is one the daemon reports.
    pub fn number_of(name: &str) -> Option<i32> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, number)| *number)
    }
}

/// A failed iommud call.
#[derive(Clone, Debug)]
pub struct Error {
    errno: i32,
    errno_name: String,
    code: tonic::Code,
    message: String,
    metadata: BTreeMap<String, String>,
    from_daemon: bool,
}

impl Error {
    /// Decodes a failed call's status and its `ErrorInfo` detail.
    pub fn from_status(status: &tonic::Status) -> Error {
        let details = status.get_error_details();
        if let Some(info) = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
        {
            let metadata: BTreeMap<String, String> = info.metadata.clone().into_iter().collect();
            let errno = metadata
                .get("errno")
                .and_then(|n| n.parse().ok())
                .or_else(|| errno::number_of(&info.reason))
                .unwrap_or(errno::EIO);
            return Error {
                errno,
                errno_name: info.reason.clone(),
                code: status.code(),
                message: status.message().to_owned(),
                metadata,
                from_daemon: true,
            };
        }
        Error {
            errno: errno::EIO,
            errno_name: "EIO".to_owned(),
            code: status.code(),
            message: format!("transport error {:?}: {}", status.code(), status.message()),
            metadata: BTreeMap::new(),
            from_daemon: false,
        }
    }

    /// An error raised by this crate before any call (a bad endpoint, a
    /// connection that could not be made).
    pub(crate) fn local(errno: i32, message: impl Into<String>) -> Error {
        Error {
            errno,
            errno_name: errno::name_of(errno),
            code: tonic::Code::Unavailable,
            message: message.into(),
            metadata: BTreeMap::new(),
            from_daemon: false,
        }
    }

    /// The errno number, for example 17.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The errno name, for example `"EEXIST"`.
    pub fn errno_name(&self) -> &str {
        &self.errno_name
    }

    /// The gRPC status code of the reply (`docs/errors.md` maps each errno).
    pub fn code(&self) -> tonic::Code {
        self.code
    }

    /// The daemon's sentence describing the failure.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `ErrorInfo` metadata: `errno`, and the ids (decimal) and
    /// addresses (0x-hex) the request named.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The daemon did not answer: the connection failed or broke, or the
    /// peer is not iommud (the status carried no iommud `ErrorInfo`).
    pub fn is_transport(&self) -> bool {
        !self.from_daemon
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno_name, self.message)
    }
}

impl std::error::Error for Error {}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::from_status(&status)
    }
}

/// The result of every call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn error_info_gives_the_errno() {
        let meta = HashMap::from([
            ("errno".to_owned(), "17".to_owned()),
            ("iova".to_owned(), "0x1000".to_owned()),
        ]);
        let details = ErrorDetails::with_error_info("EEXIST", ERROR_DOMAIN, meta);
        let status =
            tonic::Status::with_error_details(tonic::Code::AlreadyExists, "overlap", details);
        let err = Error::from(status);
        assert_eq!(
            (err.errno(), err.errno_name(), err.code()),
            (17, "EEXIST", tonic::Code::AlreadyExists)
        );
        assert_eq!(
            err.metadata().get("iova").map(String::as_str),
            Some("0x1000")
        );
        assert!(!err.is_transport());
        assert_eq!(err.to_string(), "EEXIST: overlap");
    }

    #[test]
    fn a_status_without_error_info_is_a_transport_eio() {
        let err = Error::from(tonic::Status::unavailable("connection refused"));
        assert_eq!((err.errno(), err.errno_name()), (errno::EIO, "EIO"));
        assert!(err.is_transport());
    }

    #[test]
    fn errno_names_round_trip() {
        for (name, number) in errno::NAMES {
            assert_eq!(errno::name_of(*number), *name);
            assert_eq!(errno::number_of(name), Some(*number));
        }
        assert_eq!(errno::name_of(4095), "E4095");
    }
}
