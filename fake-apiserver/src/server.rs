//! The fake API server's HTTP side: accepting connections, authenticating, discovery, and
//! routing a request on a resource to its verb.

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use crate::request::ResourceRequest;
use crate::respond::{Body, failure, json_response};
use crate::{State, TOKEN_PREFIX};

pub async fn accept(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    // Dropped when this task is aborted, which aborts every connection with it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { serve(&state, request).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// The user a request's bearer token names.
pub(crate) fn user(request: &Request<Incoming>) -> Option<String> {
    let header = request.headers().get("authorization")?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ")?;
    Some(token.strip_prefix(TOKEN_PREFIX)?.to_owned())
}

/// Serves one request, or, for a user cut off from the server, drops the connection as a
/// network partition would.
pub(crate) async fn serve(
    state: &Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    if let Some(user) = user(&request)
        && state
            .cut_off
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&user)
    {
        return Err(std::io::Error::other(format!("{user} is cut off")));
    }
    Ok(handle(state, request).await)
}

pub(crate) async fn handle(state: &Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let requester = user(&request).unwrap_or_default();
    let authorized = !requester.is_empty();
    // As the public-info-viewer role allows anyone.
    let public = matches!(
        request.uri().path(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    if !authorized && !public {
        return failure(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
            json!({}),
        );
    }
    let (parts, body) = request.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .split('/')
        .next()
        .unwrap_or("unknown")
        .to_owned();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();

    let inner = state
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let discovery = match segments.as_slice() {
        ["version"] => Some(json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-gantry-fake",
            "platform": "linux/amd64",
        })),
        ["healthz" | "readyz" | "livez"] => {
            return Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
        }
        ["api"] => Some(inner.types.core_versions()),
        ["openapi", "v3"] => Some(inner.types.openapi_root()),
        ["openapi", "v3", path @ ..] => inner.types.openapi_document(&path.join("/")),
        ["apis"] => Some(inner.types.group_list()),
        ["api", version] => inner.types.resource_list("", version),
        ["apis", group, version] => inner.types.resource_list(group, version),
        _ => None,
    };
    if let Some(document) = discovery {
        return json_response(StatusCode::OK, &document);
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            );
        }
    };
    let namespaced_path = match rest {
        ["namespaces", namespace, plural, tail @ ..] => inner
            .types
            .find(group, version, plural)
            .filter(|t| t.namespaced)
            .map(|t| (t.clone(), Some((*namespace).to_owned()), tail)),
        _ => None,
    };
    let (resource, namespace, tail) = match namespaced_path {
        Some(found) => found,
        None => match rest {
            [plural, tail @ ..] => match inner.types.find(group, version, plural) {
                Some(t) => (t.clone(), None, tail),
                None => {
                    return failure(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "the server could not find the requested resource".into(),
                        json!({}),
                    );
                }
            },
            [] => {
                return failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "not found".into(),
                    json!({}),
                );
            }
        },
    };
    drop(inner);
    let call = ResourceRequest {
        state: state.clone(),
        key: (resource.group.clone(), resource.plural.clone()),
        resource,
        namespace,
        name: tail.first().map(|s| (*s).to_owned()),
        subresource: tail.get(1).map(|s| (*s).to_owned()),
        query,
        body,
        content_type,
        user_agent,
        requester,
    };
    match (parts.method, &call.name) {
        (Method::GET, None) if call.flag("watch") => call.watch(),
        (Method::GET, None) => call.list(),
        (Method::GET, Some(name)) => call.get(name),
        (Method::POST, None) => call.create(),
        (Method::PUT, Some(name)) => call.update(name),
        (Method::PATCH, Some(name)) => call.patch(name),
        (Method::DELETE, Some(name)) => call.delete(name),
        (method, _) => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported here by the fake API server"),
            json!({}),
        ),
    }
}
