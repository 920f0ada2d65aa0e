//! A Gateway API rule's timeouts, retry and session persistence, onto the machinery the
//! Ingresses' annotations and BackendPolicies already drive: the route's retry policy (its
//! deadline, per-try timeout, tries, statuses and backoff) and its cookie affinity.

use std::sync::Arc;
use std::time::Duration;

use crate::config::gateway::{
    HttpRouteRules, HttpRouteRulesSessionPersistence,
    HttpRouteRulesSessionPersistenceCookieConfigLifetimeType, HttpRouteRulesSessionPersistenceType,
};
use crate::duration::parse_duration;
use crate::upstream::affinity::{Affinity, Mode};
use crate::upstream::retry::{Backoff, RetryOn, RetryPolicy};

/// The longest pause between retries, however the backoff doubles.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A field of the rule (relative to it) and why Gantry cannot apply it.
pub(super) type FieldFault = (&'static str, String);

/// The retry policy of a rule's routes to a group whose own policy is `base` (a
/// BackendPolicy's, or Gantry's default), when the rule sets `timeouts` or `retry`.
pub(super) fn retry_policy(
    rule: &HttpRouteRules,
    base: Option<&RetryPolicy>,
) -> Result<Option<Arc<RetryPolicy>>, FieldFault> {
    if rule.timeouts.is_none() && rule.retry.is_none() {
        return Ok(None);
    }
    let mut policy = base.cloned().unwrap_or_default();
    if let Some(timeouts) = &rule.timeouts {
        // "0s" turns a timeout off.
        let request = duration(timeouts.request.as_deref(), "timeouts.request")?;
        let backend = duration(
            timeouts.backend_request.as_deref(),
            "timeouts.backendRequest",
        )?;
        if let (Some(request), Some(backend)) = (request, backend)
            && !request.is_zero()
            && backend > request
        {
            return Err((
                "timeouts.backendRequest",
                format!(
                    "{} is longer than timeouts.request ({}); it must not be",
                    crate::duration::format_duration(backend),
                    crate::duration::format_duration(request)
                ),
            ));
        }
        if let Some(request) = request {
            policy.deadline = (!request.is_zero()).then_some(request);
        }
        if let Some(backend) = backend {
            policy.per_try_timeout = (!backend.is_zero()).then_some(backend);
        }
    }
    if let Some(retry) = &rule.retry {
        // The spec counts retries; the policy counts tries, the first included.
        if let Some(attempts) = retry.attempts {
            policy.tries = u32::try_from(attempts).map_or(1, |n| n.saturating_add(1));
        }
        let mut statuses = Vec::new();
        for code in retry.codes.iter().flatten() {
            match u16::try_from(*code) {
                Ok(status @ 400..=599) => statuses.push(status),
                _ => {
                    return Err((
                        "retry.codes",
                        format!("{code} is not an HTTP status from 400 to 599"),
                    ));
                }
            }
        }
        statuses.sort_unstable();
        statuses.dedup();
        // Connection errors and backend timeouts are retried whatever the codes say (the
        // spec's HTTPRouteRetryConnectionError and HTTPRouteRetryBackendTimeout).
        policy.on = RetryOn {
            connect_failure: true,
            reset: true,
            timeout: true,
            invalid_header: false,
            statuses,
            grpc_statuses: policy.on.grpc_statuses,
        };
        // The spec retries a request whatever its method, as Envoy does.
        policy.non_idempotent = true;
        policy.revisit = true;
        if let Some(backoff) = duration(retry.backoff.as_deref(), "retry.backoff")? {
            policy.backoff = (!backoff.is_zero()).then(|| Backoff {
                base: backoff,
                max: MAX_BACKOFF.max(backoff),
                floor: backoff,
            });
        }
    }
    Ok(Some(Arc::new(policy)))
}

/// A rule's `sessionPersistence` as cookie affinity: sessions pinned to the endpoint that
/// answered first, for as long as it stays.
pub(super) fn session_affinity(
    spec: &HttpRouteRulesSessionPersistence,
    route_name: &str,
) -> Result<Affinity, FieldFault> {
    if matches!(
        spec.r#type,
        Some(HttpRouteRulesSessionPersistenceType::Header)
    ) {
        return Err((
            "sessionPersistence.type",
            "Header sessions are not supported by Gantry (Cookie is)".to_owned(),
        ));
    }
    let permanent = matches!(
        spec.cookie_config
            .as_ref()
            .and_then(|c| c.lifetime_type.as_ref()),
        Some(HttpRouteRulesSessionPersistenceCookieConfigLifetimeType::Permanent)
    );
    let absolute = duration(
        spec.absolute_timeout.as_deref(),
        "sessionPersistence.absoluteTimeout",
    )?;
    let max_age = match (permanent, absolute) {
        (true, Some(timeout)) => Some(timeout.as_secs().max(1)),
        (true, None) => {
            return Err((
                "sessionPersistence.absoluteTimeout",
                "a Permanent cookie needs an absoluteTimeout".to_owned(),
            ));
        }
        (false, Some(_)) => {
            return Err((
                "sessionPersistence.absoluteTimeout",
                "Gantry keeps no session state to expire a Session cookie's session by; \
                 a Permanent cookie's lifetime is supported"
                    .to_owned(),
            ));
        }
        // A session cookie ends with the browser's session: it carries no Max-Age.
        (false, None) => None,
    };
    Ok(Affinity {
        name: spec
            .session_name
            .clone()
            .unwrap_or_else(|| default_session_name(route_name)),
        mode: Mode::Persistent,
        max_age,
        ..Affinity::default()
    })
}

/// The cookie's name when the rule gives none: one per route, so that two routes' sessions
/// on one host never mix.
fn default_session_name(route_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(route_name.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("gantry-session-{hex}")
}

fn duration(text: Option<&str>, field: &'static str) -> Result<Option<Duration>, FieldFault> {
    text.map(|t| parse_duration(t).map_err(|reason| (field, format!("{t:?}: {reason}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> HttpRouteRules {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn timeouts_become_a_deadline_and_a_per_try_limit_and_zero_turns_one_off() {
        let policy = retry_policy(
            &rule("timeouts: {request: 2s, backendRequest: 500ms}"),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(policy.deadline, Some(Duration::from_secs(2)));
        assert_eq!(policy.per_try_timeout, Some(Duration::from_millis(500)));
        let off = retry_policy(&rule("timeouts: {request: 0s}"), None)
            .unwrap()
            .unwrap();
        assert_eq!(off.deadline, None);
        let (field, _) =
            retry_policy(&rule("timeouts: {request: 1s, backendRequest: 2s}"), None).unwrap_err();
        assert_eq!(field, "timeouts.backendRequest");
        assert!(retry_policy(&rule("{}"), None).unwrap().is_none());
    }

    #[test]
    fn a_retry_counts_retries_names_statuses_and_keeps_the_base_policy_otherwise() {
        let base = RetryPolicy {
            window: Some(Duration::from_secs(9)),
            ..RetryPolicy::default()
        };
        let policy = retry_policy(
            &rule("retry: {attempts: 2, codes: [503, 500, 503], backoff: 100ms}"),
            Some(&base),
        )
        .unwrap()
        .unwrap();
        assert_eq!(policy.tries, 3);
        assert_eq!(policy.on.statuses, vec![500, 503]);
        assert!(policy.on.connect_failure && policy.non_idempotent);
        assert_eq!(policy.backoff.unwrap().base, Duration::from_millis(100));
        assert_eq!(policy.window, Some(Duration::from_secs(9)));
        let (field, _) = retry_policy(&rule("retry: {codes: [200]}"), None).unwrap_err();
        assert_eq!(field, "retry.codes");
    }

    #[test]
    fn session_persistence_is_a_cookie_with_a_lifetime_only_when_permanent() {
        let spec: HttpRouteRulesSessionPersistence = yaml_serde::from_str(
            "{sessionName: s, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}",
        )
        .unwrap();
        let affinity = session_affinity(&spec, "ns/route:rule").unwrap();
        assert_eq!(
            (affinity.name.as_str(), affinity.max_age),
            ("s", Some(3600))
        );
        let spec: HttpRouteRulesSessionPersistence = yaml_serde::from_str("{}").unwrap();
        let affinity = session_affinity(&spec, "ns/route:rule").unwrap();
        assert!(affinity.name.starts_with("gantry-session-"));
        assert_eq!(affinity.max_age, None);
        let spec: HttpRouteRulesSessionPersistence =
            yaml_serde::from_str("{type: Header}").unwrap();
        assert_eq!(
            session_affinity(&spec, "r").unwrap_err().0,
            "sessionPersistence.type"
        );
    }
}
