//! Properties: the attributes of the request and of the plugin under Envoy's names
//! (`request.path`, `request.headers.NAME`, `source.address`, `plugin_name`...), encoded as Envoy
//! encodes them (strings as bytes, integers as 8-byte little-endian, timestamps and durations as
//! little-endian `i64` nanoseconds, booleans as one byte, maps in the ABI's map serialization),
//! and properties plugins set themselves, which every plugin of the request sees.

use std::time::{Duration, UNIX_EPOCH};

use pingora::http::RequestHeader;
use wasmtime::Linker;

use super::maps;
use super::memory::{self, Caller_};
use super::pairs;
use super::status::{INTERNAL_FAILURE, NOT_FOUND, OK};
use crate::wasm::host::{Completion, Exchange, HostState, StreamProperties};
use crate::wasm::plugin::PluginInfo;

fn int(value: impl Into<i64>) -> Vec<u8> {
    value.into().to_le_bytes().to_vec()
}

fn text(value: impl AsRef<[u8]>) -> Vec<u8> {
    value.as_ref().to_vec()
}

/// Nanoseconds as Envoy encodes timestamps and durations: a little-endian `i64`.
fn nanos(value: Duration) -> Vec<u8> {
    int(i64::try_from(value.as_nanos()).unwrap_or(i64::MAX))
}

/// A property's value, or `None` when it does not exist (here, or not yet). Envoy's attributes
/// come first, then what plugins set on the request (Envoy's attribute names shadow a set
/// property of the same name too).
fn lookup(state: &HostState, path: &str) -> Option<Vec<u8>> {
    let properties = state
        .contexts
        .get(&state.effective_context)
        .map(|context| &context.properties);
    let exchange = state.in_exchange().then_some(&state.exchange);
    lookup_in(
        state.plugin().map(|p| &**p),
        &state.vm.vm_id,
        exchange,
        properties,
        path,
    )
}

/// A property for `plugin` (of VM `vm_id`), with the request in `exchange` if a request's
/// callback runs, and the properties set on that request.
pub fn lookup_in(
    plugin: Option<&PluginInfo>,
    vm_id: &str,
    exchange: Option<&Exchange>,
    properties: Option<&StreamProperties>,
    path: &str,
) -> Option<Vec<u8>> {
    match path {
        "plugin_name" => return plugin.map(|plugin| text(&plugin.name)),
        "plugin_root_id" => return plugin.map(|plugin| text(&plugin.root_id)),
        "plugin_vm_id" => return Some(text(vm_id)),
        _ => {}
    }
    if let Some(value) = exchange.and_then(|exchange| attribute(exchange, path)) {
        return Some(value);
    }
    let properties = properties?.lock().ok()?;
    properties.get(path).cloned()
}

/// An attribute of the request in the exchange (Envoy's list: `docs/root/intro/arch_overview/
/// advanced/attributes.rst`), encoded as Envoy's `serializeValue` encodes it.
fn attribute(exchange: &Exchange, path: &str) -> Option<Vec<u8>> {
    let info = exchange.info.as_ref()?;
    let req = exchange.has_request.then_some(&exchange.request);
    let resp = exchange.has_response.then_some(&exchange.response);
    let done = info.completion.as_ref();
    if let Some(name) = path.strip_prefix("request.headers.") {
        return req.and_then(|r| maps::request_value(r, info.tls, name, b","));
    }
    if let Some(name) = path.strip_prefix("response.headers.") {
        return resp.and_then(|r| maps::response_value(r, name, b","));
    }
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
        "request.time" => Some(nanos(
            info.start.duration_since(UNIX_EPOCH).unwrap_or_default(),
        )),
        // Known once the request is complete, as in Envoy (`requestComplete()`): at log time.
        "request.duration" => done.map(|d| nanos(d.duration)),
        // The declared length when the head says it, else the body bytes received.
        "request.size" => Some(int(request_size(req, done))),
        "request.total_size" => {
            let head = req.map_or(0, |r| head_bytes(&maps::request_pairs(r, info.tls)));
            let body = done.map_or(0, |d| d.request_body_bytes);
            Some(int(clamp(head.saturating_add(body))))
        }
        "response.size" => Some(int(clamp(done.map_or(0, |d| d.response_body_bytes)))),
        "response.total_size" => {
            Some(int(clamp(done.map_or(0, |d| {
                d.response_body_bytes + d.response_head_bytes
            }))))
        }
        "response.code" => info.response_code.map(int),
        "response.code_details" => info.response_code_details.as_ref().map(|d| text(&**d)),
        "response.flags" => Some(int(clamp(info.response_flags))),
        "response.headers" => resp.map(|r| {
            let pairs = maps::response_pairs(r);
            pairs::serialize(pairs.iter().map(|(k, v)| (&k[..], &v[..])))
        }),
        "source.address" => info.client.map(|a| text(a.to_string())),
        "source.port" => info.client.map(|a| int(a.port())),
        "destination.address" => info.server.map(|a| text(a.to_string())),
        "destination.port" => info.server.map(|a| int(a.port())),
        "upstream.address" => info.upstream.map(|a| text(a.to_string())),
        "upstream.port" => info.upstream.map(|a| int(a.port())),
        "connection.id" | "connection_id" => Some(info.connection_id().to_le_bytes().to_vec()),
        "connection.mtls" => Some(vec![u8::from(info.peer_subject.is_some())]),
        "connection.subject_peer_certificate" => info.peer_subject.as_ref().map(|s| text(&**s)),
        "connection.tls" => Some(vec![u8::from(info.tls)]),
        "route_name" | "xds.route_name" => Some(text(&*info.route_name)),
        "xds.cluster_name" => info.cluster_name.as_ref().map(|c| text(&**c)),
        _ => None,
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `request.size`: the request's `content-length` when it has one, else the body bytes
/// received so far (known at log time).
fn request_size(req: Option<&RequestHeader>, done: Option<&Completion>) -> i64 {
    let declared = req
        .and_then(|r| r.headers.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    declared.unwrap_or_else(|| clamp(done.map_or(0, |d| d.request_body_bytes)))
}

/// A head's size as Envoy counts a header map's (`byteSize`): every name and value.
fn head_bytes(pairs: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

/// A property path arrives as NUL-separated segments; it is looked up by its dotted form. In
/// one pass: a NUL is never part of a UTF-8 sequence, so replacing the separators first leaves
/// what a bad sequence is replaced with unchanged.
fn dotted(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    let path: Vec<u8> = raw.iter().map(|&b| if b == 0 { b'.' } else { b }).collect();
    String::from_utf8(path)
        .unwrap_or_else(|bad| String::from_utf8_lossy(bad.as_bytes()).into_owned())
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
            let state = c.data();
            // A root context belongs to no request: Envoy answers NotFound there too.
            let Some(context) = state.contexts.get(&state.effective_context) else {
                return Ok(NOT_FOUND);
            };
            let Ok(mut properties) = context.properties.lock() else {
                return Ok(INTERNAL_FAILURE);
            };
            properties.insert(dotted(&raw), value);
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
        // A sequence cut by a separator is replaced up to it, as segment by segment.
        assert_eq!(super::dotted(b"a\xe2\x82\0b\xff\0"), "a\u{fffd}.b\u{fffd}");
    }
}
