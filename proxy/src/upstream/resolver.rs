//! Names resolved for ExternalName Services and plugins' HTTP calls: one hickory resolver with
//! the system's configuration (`/etc/resolv.conf`, the hosts file) whose cache keeps each answer
//! for its TTL, so that a busy ExternalName is not looked up on every request.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Why a name did not resolve.
pub type ResolveError = NetError;

/// The process's resolver; cheap to clone and share.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream::Resolver")
    }
}

impl Resolver {
    /// A resolver on the system's configuration. When that cannot be read, one with no name
    /// server: the hosts file and IP addresses still resolve, and the warning says why the rest
    /// does not.
    pub fn from_system() -> Result<Self, ResolveError> {
        let inner = match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
            Ok(resolver) => resolver,
            Err(e) => {
                tracing::warn!(
                    "the system's resolver configuration cannot be used ({e}): \
                     ExternalName Services resolve from the hosts file only"
                );
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    TokioRuntimeProvider::default(),
                )
                .build()?
            }
        };
        Ok(Resolver { inner })
    }

    /// The addresses of `host` (a name or an IP address), with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let lookup = self.inner.lookup_ip(host).await?;
        Ok(lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}
