//! `gantry plugin test PLUGIN CASES.yaml`: runs a plugin (a `.wasm` file or `builtin:NAME`) in
//! Gantry's real proxy-wasm host against a list of cases, without a proxy, a cluster or an
//! upstream. Each case sends a request through the plugin, answers it with a canned upstream
//! response if it gets that far, and checks what the client got and what the upstream saw.
//! Cases run in order on the same plugin instance, so state (rate limit buckets, say) carries
//! from one case to the next; a case with its own `config` gets a plugin of its own.
//!
//! ```yaml
//! config: {limits: [{requests: 2, per: hour}]}   # the WasmPlugin's spec.config
//! cases:
//!   - name: two pass
//!     repeat: 2
//!     request: {method: GET, path: /, host: example.test, headers: {}, client: 203.0.113.7}
//!     expect: {status: 200}
//!   - name: the third is limited
//!     expect: {status: 429, headers: {retry-after: "1800"}, reachedUpstream: false}
//!   - name: a bad configuration is refused
//!     config: {limits: []}
//!     expect: {configError: "limits"}
//! ```

mod cases;
mod compare;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};

use cases::{CasesFile, RequestSpec, UpstreamSpec};
use compare::{Seen, SeenUpstream, compare, header_pairs};

use crate::config::crd::WasmPluginSpec;
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::snapshot::Snapshot;
use crate::wasm::{self, Filters, Loader, PluginLoad, RequestInfo, Verdict, WantedPlugin};

