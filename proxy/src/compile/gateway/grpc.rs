//! GRPCRoutes in HTTPRoute's terms, so that one pass compiles both: a method match becomes a
//! path match on `/SERVICE/METHOD` (Exact on both: the whole path; a service alone: its
//! prefix; a method alone or a RegularExpression: a regular expression over the path), header
//! matches and filters keep their shapes (the spec defines them alike), and backendRefs too.

use super::http::RouteInput;
use super::{RouteKind, same_shape};
use crate::config::gateway::{
    GrpcRoute, GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesMethodType,
    HttpRouteRules, HttpRouteRulesMatches, HttpRouteRulesMatchesHeaders,
    HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPath, HttpRouteRulesMatchesPathType,
};
use crate::config::{NamespacedName, Stored};

pub(super) fn input<'a>(key: &'a NamespacedName, stored: &'a Stored<GrpcRoute>) -> RouteInput<'a> {
    let spec = &stored.object.spec;
    RouteInput {
        kind: RouteKind::Grpc,
        key,
        file: stored.file.clone(),
        metadata: &stored.object.metadata,
        parent_refs: spec
            .parent_refs
            .iter()
            .flatten()
            .filter_map(same_shape)
            .collect(),
        hostnames: spec.hostnames.clone().unwrap_or_default(),
        rules: std::borrow::Cow::Owned(spec.rules.iter().flatten().map(rule).collect()),
    }
}

fn rule(rule: &GrpcRouteRules) -> HttpRouteRules {
    HttpRouteRules {
        backend_refs: rule
            .backend_refs
            .as_ref()
            .map(|refs| refs.iter().filter_map(same_shape).collect()),
        filters: rule
            .filters
            .as_ref()
            .map(|filters| filters.iter().filter_map(same_shape).collect()),
        matches: rule
            .matches
            .as_ref()
            .map(|matches| matches.iter().map(method_match).collect()),
        name: rule.name.clone(),
        retry: None,
        session_persistence: None,
        timeouts: None,
    }
}

fn method_match(spec: &GrpcRouteRulesMatches) -> HttpRouteRulesMatches {
    let path = spec.method.as_ref().map(|m| {
        let regex = matches!(
            m.r#type,
            Some(GrpcRouteRulesMatchesMethodType::RegularExpression)
        );
        let (kind, value) = match (regex, m.service.as_deref(), m.method.as_deref()) {
            (false, Some(service), Some(method)) => (
                HttpRouteRulesMatchesPathType::Exact,
                format!("/{service}/{method}"),
            ),
            (false, Some(service), None) => (
                HttpRouteRulesMatchesPathType::PathPrefix,
                format!("/{service}"),
            ),
            (false, None, Some(method)) => (
                HttpRouteRulesMatchesPathType::RegularExpression,
                format!("/[^/]+/{}", regex::escape(method)),
            ),
            (false, None, None) => (HttpRouteRulesMatchesPathType::PathPrefix, "/".to_owned()),
            (true, service, method) => (
                HttpRouteRulesMatchesPathType::RegularExpression,
                format!(
                    "/(?:{})/(?:{})",
                    service.unwrap_or("[^/]+"),
                    method.unwrap_or("[^/]+")
                ),
            ),
        };
        HttpRouteRulesMatchesPath {
            r#type: Some(kind),
            value: Some(value),
        }
    });
    HttpRouteRulesMatches {
        headers: spec.headers.as_ref().map(|headers| {
            headers
                .iter()
                .map(|h| HttpRouteRulesMatchesHeaders {
                    name: h.name.clone(),
                    r#type: Some(match h.r#type {
                        Some(GrpcRouteRulesMatchesMethodType::RegularExpression) => {
                            HttpRouteRulesMatchesHeadersType::RegularExpression
                        }
                        _ => HttpRouteRulesMatchesHeadersType::Exact,
                    }),
                    value: h.value.clone(),
                })
                .collect()
        }),
        method: None,
        path,
        query_params: None,
    }
}
