//! Where the daemon listens, resolved as the Python client resolves it
//! (`iommud_wire.endpoint`), so that both find the same daemon without
//! configuration.

use std::path::{Path, PathBuf};

use crate::error::{errno, Error};

/// The daemon's socket when `/run/iommud` exists or the caller is root.
pub const SYSTEM_SOCKET: &str = "/run/iommud/iommud.sock";

/// The environment variable naming the endpoint clients use.
pub const ENDPOINT_ENV: &str = "IOMMUD_ENDPOINT";

/// A resolved endpoint: a UNIX socket, or a plaintext TCP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A UNIX socket path (the daemon's default transport).
    Unix(PathBuf),
    /// An `http://host:port` URI (loopback TCP; TLS is not built in).
    Tcp(String),
}

impl Target {
    /// Parses an endpoint as `iommuctl` and the Python client accept it:
    /// `unix:/path`, `unix:///path`, a bare path (`/x`, `./x`, `../x`),
    /// `host:port`, or `http://host:port`. `https://` is refused (EINVAL):
    /// this crate has no TLS.
    pub fn parse(endpoint: &str) -> Result<Target, Error> {
        let invalid = |why: &str| {
            Error::local(
                errno::EINVAL,
                format!(
                    "endpoint {endpoint:?}: {why}; expected unix:/path, a socket path or host:port"
                ),
            )
        };
        if endpoint.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = endpoint.strip_prefix("unix://") {
            return absolute(Path::new(rest)).map(Target::Unix);
        }
        if let Some(rest) = endpoint.strip_prefix("unix:") {
            return absolute(Path::new(rest)).map(Target::Unix);
        }
        if endpoint.starts_with('/') || endpoint.starts_with("./") || endpoint.starts_with("../") {
            return absolute(Path::new(endpoint)).map(Target::Unix);
        }
        if endpoint.starts_with("https://") {
            return Err(invalid("TLS is not supported by this client"));
        }
        if endpoint.starts_with("http://") {
            return Ok(Target::Tcp(endpoint.to_owned()));
        }
        if endpoint.contains("://") || !endpoint.contains(':') {
            return Err(invalid("not a known form"));
        }
        Ok(Target::Tcp(format!("http://{endpoint}")))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp(uri) => f.write_str(uri),
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path)
        .map_err(|e| Error::local(errno::EINVAL, format!("socket path {path:?}: {e}")))
}

/// The default socket for a caller with effective uid `euid`:
/// [`SYSTEM_SOCKET`] when its directory exists or the caller is root, else
/// `$XDG_RUNTIME_DIR/iommud/iommud.sock` (or `/tmp/iommud-<euid>/...`).
pub fn default_socket_path_for(
    euid: u32,
    system_dir_exists: bool,
    xdg_runtime_dir: Option<&str>,
) -> PathBuf {
    if system_dir_exists || euid == 0 {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    let base = match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(format!("/tmp/iommud-{euid}")),
    };
    base.join("iommud").join("iommud.sock")
}

/// The default socket of this process, as the daemon picks its own.
pub fn default_socket_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let system_dir_exists = Path::new(SYSTEM_SOCKET).parent().is_some_and(Path::is_dir);
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
    default_socket_path_for(euid, system_dir_exists, xdg.as_deref())
}

/// The client's endpoint: `IOMMUD_ENDPOINT` when set, else the default socket.
pub fn default_endpoint() -> String {
    match std::env::var(ENDPOINT_ENV) {
        Ok(value) if !value.is_empty() => value,
        _ => format!("unix:{}", default_socket_path().display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_forms_resolve_to_absolute_paths() {
        assert_eq!(
            Target::parse("unix:/run/x.sock").unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("unix:///run/x.sock").unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("/run/x.sock").unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            Target::parse("./x.sock").unwrap(),
            Target::Unix(cwd.join("x.sock"))
        );
    }

    #[test]
    fn tcp_forms_become_http_uris() {
        assert_eq!(
            Target::parse("127.0.0.1:50051").unwrap(),
            Target::Tcp("http://127.0.0.1:50051".into())
        );
        assert_eq!(
            Target::parse("http://[::1]:7").unwrap(),
            Target::Tcp("http://[::1]:7".into())
        );
    }

    #[test]
    fn tls_and_unknown_forms_are_einval() {
        for bad in ["https://h:1", "", "dns:///h:1", "localhost"] {
            assert_eq!(
                Target::parse(bad).unwrap_err().errno_name(),
                "EINVAL",
                "{bad}"
            );
        }
    }

    #[test]
    fn default_socket_follows_the_daemons_rule() {
        assert_eq!(
            default_socket_path_for(0, false, Some("/x")),
            PathBuf::from(SYSTEM_SOCKET)
        );
        assert_eq!(
            default_socket_path_for(1000, true, Some("/x")),
            PathBuf::from(SYSTEM_SOCKET)
        );
        assert_eq!(
            default_socket_path_for(1000, false, Some("/run/user/1000")),
            PathBuf::from("/run/user/1000/iommud/iommud.sock")
        );
        assert_eq!(
            default_socket_path_for(1000, false, None),
            PathBuf::from("/tmp/iommud-1000/iommud/iommud.sock")
        );
        assert_eq!(
            default_socket_path_for(1000, false, Some("")),
            PathBuf::from("/tmp/iommud-1000/iommud/iommud.sock")
        );
    }
}
