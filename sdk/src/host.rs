//! What a filter asks of its host, behind one trait: built to wasm32, the proxy-wasm ABI's host
//! calls (so the module runs in any proxy-wasm host); built natively, the host that compiled the
//! filter in (Gantry's built-in plugins, see [`native`](crate::native)), which lends itself for
//! the length of each call. Every part of the SDK that talks to the host goes through here.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

pub use proxy_wasm::types::{LogLevel, MapType, Status};

/// The host side of a filter's calls.
pub trait Host {
    /// A header's value (the first, if sent several times); names are matched in lower case.
    fn map_value(&self, map: MapType, name: &str) -> Option<String>;
    /// Every header of the map, in order, pseudo-headers first.
    fn map_pairs(&self, map: MapType) -> Vec<(String, String)>;
    /// Replaces a header's values with `value`, or removes it (`None`).
    fn set_map_value(&self, map: MapType, name: &str, value: Option<&str>) -> Result<(), Status>;
    fn add_map_value(&self, map: MapType, name: &str, value: &str) -> Result<(), Status>;
    /// A property (Envoy's attribute names) as bytes.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The address of the peer that connected: the `source.address` property.
    fn peer_address(&self) -> Option<IpAddr> {
        let bytes = self.property(&["source", "address"])?;
        let text = std::str::from_utf8(&bytes).ok()?;
        text.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| text.parse::<IpAddr>())
            .ok()
    }
    /// Keeps the request on its route although its path or host changes (Gantry's extension;
    /// other hosts ignore it).
    fn keep_route(&self);
    /// Shared data's value at `key` and its version.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status>;
    /// Writes `key` if its version is still `cas` (any version when `None`).
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// Creates `key` unless it exists (then `CasMismatch`).
    fn insert_shared_data(&self, key: &str, value: &[u8]) -> Result<(), Status>;
    fn now(&self) -> SystemTime;
    fn log(&self, level: LogLevel, message: &str);
    /// Defines a counter; `None` when the host refuses.
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32, by: i64);
}

/// Runs `f` with the host of the running call.
#[cfg(target_arch = "wasm32")]
pub(crate) fn with<R>(f: impl FnOnce(&dyn Host) -> R) -> R {
    f(&abi::Abi)
}

/// Runs `f` with the host that lent itself for the running call; outside one (a unit test of the
/// filter, say), a host that has nothing and accepts nothing.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn with<R>(f: impl FnOnce(&dyn Host) -> R) -> R {
    match crate::native::current() {
        Some(host) => f(&*host),
        None => f(&Absent),
    }
}

/// The host outside any call.
#[cfg(not(target_arch = "wasm32"))]
struct Absent;

#[cfg(not(target_arch = "wasm32"))]
impl Host for Absent {
    fn map_value(&self, _: MapType, _: &str) -> Option<String> {
        None
    }
    fn map_pairs(&self, _: MapType) -> Vec<(String, String)> {
        Vec::new()
    }
    fn set_map_value(&self, _: MapType, _: &str, _: Option<&str>) -> Result<(), Status> {
        Err(Status::NotFound)
    }
    fn add_map_value(&self, _: MapType, _: &str, _: &str) -> Result<(), Status> {
        Err(Status::NotFound)
    }
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        None
    }
    fn keep_route(&self) {}
    fn shared_data(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        Err(Status::NotFound)
    }
    fn set_shared_data(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), Status> {
        Err(Status::NotFound)
    }
    fn insert_shared_data(&self, _: &str, _: &[u8]) -> Result<(), Status> {
        Err(Status::NotFound)
    }
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn log(&self, _: LogLevel, _: &str) {}
    fn define_counter(&self, _: &str) -> Option<u32> {
        None
    }
    fn increment_counter(&self, _: u32, _: i64) {}
}

/// The proxy-wasm ABI's host calls.
#[cfg(target_arch = "wasm32")]
mod abi {
    use std::time::SystemTime;

    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{LogLevel, MapType, MetricType, Status};

    /// Gantry's foreign function that keeps a request on the route it matched although its
    /// path or host changed (Envoy and Gantry route a changed request again by default).
    const KEEP_ROUTE: &str = "gantry_keep_route";

    /// Gantry's foreign function that creates a key only if it is absent. The standard ABI has
    /// no such call (a write with no version overwrites), so two threads creating the same key
    /// at once could lose one's update; on other hosts the SDK falls back to that plain write.
    const INSERT: &str = "gantry_shared_data_insert";

    pub(super) struct Abi;

    impl super::Host for Abi {
        fn map_value(&self, map: MapType, name: &str) -> Option<String> {
            hostcalls::get_map_value(map, name).ok().flatten()
        }

        fn map_pairs(&self, map: MapType) -> Vec<(String, String)> {
            hostcalls::get_map(map).unwrap_or_default()
        }

        fn set_map_value(
            &self,
            map: MapType,
            name: &str,
            value: Option<&str>,
        ) -> Result<(), Status> {
            hostcalls::set_map_value(map, name, value)
        }

        fn add_map_value(&self, map: MapType, name: &str, value: &str) -> Result<(), Status> {
            hostcalls::add_map_value(map, name, value)
        }

        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            hostcalls::get_property(path.to_vec()).ok().flatten()
        }

        fn keep_route(&self) {
            let _ = hostcalls::call_foreign_function(KEEP_ROUTE, None);
        }

        fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
            hostcalls::get_shared_data(key)
        }

        fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
            hostcalls::set_shared_data(key, Some(value), cas)
        }

        fn insert_shared_data(&self, key: &str, value: &[u8]) -> Result<(), Status> {
            let mut arguments = Vec::with_capacity(4 + key.len() + value.len());
            arguments.extend_from_slice(&(key.len() as u32).to_le_bytes());
            arguments.extend_from_slice(key.as_bytes());
            arguments.extend_from_slice(value);
            match hostcalls::call_foreign_function(INSERT, Some(&arguments)) {
                Ok(Some(answer)) if answer.as_slice() == b"inserted" => Ok(()),
                Ok(_) => Err(Status::CasMismatch),
                Err(Status::NotFound) => hostcalls::set_shared_data(key, Some(value), None),
                Err(other) => Err(other),
            }
        }

        fn now(&self) -> SystemTime {
            hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
        }

        fn log(&self, level: LogLevel, message: &str) {
            let _ = hostcalls::log(level, message);
        }

        fn define_counter(&self, name: &str) -> Option<u32> {
            hostcalls::define_metric(MetricType::Counter, name).ok()
        }

        fn increment_counter(&self, id: u32, by: i64) {
            let _ = hostcalls::increment_metric(id, by);
        }
    }
}
