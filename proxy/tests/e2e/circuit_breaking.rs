//! Circuit breaking per Service port, as a BackendPolicy's `circuitBreaker` sets it (Envoy
//! Gateway's field names; Envoy's semantics: a request over a limit is refused at once with 503,
//! never queued, and Envoy marks it `x-envoy-overloaded`, Gantry `x-gantry-overloaded` with the
//! limit's name).

use std::sync::atomic::Ordering;

use crate::support::config::{backend_policy, nginx_ingress, service_folder};
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
