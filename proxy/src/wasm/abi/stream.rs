//! Control of the HTTP stream: resuming a paused request or response, resetting it, answering
//! locally, clearing the route cache, and HTTP calls to other upstreams (gRPC calls are refused
//! with a status the SDKs report as an error).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Linker;

use super::memory::{self, Caller_};
use super::pairs;
use super::status::{BAD_ARGUMENT, INTERNAL_FAILURE, NOT_FOUND, OK};
use crate::wasm::host::{HostState, LocalResponse, OutgoingCall};

const HTTP_REQUEST: u32 = 0;
const HTTP_RESPONSE: u32 = 1;
/// The largest stream type of the ABI (upstream); a larger one is refused with `BadArgument`, as
/// proxy-wasm-cpp-host refuses it (`if (type > WasmStreamType::MAX)` in `src/exports.cc`).
const MAX_STREAM_TYPE: u32 = 3;

fn resume(state: &mut HostState, stream: u32) -> u32 {
    if stream > MAX_STREAM_TYPE {
        return BAD_ARGUMENT;
    }
    let Some(context) = state.context_mut() else {
        return OK;
    };
    match stream {
        HTTP_REQUEST => context.resume_request = true,
        HTTP_RESPONSE => context.resume_response = true,
        _ => return OK,
    }
    context.wake.notify.notify_one();
    OK
}

pub fn add_to(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Caller_<'_>, stream: u32| -> u32 { resume(c.data_mut(), stream) },
    )?;
    // ABI 0.2.0 names, still imported by older SDK builds.
    linker.func_wrap(
        "env",
        "proxy_continue_request",
        |mut c: Caller_<'_>| -> u32 { resume(c.data_mut(), HTTP_REQUEST) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut c: Caller_<'_>| -> u32 { resume(c.data_mut(), HTTP_RESPONSE) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Caller_<'_>, stream: u32| -> u32 {
            if stream > MAX_STREAM_TYPE {
                return BAD_ARGUMENT;
            }
            if let Some(context) = c.data_mut().context_mut() {
                context.close = true;
                context.wake.notify.notify_one();
            }
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_clear_route_cache",
        |mut c: Caller_<'_>| -> u32 {
            if let Some(context) = c.data_mut().context_mut() {
                context.reroute = true;
            }
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller_<'_>,
         status: u32,
         details_ptr: u32,
         details_len: u32,
         body_ptr: u32,
         body_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         grpc_status: i32|
         -> wasmtime::Result<u32> {
            let f = "proxy_send_local_response";
            let details = memory::read_string(&mut c, f, details_ptr, details_len)?;
            let body = memory::read(&mut c, f, body_ptr, body_len)?;
            let raw = memory::read(&mut c, f, headers_ptr, headers_len)?;
            let Ok(mut headers) = pairs::deserialize(&raw) else {
                return Ok(BAD_ARGUMENT);
            };
            let Some(status) = u16::try_from(status)
                .ok()
                .filter(|s| (200..600).contains(s))
            else {
                return Ok(BAD_ARGUMENT);
            };
            // The SDKs pass -1 for "no gRPC status"; Envoy takes only the known codes.
            if (0..=16).contains(&grpc_status) {
                headers.push((
                    b"grpc-status".to_vec(),
                    grpc_status.to_string().into_bytes(),
                ));
            }
            let Some(context) = c.data_mut().context_mut() else {
                return Ok(NOT_FOUND);
            };
            context.local_response = Some(LocalResponse {
                status,
                details: Arc::from(details.replace(' ', "_")),
                headers,
                body: Bytes::from(body),
            });
            context.wake.notify.notify_one();
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller_<'_>,
         upstream_ptr: u32,
         upstream_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         body_ptr: u32,
         body_len: u32,
         _trailers_ptr: u32,
         _trailers_len: u32,
         timeout_ms: u32,
         ret_token: u32|
         -> wasmtime::Result<u32> {
            let f = "proxy_http_call";
            let upstream = memory::read_string(&mut c, f, upstream_ptr, upstream_len)?;
            let raw = memory::read(&mut c, f, headers_ptr, headers_len)?;
            let body = memory::read(&mut c, f, body_ptr, body_len)?;
            let Ok(headers) = pairs::deserialize(&raw) else {
                return Ok(BAD_ARGUMENT);
            };
            let has = |name: &[u8]| headers.iter().any(|(k, _)| k == name);
            if !(has(b":method") && has(b":path") && has(b":authority")) {
                return Ok(BAD_ARGUMENT);
            }
            let state = c.data_mut();
            // A request's plugins call into the Snapshot the request started with; a root
            // context, which belongs to no request, into the one serving now.
            let started_with = state
                .in_exchange()
                .then(|| state.exchange.info.as_ref()?.snapshot.clone())
                .flatten();
            let namespace = state
                .plugin()
                .map_or("", |plugin| plugin.namespace.as_str());
            let group = match started_with {
                Some(snapshot) => snapshot.clusters.resolve(namespace, &upstream),
                None => state
                    .shared
                    .snapshots
                    .load()
                    .clusters
                    .resolve(namespace, &upstream),
            };
            let Some(group) = group else {
                return Ok(BAD_ARGUMENT);
            };
            let token = state.next_token;
            state.next_token = state.next_token.wrapping_add(1).max(1);
            state.calls.push(OutgoingCall {
                token,
                context_id: state.effective_context,
                upstream: group,
                headers,
                body: Bytes::from(body),
                timeout: Duration::from_millis(u64::from(timeout_ms.max(1))),
            });
            memory::write_u32(&mut c, f, ret_token, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_: Caller_<'_>,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32|
         -> u32 { INTERNAL_FAILURE },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_: Caller_<'_>,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32|
         -> u32 { INTERNAL_FAILURE },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |_: Caller_<'_>, _: u32, _: u32, _: u32, _: u32| -> u32 { NOT_FOUND },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |_: Caller_<'_>, _: u32| -> u32 { NOT_FOUND })?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Caller_<'_>, code_ptr: u32, msg_ptr: u32, msg_len: u32| -> wasmtime::Result<u32> {
            // gRPC status UNIMPLEMENTED: Gantry makes no gRPC calls.
            memory::write_u32(&mut c, "proxy_get_status", code_ptr, 12)?;
            memory::give(
                &mut c,
                "proxy_get_status",
                b"gRPC calls are not supported by Gantry",
                msg_ptr,
                msg_len,
            )?;
            Ok(OK)
        },
    )?;
    Ok(())
}
