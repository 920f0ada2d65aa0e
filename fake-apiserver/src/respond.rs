//! Answers as the API server words them: JSON documents, `Status` failures, warnings, and the
//! lines of a watch stream.

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::State;
use crate::types::ResourceType;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("a status and a fixed content type make a valid response")
}

/// A `Status` failure, as the API server words them.
pub(crate) fn failure(
    code: StatusCode,
    reason: &str,
    message: String,
    details: Value,
) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code.as_u16(),
        }),
    )
}

pub(crate) fn not_found(resource: &ResourceType, name: &str) -> Response<Body> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        json!({"name": name, "group": resource.group, "kind": resource.plural}),
    )
}

pub(crate) fn invalid(resource: &ResourceType, name: &str, message: &str) -> Response<Body> {
    failure(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{} \"{name}\" is invalid: {message}", resource.kind),
        json!({"name": name, "group": resource.group, "kind": resource.kind}),
    )
}

pub(crate) fn log(state: &State, line: String) {
    state
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(line);
}

pub(crate) fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        if let Ok(value) = http::HeaderValue::from_str(&format!("299 - \"{warning}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

pub(crate) fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}
