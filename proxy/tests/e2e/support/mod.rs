//! What the end-to-end tests share: the Gantry process, upstreams, clients, configuration
//! writing, a test CA, and waiting on conditions with a deadline.

pub mod clients;
pub mod config;
pub mod dns;
pub mod gantry;
pub mod grpc;
pub mod h2_frames;
pub mod kubectl;
pub mod nginx;
pub mod pebble;
pub mod pki;
pub mod plugins;
pub mod rbac;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

pub use config::ConfigDir;
pub use gantry::Gantry;

/// How long any one condition may take on a loaded machine before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_within(what, DEADLINE, condition).await;
}

/// Polls `condition` until it holds, failing the test after `limit`: for what takes longer by
/// nature, such as an ACME order with a retry in it.
pub async fn wait_until_within<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_within(what, limit, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Polls `attempt` until it gives a value, and returns it; fails the test after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, DEADLINE, attempt).await
}

async fn wait_for_within<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
