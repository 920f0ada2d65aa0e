//! Filters compiled into their host instead of loaded as WebAssembly, as Envoy's "null VM" runs
//! plugins linked into Envoy: the same [`Filter`] source, called directly. The host lends
//! itself ([`Host`]) for the length of each call with [`lend`]; the hooks' [`Flow`]s come back
//! as values. Gantry runs its built-in plugins this way.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::host::Host;
use crate::http::{Request, Response};
use crate::{Filter, Flow};

thread_local! {
    static LENT: RefCell<Option<Rc<dyn Host>>> = const { RefCell::new(None) };
}

/// The host lent for the running call, if any.
pub(crate) fn current() -> Option<Rc<dyn Host>> {
    LENT.with(|lent| lent.borrow().clone())
}

/// Runs `f` with `host` as the host of every SDK call it makes on this thread; the host lent
/// before (if any) is back afterwards, also when `f` panics.
pub fn lend<R>(host: Rc<dyn Host>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<dyn Host>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            LENT.with(|lent| *lent.borrow_mut() = previous);
        }
    }
    let _restore = Restore(LENT.with(|lent| lent.borrow_mut().replace(host)));
    f()
}

/// A configured filter, its types erased, for a host to call from any thread.
pub trait NativeFilter: Send + Sync {
    /// A new request's state (the filter's [`Filter::State`]).
    fn new_state(&self) -> Box<dyn Any + Send + Sync>;
    /// The request hook, on the lent host's request.
    fn on_request(&self, state: &mut (dyn Any + Send + Sync)) -> Flow;
    /// The response hook, on the lent host's response.
    fn on_response(&self, state: &mut (dyn Any + Send + Sync)) -> Flow;
    /// Whether the response hook has anything to do ([`Filter::needs_response`]).
    fn needs_response(&self) -> bool;
}

struct Native<F>(F);

impl<F> NativeFilter for Native<F>
where
    F: Filter + Send + Sync,
    F::State: Send + Sync,
{
    fn new_state(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(F::State::default())
    }

    fn on_request(&self, state: &mut (dyn Any + Send + Sync)) -> Flow {
        match state.downcast_mut::<F::State>() {
            Some(state) => self.0.on_request(&mut Request::new(), state),
            None => Flow::Continue,
        }
    }

    fn on_response(&self, state: &mut (dyn Any + Send + Sync)) -> Flow {
        match state.downcast_mut::<F::State>() {
            Some(state) => self.0.on_response(&mut Response::new(), state),
            None => Flow::Continue,
        }
    }

    fn needs_response(&self) -> bool {
        self.0.needs_response()
    }
}

/// Reads `config` (JSON; empty means `{}`) and configures `F`, as a module's root context does
/// on a proxy-wasm host. Run it with a host lent: `configure` may define counters and read
/// properties.
pub fn configure<F>(config: &[u8]) -> Result<Arc<dyn NativeFilter>, ConfigError>
where
    F: Filter + Send + Sync,
    F::State: Send + Sync,
{
    let filter = F::configure(config::parse::<F::Config>(config)?)?;
    Ok(Arc::new(Native(filter)))
}
