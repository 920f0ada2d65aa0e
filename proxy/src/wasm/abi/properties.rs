//! Properties: the attributes of the request and of the plugin under Envoy's names
//! (`request.path`, `source.address`, `plugin_name`...), encoded as Envoy encodes them (strings as
//! bytes, integers as 8-byte little-endian, booleans as one byte, maps in the ABI's map
//! serialization), and properties plugins set themselves.

use wasmtime::Linker;

use super::maps;
use super::memory::{self, Caller_};
use super::pairs;
use super::status::{NOT_FOUND, OK};
use crate::wasm::host::HostState;

fn int(value: impl Into<i64>) -> Vec<u8> {
    value.into().to_le_bytes().to_vec()
}

fn text(value: impl AsRef<[u8]>) -> Vec<u8> {
    value.as_ref().to_vec()
}

/// A property's value, or `None` when it does not exist (here, or not yet).
fn lookup(state: &HostState, path: &str) -> Option<Vec<u8>> {
    let plugin = &state.plugin;
    match path {
        "plugin_name" => return Some(text(&plugin.name)),
        "plugin_root_id" => return Some(text(&plugin.root_id)),
        "plugin_vm_id" => return Some(text(&plugin.vm_id)),
        _ => {}
    }
    let set = match state.contexts.get(&state.effective_context) {
        Some(context) => &context.properties,
        None => &state.root_properties,
    };
    if let Some(value) = set.get(path) {
        return Some(value.clone());
    }
    if !state.in_exchange() {
        return None;
    }
    let exchange = &state.exchange;
    let info = exchange.info.as_ref()?;
    let req = exchange.has_request.then_some(&exchange.request);
    match path {
        "request.path" => req.map(|r| text(maps::path(r))),
        "request.url_path" => req.map(|r| text(r.uri.path())),
        "request.query" => req.map(|r| text(r.uri.query().unwrap_or(""))),
        "request.host" => req.and_then(maps::authority),
        "request.method" => req.map(|r| text(r.method.as_str())),
        "request.scheme" => Some(text(maps::scheme(info.tls))),
        "request.protocol" => Some(text(info.protocol)),
        "request.id" => req
            .and_then(|r| r.headers.get("x-request-id"))
            .or(info.request_id.as_ref())
            .map(|v| text(v.as_bytes())),
        "request.useragent" => req
            .and_then(|r| r.headers.get(http::header::USER_AGENT))
            .map(|v| text(v.as_bytes())),
        "request.referer" => req
            .and_then(|r| r.headers.get(http::header::REFERER))
            .map(|v| text(v.as_bytes())),
        "request.headers" => req.map(|r| {
            let pairs = maps::request_pairs(r, info.tls);
            pairs::serialize(pairs.iter().map(|(k, v)| (&k[..], &v[..])))
        }),
        "source.address" => info.client.map(|a| text(a.to_string())),
        "source.port" => info.client.map(|a| int(a.port())),
        "destination.address" => info.server.map(|a| text(a.to_string())),
        "destination.port" => info.server.map(|a| int(a.port())),
        "upstream.address" => info.upstream.map(|a| text(a.to_string())),
        "upstream.port" => info.upstream.map(|a| int(a.port())),
        "response.code" => info.response_code.map(int),
        "response.headers" if exchange.has_response => {
            let resp = &exchange.response;
            let entries: Vec<(&[u8], &[u8])> = resp
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .collect();
            Some(pairs::serialize(entries))
        }
        "connection.mtls" => Some(vec![0]),
        "connection.tls" => Some(vec![u8::from(info.tls)]),
        "route_name" | "xds.route_name" => Some(text(&*info.route_name)),
        "xds.cluster_name" => info.cluster_name.as_ref().map(|c| text(&**c)),
        _ => None,
    }
}

/// A property path arrives as NUL-separated segments; it is looked up by its dotted form.
fn dotted(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    raw.split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller_<'_>,
         path_ptr: u32,
         path_len: u32,
         ret_ptr: u32,
         ret_len: u32|
         -> wasmtime::Result<u32> {
            let raw = memory::read(&mut c, "proxy_get_property", path_ptr, path_len)?;
            match lookup(c.data(), &dotted(&raw)) {
                Some(value) => {
                    memory::give(&mut c, "proxy_get_property", &value, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Caller_<'_>,
         path_ptr: u32,
         path_len: u32,
         value_ptr: u32,
         value_len: u32|
         -> wasmtime::Result<u32> {
            let raw = memory::read(&mut c, "proxy_set_property", path_ptr, path_len)?;
            let value = memory::read(&mut c, "proxy_set_property", value_ptr, value_len)?;
            let state = c.data_mut();
            let effective = state.effective_context;
            let set = match state.contexts.get_mut(&effective) {
                Some(context) => &mut context.properties,
                None => &mut state.root_properties,
            };
            set.insert(dotted(&raw), value);
            Ok(OK)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_dotted() {
        assert_eq!(super::dotted(b"request\0path\0"), "request.path");
        assert_eq!(super::dotted(b"plugin_name"), "plugin_name");
    }
}
