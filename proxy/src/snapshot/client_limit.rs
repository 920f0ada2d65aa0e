//! Concurrent requests per client address on an Ingress's routes (ingress-nginx's
//! `limit-connections`, nginx's `limit_conn` keyed by the client address): a request over the
//! limit is refused with 503, addresses in `limit-whitelist` are exempt. The counts belong to the
//! Ingress's routes in one Snapshot; a request holds its slot until it is done.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// One Ingress's limit and its counts.
#[derive(Debug)]
pub struct ClientLimit {
    pub limit: u32,
    pub exempt: Vec<ipnet::IpNet>,
    in_flight: Mutex<HashMap<IpAddr, u32>>,
}

/// A client with as many requests in flight as the limit allows.
#[derive(Debug, thiserror::Error)]
#[error("{client} has {limit} requests in flight, the route's limit")]
pub struct OverLimit {
    pub client: IpAddr,
    pub limit: u32,
}

/// A request's place under a [`ClientLimit`], given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    limit: Arc<ClientLimit>,
    client: IpAddr,
}

impl ClientLimit {
    pub fn new(limit: u32, exempt: Vec<ipnet::IpNet>) -> Self {
        ClientLimit {
            limit,
            exempt,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more request from `client`; `Err` when it already has `limit` in flight.
    /// An exempt client gets `Ok(None)`: nothing is counted.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Option<ClientSlot>, OverLimit> {
        if self.exempt.iter().any(|net| net.contains(&client)) {
            return Ok(None);
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(client).or_insert(0);
        if *count >= self.limit {
            return Err(OverLimit {
                client,
                limit: self.limit,
            });
        }
        *count += 1;
        Ok(Some(ClientSlot {
            limit: self.clone(),
            client,
        }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut in_flight = self
            .limit
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_count_and_exempt_ones_none() {
        let limit = Arc::new(ClientLimit::new(2, vec!["10.0.0.0/8".parse().unwrap()]));
        let alice: IpAddr = "192.0.2.1".parse().unwrap();
        let bob: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.admit(alice).unwrap();
        let second = limit.admit(alice).unwrap();
        assert!(limit.admit(alice).is_err());
        assert!(limit.admit(bob).unwrap().is_some());
        assert!(limit.admit("10.1.2.3".parse().unwrap()).unwrap().is_none());
        drop(first);
        assert!(limit.admit(alice).is_ok());
        drop(second);
        assert!(limit.in_flight.lock().unwrap().is_empty());
    }
}
