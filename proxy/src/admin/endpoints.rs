//! Runtime control of upstream endpoints (the HAProxy runtime API's job): every endpoint of
//! every upstream with its health, load and the operator's overrides, and setting one's state
//! (`ready`, `drain`, `maint`) or weight without a configuration change. An override lasts until
//! it is set back or the endpoint leaves its Service.

use serde::Serialize;

use crate::snapshot::{Snapshot, UpstreamTarget};
use crate::upstream::endpoint::{Endpoint, Mode, now_nanos};

/// One endpoint, as `/endpoints` and `gantry endpoints` show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub upstream: String,
    pub endpoint: String,
    /// What the operator set.
    pub state: Mode,
    pub weight: u32,
    /// Whether the state or weight is the operator's rather than the default.
    pub overridden: bool,
    /// Not ejected and passing its active check.
    pub healthy: bool,
    /// How long passive health keeps it out, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_seconds: Option<f64>,
    pub passing_checks: bool,
    pub in_flight: u32,
    pub requests: u64,
}

impl EndpointView {
    fn new(upstream: &str, endpoint: &Endpoint) -> Self {
        use std::sync::atomic::Ordering;
        let state = endpoint.mode();
        let weight = endpoint.weight();
        EndpointView {
            upstream: upstream.to_owned(),
            endpoint: endpoint.addr.to_string(),
            state,
            weight,
            overridden: state != Mode::Ready || weight != 1,
            healthy: endpoint.healthy(),
            ejected_seconds: endpoint
                .ejected_for(now_nanos())
                .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            passing_checks: endpoint.passing_checks(),
            in_flight: endpoint.in_flight(),
            requests: endpoint.totals().requests.load(Ordering::Relaxed),
        }
    }
}

/// Every endpoint of every upstream, by upstream then address.
pub fn list(snapshot: &Snapshot) -> Vec<EndpointView> {
    snapshot
        .upstreams
        .iter()
        .flat_map(|group| {
            group
                .endpoints()
                .iter()
                .map(|e| EndpointView::new(&group.name, e))
        })
        .collect()
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

/// Sets the state and/or weight of one endpoint, as the query (`upstream=NS/NAME:PORT`,
/// `endpoint=IP:PORT`, `state=ready|drain|maint`, `weight=N`) says.
pub fn set(snapshot: &Snapshot, query: &str) -> Result<EndpointView, SetError> {
    let mut upstream = None;
    let mut endpoint = None;
    let mut state = None;
    let mut weight = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "upstream" => upstream = Some(value.into_owned()),
            "endpoint" => endpoint = Some(value.into_owned()),
            "state" => {
                state = Some(value.parse::<Mode>().map_err(SetError::BadRequest)?);
            }
            "weight" => {
                weight = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|w| *w <= 1000)
                        .ok_or_else(|| {
                            SetError::BadRequest(format!(
                                "weight {value:?} is not a whole number 0-1000"
                            ))
                        })?,
                );
            }
            other => {
                return Err(SetError::BadRequest(format!(
                    "{other:?} is not a parameter: upstream, endpoint, state, weight"
                )));
            }
        }
    }
    let (Some(upstream), Some(endpoint)) = (upstream, endpoint) else {
        return Err(SetError::BadRequest(
            "upstream and endpoint are required".to_owned(),
        ));
    };
    if state.is_none() && weight.is_none() {
        return Err(SetError::BadRequest(
            "nothing to set: give state, weight or both".to_owned(),
        ));
    }
    let group = snapshot
        .upstreams
        .iter()
        .find(|g| g.name == upstream)
        .ok_or_else(|| SetError::NotFound(format!("no upstream {upstream}")))?;
    let found = group
        .endpoints()
        .iter()
        .find(|e| e.addr.to_string() == endpoint)
        .ok_or_else(|| SetError::NotFound(format!("{upstream} has no endpoint {endpoint}")))?;
    if let Some(state) = state {
        found.set_mode(state);
    }
    if let Some(weight) = weight {
        found.set_weight(weight);
        if let UpstreamTarget::Endpoints(addrs) = &group.target {
            group.balancer.reweighed(addrs);
        }
    }
    tracing::info!(
        %upstream,
        %endpoint,
        state = ?found.mode(),
        weight = found.weight(),
        "endpoint set by the operator"
    );
    Ok(EndpointView::new(&group.name, found))
}
