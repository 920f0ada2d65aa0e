//! Built-in plugins compiled into Gantry, as Envoy's "null VM" runs plugins linked into Envoy:
//! the same gantry-sdk source that builds to wasm32 (`plugins/`), called directly, with no trip
//! through wasmtime, no copies into a module's memory and no allocation in a guest. Gantry lends
//! itself as the SDK's host for each call, with the Wasm host's own semantics (the header maps
//! with their pseudo-headers and re-routing, properties, shared data scoped by VM id, counters,
//! logs under the plugin's name). No sandbox stands between Gantry and code it ships; a panic is
//! caught and handled as a plugin failure, under the plugin's failure policy.

use std::any::Any;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use gantry_sdk::host::{Host, LogLevel, MapType, Status};
use gantry_sdk::native::NativeFilter;
use gantry_sdk::{ConfigError, Flow};
use pingora::http::{RequestHeader, ResponseHeader};

use super::abi::general;
use super::abi::maps::direct;
use super::abi::properties;
use super::builtin::Configure;
use super::host::{Exchange, LocalResponse, RequestInfo, StreamProperties};
use super::instance::Failure;
use super::plugin::PluginInfo;
use super::plugin_metrics::MetricKind;
use super::runtime::Shared;

/// Which hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Request,
    Response,
}

/// What a hook did.
#[derive(Debug)]
pub struct Outcome {
    /// Its answer to the client, if it gave one.
    pub local: Option<LocalResponse>,
    /// It changed the request's head and did not ask to keep the route: route it again.
    pub reroute: bool,
}

/// Whose call runs, and what it did besides its result. The plugin and its scope stay after the
/// call, so that the next call of the same plugin on this thread need not take them again.
#[derive(Default)]
struct Call {
    shared: Option<Arc<Shared>>,
    plugin: Option<Arc<PluginInfo>>,
    vm_id: Option<Arc<str>>,
    properties: Option<StreamProperties>,
    done: Done,
}

/// What a call did besides its result.
#[derive(Default)]
struct Done {
    touched: bool,
    keep_route: bool,
    /// What the plugin logged at error level while being configured.
    complaints: Vec<String>,
}

/// Gantry as the SDK's host: one per thread, lent for each call.
struct Lender {
    exchange: RefCell<Exchange>,
    call: RefCell<Call>,
}

thread_local! {
    static LENDER: Rc<Lender> = Rc::new(Lender {
        exchange: RefCell::new(Exchange::new()),
        call: RefCell::new(Call::default()),
    });
}

