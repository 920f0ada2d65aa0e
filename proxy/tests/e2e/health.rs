//! Endpoint health with real endpoints of one Service on 127.0.0.x: passive ejection and active
//! checks as a BackendPolicy sets them (field names and defaults from Envoy Gateway's
//! BackendTrafficPolicy `healthCheck`, whose semantics are Envoy's outlier detection: failures
//! in a row eject for a base time, capped by `maxEjectionPercent`), endpoints leaving by their
//! EndpointSlice conditions (`ready: false` with `terminating: true`, as the EndpointSlice API
//! marks a terminating Pod), and an endpoint killed without notice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::config::{
    GANTRY_CLASS, READY, TERMINATING, backend_policy, nginx_ingress, service_with_conditions,
};
use crate::support::upstream::{self, Upstream};
use crate::support::{ConfigDir, Gantry, clients, wait_until};

/// Service `name` (port `http`) whose endpoints are `endpoints`, each with its conditions.
fn service(name: &str, endpoints: &[(SocketAddr, &str)]) -> String {
    service_with_conditions("default", name, "http", None, endpoints)
}

fn ready(endpoints: &[&Upstream]) -> Vec<(SocketAddr, &'static str)> {
    endpoints.iter().map(|u| (u.addr, READY)).collect()
}

/// A BackendPolicy on Service `service` with `health_check` (YAML, indented for its place).
fn policy(service: &str, health_check: &str) -> String {
    backend_policy(service, &format!("  healthCheck:\n{health_check}"))
}

// Passive health, as Envoy's outlier detection: `c` starts answering 500; after
// `consecutive5XxErrors` of them in a row it is ejected and gets no requests while its peers
// are there; when its ejection time has passed it is taken back. Two Services over the same
// three endpoints, one ejecting for a minute (to see that nothing reaches `c` meanwhile) and
// one for a second (to see it come back), show both without a test waiting on a clock.
#[tokio::test]
async fn passive_health_ejects_an_endpoint_failing_in_a_row_and_takes_it_back_after_its_ejection_time()
 {
    let [a, b, c] = upstream::three_echoes().await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    for (name, base) in [("long", "60s"), ("short", "1s")] {
        config.write(
            &format!("{name}.yaml"),
            &[
                service(name, &ready(&[&a, &b, &c])),
                policy(
                    name,
                    &format!(
                        "    passive: {{consecutive5XxErrors: 3, baseEjectionTime: {base}, \
                         maxEjectionPercent: 50}}\n"
                    ),
                ),
                nginx_ingress(name, &format!("{name}.test"), name, &[]),
            ]
            .join("---\n"),
        );
    }
    let gantry = Gantry::start(config.path()).await;

    c.seen.fail_with.store(500, Ordering::SeqCst);
    for name in ["long", "short"] {
        // Round robin sends every third request to `c`: three 500s in a row take nine or so.
        let host = format!("{name}.test");
        let upstream = format!("default/{name}:http");
        wait_until(&format!("{name}: c ejected"), || async {
            gantry.answers(&host, 3).await;
            // (The one-second ejection may have ended and come again meanwhile.)
            gantry
                .endpoint_metric(
                    "gantry_upstream_endpoint_ejections_total",
                    &upstream,
                    c.addr,
                )
                .await
                >= 1.0
        })
        .await;
    }
    // Ejected for a minute: its peers take everything, and nothing fails.
    let counts = gantry.answers("long.test", 30).await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "while c is ejected: {counts:?}"
    );
    assert_eq!(
        gantry
            .endpoint_metric(
                "gantry_upstream_endpoint_usable",
                "default/long:http",
                c.addr
            )
            .await,
        0.0
    );

    // Mended, and its one-second ejection over: back in turn on `short`.
    c.seen.fail_with.store(0, Ordering::SeqCst);
    wait_until("c serving short.test again", || async {
        gantry.answers("short.test", 3).await.contains_key("c")
    })
    .await;
    let counts = gantry.answers("short.test", 30).await;
    assert_eq!(counts.len(), 3, "all three in turn again: {counts:?}");
}