#[derive(Debug, thiserror::Error)]
pub enum PluginTestError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Cases { file: String, reason: String },
    #[error(transparent)]
    Wasm(#[from] wasm::runtime::RuntimeError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A plugin loaded for a configuration, or the problems it had.
type Loaded = Result<Arc<wasm::Plugin>, String>;
/// Runs the cases; returns how many failed. What happens is written to `out`.
pub fn plugin_test(
    plugin: &str,
    cases_file: &Path,
    out: &mut impl Write,
) -> Result<usize, PluginTestError> {
    let file = cases_file.display().to_string();
    let text = std::fs::read_to_string(cases_file).map_err(|source| PluginTestError::Read {
        file: file.clone(),
        source,
    })?;
    let cases: CasesFile = yaml_serde::from_str(&text).map_err(|e| PluginTestError::Cases {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let module = if plugin.starts_with("builtin:") {
        plugin.to_owned()
    } else {
        std::path::absolute(plugin)
            .map_err(|source| PluginTestError::Read {
                file: plugin.to_owned(),
                source,
            })?
            .display()
            .to_string()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PluginTestError::Runtime)?;
    let engine = wasm::runtime::engine(None)?;
    let shared = wasm::Shared::new(
        engine,
        &prometheus::Registry::new(),
        Arc::new(ArcSwap::from_pointee(Snapshot::default())),
        crate::upstream::Resolver::from_system().map_err(wasm::runtime::RuntimeError::from)?,
    )?;
    let root = cases_file
        .parent()
        .map_or_else(PathBuf::new, Path::to_owned);
    let mut loader = Loader::new(shared.clone(), &root)?;
    let stem = cases_file
        .file_stem()
        .map_or("cases".into(), |s| s.to_string_lossy().into_owned());

    let mut failed = 0;
    let mut loaded: Vec<(Option<serde_json::Value>, Loaded)> = Vec::new();
    for (n, case) in cases.cases.iter().enumerate() {
        let number = n + 1;
        let config = case.config.clone().or_else(|| cases.config.clone());
        let plugin = match loaded.iter().find(|(c, _)| *c == config) {
            Some((_, plugin)) => plugin.clone(),
            None => {
                let key =
                    NamespacedName::new("plugin-test", &format!("{stem}-{}", loaded.len() + 1));
                let wanted = WantedPlugin {
                    key: key.clone(),
                    spec: spec(&module, config.clone()),
                    file: None,
                    object: ObjectRef::new(Kind::WasmPlugin, &key),
                    field: None,
                    problem: None,
                };
                let (plugins, problems, _) = loader.load(std::slice::from_ref(&wanted));
                let plugin = match plugins.get(&key) {
                    Some(PluginLoad::Ready(plugin)) => Ok(plugin.clone()),
                    _ => Err(problems
                        .iter()
                        .map(|p| {
                            let field = p
                                .field
                                .as_deref()
                                .map(|f| format!("{f}: "))
                                .unwrap_or_default();
                            format!("{field}{}", p.reason)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")),
                };
                loaded.push((config, plugin.clone()));
                plugin
            }
        };
        let mut wrong = Vec::new();
        match (&plugin, &case.expect.config_error) {
            (Err(problem), Some(wanted)) if problem.contains(wanted.as_str()) => {}
            (Err(problem), Some(wanted)) => {
                wrong.push(format!(
                    "expected a configuration error with {wanted:?}, got: {problem}"
                ));
            }
            (Ok(_), Some(wanted)) => {
                wrong.push(format!(
                    "expected a configuration error with {wanted:?}, the plugin accepted it"
                ));
            }
            (Err(problem), None) => wrong.push(format!("the plugin did not load: {problem}")),
            (Ok(plugin), None) => {
                for round in 1..=case.repeat {
                    let seen =
                        runtime.block_on(exchange(&shared, plugin, &case.request, &case.upstream));
                    let differences = compare(&case.expect, &seen);
                    if !differences.is_empty() {
                        let at = if case.repeat > 1 {
                            format!("request {round}: ")
                        } else {
                            String::new()
                        };
                        wrong.extend(differences.into_iter().map(|d| format!("{at}{d}")));
                        break;
                    }
                }
            }
        }
        let times = if case.repeat > 1 {
            format!(" (x{})", case.repeat)
        } else {
            String::new()
        };
        if wrong.is_empty() {
            let _ = writeln!(out, "ok {number} - {}{times}", case.name);
        } else {
            failed += 1;
            let _ = writeln!(out, "FAIL {number} - {}{times}", case.name);
            for line in wrong {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let total = cases.cases.len();
    let _ = writeln!(
        out,
        "{total} case(s): {} passed, {failed} failed",
        total - failed
    );
    Ok(failed)
}

fn spec(module: &str, config: Option<serde_json::Value>) -> WasmPluginSpec {
    WasmPluginSpec {
        module: module.to_owned(),
        plugin_type: Default::default(),
        sha256: None,
        config,
        vm_config: None,
        root_id: String::new(),
        vm_id: String::new(),
        failure_policy: crate::config::crd::FailurePolicy::FailClosed,
        phase: crate::config::crd::Phase::Unspecified,
        priority: 0,
        timeout: Some("5s".to_owned()),
        memory_limit: None,
        targets: None,
    }
}

/// One request through the plugin, and the upstream's canned answer.
async fn exchange(
    shared: &Arc<wasm::Shared>,
    plugin: &Arc<wasm::Plugin>,
    request: &RequestSpec,
    upstream: &UpstreamSpec,
) -> Seen {
    match try_exchange(shared, plugin, request, upstream).await {
        Ok(seen) => seen,
        Err(e) => Seen {
            note: Some(format!("the case cannot be run: {e}")),
            ..Seen::default()
        },
    }
}

async fn try_exchange(
    shared: &Arc<wasm::Shared>,
    plugin: &Arc<wasm::Plugin>,
    request: &RequestSpec,
    upstream: &UpstreamSpec,
) -> Result<Seen, Box<pingora::Error>> {
    let mut req = RequestHeader::build(request.method.as_str(), request.path.as_bytes(), None)?;
    req.insert_header(http::header::HOST, request.host.as_str())?;
    for (name, value) in &request.headers {
        req.append_header(name.to_ascii_lowercase(), value.as_str())?;
    }
    if !request.body.is_empty() {
        req.insert_header(http::header::CONTENT_LENGTH, request.body.len())?;
    }
    let info = RequestInfo {
        tls: request.https,
        client: Some(SocketAddr::new(request.client, 40000)),
        server: Some(SocketAddr::from((
            [127, 0, 0, 1],
            if request.https { 443 } else { 80 },
        ))),
        ..RequestInfo::new(Arc::from("plugin-test"))
    };
    let mut filters = Filters::new(shared.clone(), std::slice::from_ref(plugin), info);
    let verdict = filters
        .request_headers(&mut req, request.body.is_empty())
        .await;
    if let Some(seen) = stopped(&mut filters, &mut req, verdict).await? {
        return Ok(seen);
    }
    let mut body = (!request.body.is_empty()).then(|| Bytes::from(request.body.clone()));
    if body.is_some() {
        let verdict = filters.request_body(&mut req, &mut body, true).await;
        if let Some(seen) = stopped(&mut filters, &mut req, verdict).await? {
            return Ok(seen);
        }
    }
    let seen_upstream = SeenUpstream {
        method: req.method.to_string(),
        path: req
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        headers: header_pairs(&req.headers),
        body: body.map(|b| b.to_vec()).unwrap_or_default(),
    };

    let mut resp = ResponseHeader::build(upstream.status, None)?;
    for (name, value) in &upstream.headers {
        resp.append_header(name.to_ascii_lowercase(), value.as_str())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, upstream.body.len())?;
    let mut response_body = (!upstream.body.is_empty()).then(|| Bytes::from(upstream.body.clone()));
    let mut note = None;
    match filters
        .response_headers(&mut req, &mut resp, response_body.is_none())
        .await
    {
        Verdict::Continue => {}
        Verdict::Respond(local) => {
            let grpc = crate::dataplane::headers::is_grpc(&req);
            filters.replace_response(&mut resp, local, grpc)?;
        }
        Verdict::Fail { plugin, failure } => {
            filters.finish(&mut req);
            return Ok(failed(plugin, failure.to_string()));
        }
        Verdict::Close => {
            filters.finish(&mut req);
            return Ok(reset());
        }
    }
    match filters.response_body(&mut req, &mut response_body, true) {
        Verdict::Continue => {}
        Verdict::Fail { plugin, failure } => {
            note = Some(wasm::filter::failure_note(&plugin, &failure))
        }
        other => note = Some(format!("the response body ended with {other:?}")),
    }
    filters.finish(&mut req);
    Ok(Seen {
        status: resp.status.as_u16(),
        headers: header_pairs(&resp.headers),
        body: response_body.map(|b| b.to_vec()).unwrap_or_default(),
        upstream: Some(seen_upstream),
        note,
    })
}

/// What the client gets when the request phase did not go on: a local reply passes back
/// through the plugin's response callbacks, as in the proxy.
async fn stopped(
    filters: &mut Filters,
    req: &mut RequestHeader,
    verdict: Verdict,
) -> Result<Option<Seen>, Box<pingora::Error>> {
    let seen = match verdict {
        Verdict::Continue => return Ok(None),
        Verdict::Respond(local) => {
            let grpc = crate::dataplane::headers::is_grpc(req);
            match filters.local_reply(req, local, grpc).await? {
                Some(reply) => Seen {
                    status: reply.head.status.as_u16(),
                    headers: header_pairs(&reply.head.headers),
                    body: reply.body.to_vec(),
                    upstream: None,
                    note: reply.note,
                },
                None => reset(),
            }
        }
        Verdict::Fail { plugin, failure } => failed(plugin, failure.to_string()),
        Verdict::Close => reset(),
    };
    filters.finish(req);
    Ok(Some(seen))
}

fn failed(plugin: String, failure: String) -> Seen {
    Seen {
        status: 503,
        note: Some(format!(
            "plugin {plugin} {failure}; the proxy answers 503 (FailClosed)"
        )),
        ..Seen::default()
    }
}

fn reset() -> Seen {
    Seen {
        status: 0,
        note: Some("the plugin reset the stream".to_owned()),
        ..Seen::default()
    }
}
