//! What a case came to, compared with what it expects: one line per difference.

use std::collections::BTreeMap;

use super::cases::Expect;

/// What one request came to.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) upstream: Option<SeenUpstream>,
    pub(super) note: Option<String>,
}

#[derive(Debug)]
pub(super) struct SeenUpstream {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) fn header_pairs(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Headers `wanted` with their values (`"*"`: any) and `absent` ones, against `seen`.
pub(super) fn check_headers(
    what: &str,
    wanted: &BTreeMap<String, String>,
    absent: &[String],
    seen: &[(String, String)],
    wrong: &mut Vec<String>,
) {
    for (name, value) in wanted {
        match header(seen, name) {
            Some(got) if got == value || value == "*" => {}
            Some(got) => wrong.push(format!("{what} {name}: expected {value:?}, got {got:?}")),
            None => wrong.push(format!("{what} {name}: expected {value:?}, got none")),
        }
    }
    for name in absent {
        if let Some(got) = header(seen, name) {
            wrong.push(format!("{what} {name}: expected none, got {got:?}"));
        }
    }
}

/// Every way `seen` differs from `expect`.
pub(super) fn compare(expect: &Expect, seen: &Seen) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Some(status) = expect.status
        && status != seen.status
    {
        let note = seen
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        wrong.push(format!(
            "status: expected {status}, got {}{note}",
            seen.status
        ));
    }
    check_headers(
        "header",
        &expect.headers,
        &expect.absent,
        &seen.headers,
        &mut wrong,
    );
    if let Some(body) = &expect.body
        && body.as_bytes() != seen.body
    {
        wrong.push(format!(
            "body: expected {body:?}, got {:?}",
            String::from_utf8_lossy(&seen.body)
        ));
    }
    if let Some(reached) = expect.reached_upstream
        && reached != seen.upstream.is_some()
    {
        wrong.push(format!(
            "the request {} the upstream",
            if reached { "did not reach" } else { "reached" }
        ));
    }
    if let Some(want) = &expect.upstream {
        match &seen.upstream {
            None => wrong.push("upstream: the request did not reach it".to_owned()),
            Some(up) => {
                if let Some(method) = &want.method
                    && *method != up.method
                {
                    wrong.push(format!(
                        "upstream method: expected {method}, got {}",
                        up.method
                    ));
                }
                if let Some(path) = &want.path
                    && *path != up.path
                {
                    wrong.push(format!(
                        "upstream path: expected {path:?}, got {:?}",
                        up.path
                    ));
                }
                check_headers(
                    "upstream header",
                    &want.headers,
                    &want.absent,
                    &up.headers,
                    &mut wrong,
                );
                if let Some(body) = &want.body
                    && body.as_bytes() != up.body
                {
                    wrong.push(format!(
                        "upstream body: expected {body:?}, got {:?}",
                        String::from_utf8_lossy(&up.body)
                    ));
                }
            }
        }
    }
    wrong
}