// An active HTTP check: `c` fails its `/healthz` (503) while no request goes its way, and is
// taken out after `unhealthyThreshold` failed probes; when it passes again it is back.
#[tokio::test]
async fn an_active_check_takes_out_an_endpoint_failing_it_and_brings_it_back_when_it_passes() {
    let [a, b, c] = upstream::three_echoes().await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "web.yaml",
        &[
            service("web", &ready(&[&a, &b, &c])),
            policy(
                "web",
                "    active:
      type: HTTP
      interval: 100ms
      timeout: 1s
      unhealthyThreshold: 2
      healthyThreshold: 2
      http: {path: /healthz, expectedStatuses: [200]}
",
            ),
            nginx_ingress("web", "web.test", "web", &[]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let usable = || {
        gantry.endpoint_metric(
            "gantry_upstream_endpoint_usable",
            "default/web:http",
            c.addr,
        )
    };
    wait_until("c probed and passing", || async {
        c.seen.requests.load(Ordering::SeqCst) >= 2 && usable().await == 1.0
    })
    .await;
    assert_eq!(gantry.answers("web.test", 30).await.len(), 3);

    c.seen.fail_with.store(503, Ordering::SeqCst);
    wait_until("c failing its check", || async { usable().await == 0.0 }).await;
    let counts = gantry.answers("web.test", 30).await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "while c fails its check: {counts:?}"
    );
    assert!(
        gantry.log().contains("endpoint fails its health check"),
        "{}",
        gantry.log()
    );

    c.seen.fail_with.store(0, Ordering::SeqCst);
    wait_until("c passing again", || async { usable().await == 1.0 }).await;
    assert_eq!(gantry.answers("web.test", 30).await.len(), 3);
    let transitions = gantry
        .endpoint_metric(
            "gantry_upstream_endpoint_check_transitions_total",
            "default/web:http",
            c.addr,
        )
        .await;
    assert_eq!(transitions, 2.0, "failing, then passing again");
}

/// Clients sending GETs for `host` back to back on keep-alive connections until told to stop,
/// counting answers and every failure (any status but 200, or no answer).
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(gantry: &Gantry, host: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, answered) = (stop.clone(), answered.clone());
                let url = gantry.url("/");
                let host = host.to_owned();
                tokio::spawn(async move {
                    let client = clients::http1();
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        match client.get(&url).header("host", &host).send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(format!("{e}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load {
            stop,
            answered,
            tasks,
        }
    }

    /// Waits for `n` more answers.
    async fn answers(&self, n: usize) {
        let target = self.answered.load(Ordering::SeqCst) + n;
        wait_until(&format!("{n} more answers"), || async {
            self.answered.load(Ordering::SeqCst) >= target
        })
        .await;
    }

    /// Stops the clients; every failure they met.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.unwrap());
        }
        failures
    }
}

// A rolling restart under load, as a Deployment does it: each endpoint in turn is replaced by a
// new one that is ready in the EndpointSlice, the old one is marked terminating, it finishes
// what it has, and then it is killed. Not one request fails.
#[tokio::test]
async fn a_rolling_restart_of_every_endpoint_under_load_fails_no_request() {
    let mut endpoints: Vec<Upstream> = upstream::three_echoes().await.into();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "ingress.yaml",
        &nginx_ingress("web", "web.test", "web", &[]),
    );
    let refs: Vec<&Upstream> = endpoints.iter().collect();
    config.write("web.yaml", &service("web", &ready(&refs)));
    let gantry = Gantry::start(config.path()).await;
    let load = Load::start(&gantry, "web.test", 4);
    load.answers(100).await;

    for round in 0..3 {
        let old = endpoints.remove(0);
        let new =
            upstream::echo_at(&format!("127.0.0.{}", 5 + round), &format!("new-{round}")).await;
        // The new one ready, the old one terminating.
        let mut slice: Vec<_> = endpoints.iter().map(|u| (u.addr, READY)).collect();
        slice.push((new.addr, READY));
        slice.push((old.addr, TERMINATING));
        let generation = gantry.generation().await;
        config.write("web.yaml", &service("web", &slice));
        gantry.wait_generation_after(generation).await;
        // It finishes the requests it has, and gets no more.
        wait_until("the old endpoint idle", || async {
            old.seen.in_flight.load(Ordering::SeqCst) == 0
        })
        .await;
        let served = old.seen.requests.load(Ordering::SeqCst);
        load.answers(50).await;
        assert_eq!(
            old.seen.requests.load(Ordering::SeqCst),
            served,
            "a terminating endpoint got new requests"
        );
        old.kill();
        let generation = gantry.generation().await;
        slice.pop();
        config.write("web.yaml", &service("web", &slice));
        gantry.wait_generation_after(generation).await;
        load.answers(50).await;
        endpoints.push(new);
    }
    let answered = load.answered.load(Ordering::SeqCst);
    let failures = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {answered} failed: {failures:?}",
        failures.len()
    );
    for new in &endpoints {
        assert!(
            new.seen.requests.load(Ordering::SeqCst) > 0,
            "{} got nothing",
            new.addr
        );
    }
}

// One endpoint of three killed without notice (its EndpointSlice unchanged): what was on its
// connections at that moment may fail, nothing after. A connection refused is tried on another
// endpoint, and passive health ejects the dead one after five in a row.
#[tokio::test]
async fn an_endpoint_killed_without_notice_fails_at_most_what_it_had_in_flight() {
    let [a, b, c] = upstream::three_echoes().await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "ingress.yaml",
        &nginx_ingress("web", "web.test", "web", &[]),
    );
    config.write("web.yaml", &service("web", &ready(&[&a, &b, &c])));
    let gantry = Gantry::start(config.path()).await;
    let clients = 4;
    let load = Load::start(&gantry, "web.test", clients);
    load.answers(100).await;
    let dead = c.addr;
    c.kill();
    load.answers(300).await;
    let answered = load.answered.load(Ordering::SeqCst);
    let failures = load.stop().await;
    // At most one request per client can have been on the dead endpoint's connections.
    assert!(
        failures.len() <= clients,
        "{} of {answered} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        gantry
            .endpoint_metric(
                "gantry_upstream_endpoint_ejections_total",
                "default/web:http",
                dead
            )
            .await,
        1.0,
        "{}",
        gantry.metrics().await
    );
    assert_eq!(
        gantry
            .endpoint_metric("gantry_upstream_endpoint_usable", "default/web:http", dead)
            .await,
        0.0
    );
}
