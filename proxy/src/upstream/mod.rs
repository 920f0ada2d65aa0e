//! Where a request goes upstream, apart from Pingora's phases: the endpoint each attempt takes
//! (chosen over a Service's ready endpoints by the route's [`balance::Balance`], or the
//! addresses an ExternalName resolves to),
//! how many attempts a request gets, and names resolved through one cache that keeps each answer
//! for its TTL. The data plane's phases, its WebSocket tunnel and plugins' HTTP calls all ask
//! here, so that load balancing, health and retries have one home.

pub mod affinity;
mod attempts;
pub mod balance;
pub mod breaker;
pub mod endpoint;
pub mod exposition;
pub mod health;
pub mod probe;
mod resolver;
pub mod retry;

pub use attempts::{Attempts, MAX_ATTEMPTS, UpstreamError};
pub use resolver::{ResolveError, Resolver};
