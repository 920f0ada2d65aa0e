//! `gantry-dns`: Gantry's authoritative DNS server. It knows nothing of Kubernetes: it is given
//! zones (an origin, an SOA, records), serves them over UDP and TCP, and swaps them atomically
//! when new ones arrive, without disturbing queries in flight.
//!
//! [`zone`] builds one zone; [`answer`] answers a question from the zones served; [`server`] is
//! the hickory-server request handler and listeners; `udp` is the batched UDP loop.

pub mod answer;
#[doc(hidden)]
pub mod fuzzing;
pub mod notify;
pub mod publish;
pub mod server;
pub mod transfer;
mod udp;
pub mod zone;

pub use answer::{Answer, Zones};
pub use hickory_proto as proto;
pub use udp::rate_limit::RateLimit;
pub use zone::{Secondary, Soa, TsigKey, Zone, ZoneProblem, ZoneSpec};