/// Configures built-in `configure` for `plugin` (whose shared data is scoped by `vm_id`), with
/// Gantry lent as its host: configuring may define counters, read properties and log.
pub fn configure(
    shared: &Arc<Shared>,
    plugin: &Arc<PluginInfo>,
    vm_id: &Arc<str>,
    configure: Configure,
) -> Result<Arc<dyn NativeFilter>, ConfigError> {
    let lender = LENDER.with(Rc::clone);
    lender.begin(shared, plugin, vm_id, None);
    let config = plugin.config.clone();
    let host: Rc<dyn Host> = lender.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        gantry_sdk::native::lend(host, || configure(&config))
    }));
    let call = lender.end();
    match result {
        Ok(result) => result,
        Err(panic) => Err(ConfigError::new(
            "",
            format!(
                "the plugin panicked while configuring: {}{}",
                panic_message(&*panic),
                call.complaints
                    .first()
                    .map(|said| format!(" ({said})"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Everything one hook runs with.
pub struct Lent<'a> {
    pub shared: &'a Arc<Shared>,
    pub plugin: &'a Arc<PluginInfo>,
    pub vm_id: &'a Arc<str>,
    pub filter: &'a dyn NativeFilter,
    pub state: &'a mut (dyn Any + Send + Sync),
    pub request: Option<&'a mut RequestHeader>,
    pub response: Option<&'a mut ResponseHeader>,
    pub info: Arc<RequestInfo>,
    pub properties: &'a StreamProperties,
}

/// Runs one hook with the request's heads lent (swapped in for the call, as the Wasm host lends
/// them, and swapped back after it, also when the plugin panics).
pub fn run(hook: Hook, lent: Lent<'_>) -> Result<Outcome, Failure> {
    let Lent {
        shared,
        plugin,
        vm_id,
        filter,
        state,
        mut request,
        mut response,
        info,
        properties,
    } = lent;
    let lender = LENDER.with(Rc::clone);
    lender.begin(shared, plugin, vm_id, Some(properties));
    {
        let mut exchange = lender.exchange.borrow_mut();
        exchange.context_id = 1;
        exchange.info = Some(info);
        if let Some(req) = request.as_deref_mut() {
            std::mem::swap(req, &mut exchange.request);
            exchange.has_request = true;
        }
        if let Some(resp) = response.as_deref_mut() {
            std::mem::swap(resp, &mut exchange.response);
            exchange.has_response = true;
        }
    }
    let host: Rc<dyn Host> = lender.clone();
    let flow = std::panic::catch_unwind(AssertUnwindSafe(|| {
        gantry_sdk::native::lend(host, || match hook {
            Hook::Request => filter.on_request(state),
            Hook::Response => filter.on_response(state),
        })
    }));
    {
        let mut exchange = lender.exchange.borrow_mut();
        if let Some(req) = request {
            std::mem::swap(req, &mut exchange.request);
            exchange.has_request = false;
        }
        if let Some(resp) = response {
            std::mem::swap(resp, &mut exchange.response);
            exchange.has_response = false;
        }
        exchange.context_id = 0;
        exchange.info = None;
    }
    let call = lender.end();
    let flow =
        flow.map_err(|panic| Failure::Trap(format!("panicked: {}", panic_message(&*panic))))?;
    let local = match flow {
        Flow::Continue => None,
        Flow::Respond(response) => Some(local_response(response)?),
    };
    Ok(Outcome {
        local,
        reroute: call.touched && !call.keep_route,
    })
}

/// The SDK's local response as the host's; the status must be one a response can have, as
/// `proxy_send_local_response` requires.
fn local_response(response: gantry_sdk::LocalResponse) -> Result<LocalResponse, Failure> {
    if !(200..600).contains(&response.status) {
        return Err(Failure::HostCall(format!(
            "a local response's status must be 200-599, not {}",
            response.status
        )));
    }
    Ok(LocalResponse {
        status: response.status,
        details: Arc::from(""),
        headers: response
            .headers
            .into_iter()
            .map(|(name, value)| (name.into_bytes(), value.into_bytes()))
            .collect(),
        body: Bytes::from(response.body),
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl Lender {
    fn begin(
        &self,
        shared: &Arc<Shared>,
        plugin: &Arc<PluginInfo>,
        vm_id: &Arc<str>,
        properties: Option<&StreamProperties>,
    ) {
        let mut call = self.call.borrow_mut();
        if !call.shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, shared)) {
            call.shared = Some(shared.clone());
        }
        if !call.plugin.as_ref().is_some_and(|p| Arc::ptr_eq(p, plugin)) {
            call.plugin = Some(plugin.clone());
        }
        if !call.vm_id.as_ref().is_some_and(|v| Arc::ptr_eq(v, vm_id)) {
            call.vm_id = Some(vm_id.clone());
        }
        call.properties = properties.cloned();
    }

    fn end(&self) -> Done {
        let mut call = self.call.borrow_mut();
        call.properties = None;
        std::mem::take(&mut call.done)
    }

    fn plugin_name(&self) -> String {
        self.call
            .borrow()
            .plugin
            .as_ref()
            .map_or_else(String::new, |p| p.name.clone())
    }

    /// The shared state and VM id of the running call.
    fn scope(&self) -> Option<(Arc<Shared>, Arc<str>)> {
        let call = self.call.borrow();
        Some((call.shared.clone()?, call.vm_id.clone()?))
    }
}

fn status(code: u32) -> Status {
    match code {
        1 => Status::NotFound,
        2 => Status::BadArgument,
        _ => Status::InternalFailure,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Host for Lender {
    fn map_value(&self, map: MapType, name: &str) -> Option<String> {
        direct::value(&mut self.exchange.borrow_mut(), map as u32, name).map(text)
    }

    fn map_pairs(&self, map: MapType) -> Vec<(String, String)> {
        direct::pairs(&mut self.exchange.borrow_mut(), map as u32)
            .into_iter()
            .map(|(name, value)| (text(name), text(value)))
            .collect()
    }

    fn set_map_value(&self, map: MapType, name: &str, value: Option<&str>) -> Result<(), Status> {
        let changed = direct::change(
            &mut self.exchange.borrow_mut(),
            map as u32,
            name,
            value.map(str::as_bytes),
            true,
        );
        let touched = changed.map_err(status)?;
        self.call.borrow_mut().done.touched |= touched;
        Ok(())
    }

    fn add_map_value(&self, map: MapType, name: &str, value: &str) -> Result<(), Status> {
        let changed = direct::change(
            &mut self.exchange.borrow_mut(),
            map as u32,
            name,
            Some(value.as_bytes()),
            false,
        );
        let touched = changed.map_err(status)?;
        self.call.borrow_mut().done.touched |= touched;
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let call = self.call.borrow();
        let exchange = self.exchange.borrow();
        let lent = (exchange.context_id != 0).then_some(&*exchange);
        properties::lookup_in(
            call.plugin.as_deref(),
            call.vm_id.as_deref().unwrap_or(""),
            lent,
            call.properties.as_ref(),
            &path.join("."),
        )
    }

    fn peer_address(&self) -> Option<std::net::IpAddr> {
        let exchange = self.exchange.borrow();
        exchange.info.as_ref()?.client.map(|a| a.ip())
    }

    fn keep_route(&self) {
        self.call.borrow_mut().done.keep_route = true;
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        let (shared, vm_id) = self.scope().ok_or(Status::NotFound)?;
        Ok(match shared.data.get(&vm_id, key) {
            Some((value, cas)) => (Some(value.to_vec()), Some(cas)),
            None => (None, None),
        })
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        let (shared, vm_id) = self.scope().ok_or(Status::NotFound)?;
        shared
            .data
            .set(&vm_id, key, Bytes::copy_from_slice(value), cas.unwrap_or(0))
            .map_err(|_| Status::CasMismatch)
    }

    fn insert_shared_data(&self, key: &str, value: &[u8]) -> Result<(), Status> {
        let (shared, vm_id) = self.scope().ok_or(Status::NotFound)?;
        if shared
            .data
            .insert(&vm_id, key, Bytes::copy_from_slice(value))
        {
            Ok(())
        } else {
            Err(Status::CasMismatch)
        }
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn log(&self, level: LogLevel, message: &str) {
        general::log(&self.plugin_name(), level as u32, message);
        let configuring = self.exchange.borrow().context_id == 0;
        if configuring && level as u32 >= LogLevel::Error as u32 {
            self.call
                .borrow_mut()
                .done
                .complaints
                .push(message.to_owned());
        }
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        let shared = self.call.borrow().shared.clone()?;
        Some(
            shared
                .metrics
                .define(&self.plugin_name(), name, MetricKind::Counter),
        )
    }

    fn increment_counter(&self, id: u32, by: i64) {
        if let Some(shared) = self.call.borrow().shared.as_ref() {
            let _ = shared.metrics.increment(id, by);
        }
    }
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;
    use crate::snapshot::Snapshot;
    use crate::wasm::runtime;

    fn shared() -> Arc<Shared> {
        Shared::new(
            runtime::engine(None).unwrap(),
            &prometheus::Registry::new(),
            Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            crate::upstream::Resolver::from_system().unwrap(),
        )
        .unwrap()
    }

    fn plugin(config: &str) -> Arc<PluginInfo> {
        Arc::new(PluginInfo {
            name: "default/test".to_owned(),
            namespace: "default".to_owned(),
            root_id: String::new(),
            config: Bytes::copy_from_slice(config.as_bytes()),
            failure_policy: Default::default(),
            deadline: std::time::Duration::from_millis(100),
        })
    }

    fn request_hook(
        shared: &Arc<Shared>,
        plugin: &Arc<PluginInfo>,
        filter: &dyn NativeFilter,
        req: &mut RequestHeader,
    ) -> Result<Outcome, Failure> {
        let mut state = filter.new_state();
        run(
            Hook::Request,
            Lent {
                shared,
                plugin,
                vm_id: &Arc::from(""),
                filter,
                state: &mut *state,
                request: Some(req),
                response: None,
                info: Arc::new(RequestInfo::new(Arc::from("default/web"))),
                properties: &StreamProperties::default(),
            },
        )
    }

    /// `builtin:headers` configured as `plugin` says.
    fn headers(shared: &Arc<Shared>, plugin: &Arc<PluginInfo>) -> Arc<dyn NativeFilter> {
        configure(
            shared,
            plugin,
            &Arc::from(""),
            gantry_plugin_headers::configure_native,
        )
        .unwrap()
    }

    struct Panics;

    impl NativeFilter for Panics {
        fn new_state(&self) -> Box<dyn Any + Send + Sync> {
            Box::new(())
        }
        fn on_request(&self, _: &mut (dyn Any + Send + Sync)) -> Flow {
            panic!("on purpose");
        }
        fn on_response(&self, _: &mut (dyn Any + Send + Sync)) -> Flow {
            Flow::Continue
        }
        fn needs_response(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_builtin_changes_the_lent_request_which_is_then_routed_again() {
        let shared = shared();
        let plugin = plugin(r#"{"request": {"set": {"x-env": "production"}}}"#);
        let filter = headers(&shared, &plugin);
        let mut req = RequestHeader::build("GET", b"/orders", None).unwrap();
        let outcome = request_hook(&shared, &plugin, &*filter, &mut req).unwrap();
        assert!(outcome.local.is_none());
        assert!(outcome.reroute, "a changed request head is routed again");
        assert_eq!(req.headers["x-env"], "production");
        assert_eq!(req.uri.path(), "/orders");
    }

    #[test]
    fn a_refused_configuration_names_its_field() {
        let shared = shared();
        let plugin = plugin(r#"{"limits": [{"requests": 0, "per": "second"}]}"#);
        let refused = configure(
            &shared,
            &plugin,
            &Arc::from(""),
            gantry_plugin_ratelimit::configure_native,
        )
        .err()
        .unwrap();
        assert_eq!(refused.field, "limits[0].requests");
    }

    #[test]
    fn a_panicking_builtin_fails_and_gives_the_request_head_back() {
        let shared = shared();
        let plugin = plugin("");
        let mut req = RequestHeader::build("GET", b"/kept", None).unwrap();
        match request_hook(&shared, &plugin, &Panics, &mut req) {
            Err(Failure::Trap(reason)) => assert!(reason.contains("on purpose"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(req.uri.path(), "/kept");
        // The host is free again for the next call on this thread.
        let filter = headers(&shared, &plugin);
        assert!(request_hook(&shared, &plugin, &*filter, &mut req).is_ok());
    }
}
