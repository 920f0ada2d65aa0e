//! What `/readyz` answers from. Gantry is ready once its first configuration serves and the
//! ports that configuration asks for (L4 services, Gateway listeners) have been bound for it: a
//! load balancer or kube-proxy that finds the replica ready must find every port it serves
//! taking connections. (The HTTP, HTTPS and DNS ports are bound before anything starts.)
//! Ready stays ready: later configurations, and an API server that goes away, do not change it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Who binds ports for a configuration after it is installed.
#[derive(Debug, Clone, Copy)]
pub enum PortKeeper {
    L4Services,
    GatewayListeners,
}

#[derive(Debug, Default)]
pub struct Readiness {
    installed: AtomicBool,
    /// The generation whose installation made Gantry ready.
    generation: AtomicU64,
    /// The newest generation each keeper has bound its ports for.
    l4_services: AtomicU64,
    gateway_listeners: AtomicU64,
}

impl Readiness {
    /// The first configuration, `generation`, serves: ready once its ports are bound.
    pub fn installed(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
        self.installed.store(true, Ordering::Release);
    }

    /// `keeper` has bound (or tried to bind: a port another process holds is the log's and the
    /// metrics' to report) the ports of `generation`.
    pub fn ports_bound(&self, keeper: PortKeeper, generation: u64) {
        let bound = match keeper {
            PortKeeper::L4Services => &self.l4_services,
            PortKeeper::GatewayListeners => &self.gateway_listeners,
        };
        bound.fetch_max(generation, Ordering::AcqRel);
    }

    pub fn is_ready(&self) -> bool {
        if !self.installed.load(Ordering::Acquire) {
            return false;
        }
        let generation = self.generation.load(Ordering::Acquire);
        self.l4_services.load(Ordering::Acquire) >= generation
            && self.gateway_listeners.load(Ordering::Acquire) >= generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_installed_and_both_keepers_bound_that_generation() {
        let readiness = Readiness::default();
        readiness.ports_bound(PortKeeper::L4Services, 0);
        readiness.ports_bound(PortKeeper::GatewayListeners, 0);
        assert!(!readiness.is_ready(), "nothing installed yet");

        readiness.installed(3);
        assert!(!readiness.is_ready(), "ports of an older generation only");
        readiness.ports_bound(PortKeeper::L4Services, 3);
        assert!(!readiness.is_ready(), "the Gateway listeners not bound yet");
        readiness.ports_bound(PortKeeper::GatewayListeners, 4);
        assert!(readiness.is_ready());

        // A keeper's older report, arriving late, takes nothing back.
        readiness.ports_bound(PortKeeper::L4Services, 2);
        assert!(readiness.is_ready());
    }

    #[test]
    fn a_first_configuration_that_installed_nothing_is_ready_at_once() {
        // Kube mode whose first lists compiled to nothing new: generation 0, no ports to bind.
        let readiness = Readiness::default();
        readiness.installed(0);
        assert!(readiness.is_ready());
    }
}
