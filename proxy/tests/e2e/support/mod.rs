//! What the end-to-end tests share: the Gantry process, upstreams, clients, configuration
//! writing, a test CA, and waiting on conditions with a deadline.

pub mod clients;
pub mod config;
pub mod dns;
pub mod gantry;
pub mod grpc;
pub mod pki;
pub mod plugins;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

pub use config::ConfigDir;
pub use gantry::Gantry;

/// How long any one condition may take on a loaded machine before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
