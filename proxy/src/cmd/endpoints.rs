//! `gantry endpoints`: every upstream endpoint of a running Gantry with its state, weight,
//! health and load; `gantry endpoints set` drains one, puts it in maintenance or back, or
//! changes its weight, through the admin listener (`/endpoints`).

use std::io::Write;
use std::net::SocketAddr;

use serde::Deserialize;

use super::admin_client::{AdminError, request, table};

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the admin listener at {addr} sent /endpoints that is not what Gantry sends: {source}")]
    Json {
        addr: SocketAddr,
        source: serde_json::Error,
    },
    #[error("writing the endpoints: {0}")]
    Write(std::io::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    upstream: String,
    endpoint: String,
    state: String,
    weight: u32,
    overridden: bool,
    healthy: bool,
    ejected_seconds: Option<f64>,
    in_flight: u32,
    requests: u64,
}

/// Lists the endpoints of the Gantry whose admin listener is at `addr`.
pub fn list(addr: SocketAddr, out: &mut impl Write) -> Result<(), EndpointsError> {
    let body = request(addr, "GET", "/endpoints", None)?;
    let endpoints: Vec<Endpoint> =
        serde_json::from_slice(&body).map_err(|source| EndpointsError::Json { addr, source })?;
    write_table(&endpoints, out)
}

/// Sets the state and/or weight of `endpoint` of `upstream`, and shows it as it now is.
pub fn set(
    addr: SocketAddr,
    token: Option<&str>,
    upstream: &str,
    endpoint: &str,
    state: Option<&str>,
    weight: Option<u32>,
    out: &mut impl Write,
) -> Result<(), EndpointsError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("upstream", upstream);
    query.append_pair("endpoint", endpoint);
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    if let Some(weight) = weight {
        query.append_pair("weight", &weight.to_string());
    }
    let path = format!("/endpoints?{}", query.finish());
    let body = request(addr, "POST", &path, token)?;
    let endpoint: Endpoint =
        serde_json::from_slice(&body).map_err(|source| EndpointsError::Json { addr, source })?;
    write_table(&[endpoint], out)
}

fn write_table(endpoints: &[Endpoint], out: &mut impl Write) -> Result<(), EndpointsError> {
    let rows: Vec<[String; 7]> = endpoints
        .iter()
        .map(|e| {
            let state = if e.overridden {
                format!("{} (set)", e.state)
            } else {
                e.state.clone()
            };
            let health = match (e.healthy, e.ejected_seconds) {
                (true, _) => "healthy".to_owned(),
                (false, Some(seconds)) => format!("ejected {seconds:.0}s"),
                (false, None) => "failing checks".to_owned(),
            };
            [
                e.upstream.clone(),
                e.endpoint.clone(),
                state,
                e.weight.to_string(),
                health,
                e.in_flight.to_string(),
                e.requests.to_string(),
            ]
        })
        .collect();
    table(
        out,
        [
            "UPSTREAM",
            "ENDPOINT",
            "STATE",
            "WEIGHT",
            "HEALTH",
            "IN FLIGHT",
            "REQUESTS",
        ],
        &rows,
    )
    .map_err(EndpointsError::Write)
}
