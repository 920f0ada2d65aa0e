//! Circuit breaking per Service port, as a BackendPolicy's `circuitBreaker` sets it (Envoy
//! Gateway's field names; Envoy's semantics: a request over a limit is refused at once with 503,
//! never queued, and Envoy marks it `x-envoy-overloaded`, Gantry `x-gantry-overloaded` with the
//! limit's name).

use std::sync::atomic::Ordering;

use crate::support::config::{backend_policy, nginx_ingress, service, service_folder};
use crate::support::upstream;
use crate::support::{Gantry, clients, wait_until};

// At most two requests in flight at `web`: with two held by the endpoint, a third is refused at
// once and says why; once they are answered, requests pass again.
#[tokio::test]
async fn requests_over_the_limit_in_flight_are_refused_at_once_and_say_why() {
    let web = upstream::echo_at("127.0.0.2", "web").await;
    web.seen.holding.store(true, Ordering::SeqCst);
    let config = service_folder("web", &[web.addr]);
    config.write(
        "ingress.yaml",
        &nginx_ingress("web", "web.test", "web", &[]),
    );
    config.write(
        "policy.yaml",
        &backend_policy("web", "  circuitBreaker: {maxParallelRequests: 2}\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    // `gantry status` says what the policy took.
    let table = gantry.status_table();
    let row = table.resource("BackendPolicy default/web");
    assert!(
        row.contains(" True ") && row.contains("applies to Service default/web port 80"),
        "{row}"
    );
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = gantry.url("/");
            tokio::spawn(async move {
                let response = clients::http1()
                    .get(url)
                    .header("host", "web.test")
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    wait_until("two requests held by the endpoint", || async {
        web.seen.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;

    let client = clients::http1();
    let refused = gantry.send(&client, "GET", "web.test", "/", &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["x-gantry-overloaded"],
        "max-parallel-requests"
    );
    assert_eq!(
        web.seen.requests.load(Ordering::SeqCst),
        2,
        "the refused request went upstream"
    );

    web.seen.release();
    for request in held {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        gantry
            .send(&client, "GET", "web.test", "/", &[])
            .await
            .status(),
        200
    );
    assert!(
        gantry.metrics().await.contains(
            "gantry_upstream_overflows_total{limit=\"max-parallel-requests\",upstream=\"default/web:http\"} 1"
        ),
        "{}",
        gantry.metrics().await
    );
}

/// Sends a GET for `host` on a client of its own, held by the endpoint until released; gives
/// back the status and the client (whose connection to Gantry stays open).
fn held_request(
    gantry: &Gantry,
    host: &'static str,
) -> tokio::task::JoinHandle<(u16, reqwest::Client)> {
    let url = gantry.url("/");
    tokio::spawn(async move {
        let client = clients::http1();
        let response = client.get(url).header("host", host).send().await.unwrap();
        let status = response.status().as_u16();
        response.bytes().await.unwrap();
        (status, client)
    })
}

// At most two connections open to a Service port: with two in use, a request that needs a
// third is refused at once, on Gantry's own HTTP/1.1 path (`web`) and on Pingora's (`api`,
// which `upstream-vhost` sends there); a request that finds an idle connection is not.
#[tokio::test]
async fn a_request_needing_a_connection_over_the_limit_is_refused() {
    let web = upstream::echo_at("127.0.0.2", "web").await;
    let api = upstream::echo_at("127.0.0.3", "api").await;
    for endpoint in [&web, &api] {
        endpoint.seen.holding.store(true, Ordering::SeqCst);
    }
    let config = service_folder("web", &[web.addr]);
    config.write(
        "api.yaml",
        &service("default", "api", "http", None, &[(api.addr, true)]),
    );
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress("web", "web.test", "web", &[]),
            nginx_ingress(
                "api",
                "api.test",
                "api",
                &[("upstream-vhost", "api.internal")],
            ),
        ]
        .join("---\n"),
    );
    config.write(
        "policy.yaml",
        &[
            backend_policy("web", "  circuitBreaker: {maxConnections: 2}\n"),
            backend_policy("api", "  circuitBreaker: {maxConnections: 2}\n"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    for (endpoint, host) in [(&web, "web.test"), (&api, "api.test")] {
        let held: Vec<_> = (0..2).map(|_| held_request(&gantry, host)).collect();
        wait_until("two requests held by the endpoint", || async {
            endpoint.seen.in_flight.load(Ordering::SeqCst) == 2
        })
        .await;

        let refused = gantry.send(&clients::http1(), "GET", host, "/", &[]).await;
        assert_eq!(refused.status(), 503, "{host}");
        assert_eq!(refused.headers()["x-gantry-overloaded"], "max-connections");
        assert_eq!(endpoint.seen.requests.load(Ordering::SeqCst), 2, "{host}");

        endpoint.seen.release();
        let mut clients = Vec::new();
        for request in held {
            let (status, client) = request.await.unwrap();
            assert_eq!(status, 200, "{host}");
            clients.push(client);
        }
        if host == "web.test" {
            // Its connection to the endpoint is idle in the pool of the thread that serves this
            // client, and is taken again: no new connection, so no refusal.
            let again = gantry.send(&clients[0], "GET", host, "/", &[]).await;
            assert_eq!(again.status(), 200);
            assert_eq!(web.seen.connections.load(Ordering::SeqCst), 2);
        }
    }
    let metrics = gantry.metrics().await;
    for upstream in ["default/web:http", "default/api:http"] {
        let line = format!(
            "gantry_upstream_overflows_total{{limit=\"max-connections\",upstream=\"{upstream}\"}} 1"
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
}
