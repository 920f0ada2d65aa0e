//! Retries with real endpoints of one Service on 127.0.0.x, as ingress-nginx's annotations
//! define them (docs/user-guide/nginx-configuration/annotations.md, "Custom timeouts":
//! `proxy-next-upstream`, `-tries`, `-timeout`, with nginx's `proxy_next_upstream` semantics:
//! a request that reached an upstream goes again only if it is idempotent, unless
//! `non_idempotent` is given) and as a BackendPolicy's `retry` (Envoy Gateway's field names;
//! the budget is Envoy's retry budget). One endpoint of three answers 503 throughout. gRPC
//! calls go again on the gRPC statuses the policy names (Envoy's `retry_on` gRPC triggers,
//! read from a trailers-only response head).

use std::sync::atomic::Ordering;

use crate::support::config::{GANTRY_CLASS, backend_policy, nginx_ingress, service};
use crate::support::upstream::{self, Upstream};
use crate::support::{ConfigDir, Gantry, clients};

fn web_service(endpoints: &[&Upstream]) -> String {
    let endpoints: Vec<_> = endpoints.iter().map(|u| (u.addr, true)).collect();
    service("default", "web", "http", None, &endpoints)
}

/// Three endpoints, `c` answering 503 to everything, and Ingresses for Service `web`. (Keep
/// all three bound: a dropped endpoint stops accepting.)
async fn one_failing(ingresses: &[String], extra: &str) -> (Gantry, [Upstream; 3], ConfigDir) {
    let endpoints = upstream::three_echoes().await;
    endpoints[2].seen.fail_with.store(503, Ordering::SeqCst);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let [a, b, c] = &endpoints;
    config.write("svc.yaml", &web_service(&[a, b, c]));
    config.write("ingress.yaml", &ingresses.join("---\n"));
    if !extra.is_empty() {
        config.write("extra.yaml", extra);
    }
    let gantry = Gantry::start(config.path()).await;
    (gantry, endpoints, config)
}

/// The statuses of `n` requests `method /` for `host`, with `body` (sent chunked when
/// `chunked`, which takes the request down Pingora's path).
async fn statuses(
    gantry: &Gantry,
    method: &str,
    host: &str,
    n: usize,
    body: Option<(&'static str, bool)>,
) -> Vec<u16> {
    let client = clients::http1();
    let mut statuses = Vec::new();
    for _ in 0..n {
        let mut request = client
            .request(method.parse().unwrap(), gantry.url("/"))
            .header("host", host);
        request = match body {
            Some((text, true)) => {
                let frames = futures_util::stream::iter([Ok::<_, std::io::Error>(
                    hyper::body::Frame::data(bytes::Bytes::from_static(text.as_bytes())),
                )]);
                // No length known beforehand: sent chunked.
                request.body(reqwest::Body::wrap(http_body_util::StreamBody::new(frames)))
            }
            Some((text, false)) => request.body(text),
            None => request,
        };
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    statuses
}

// `proxy-next-upstream: error timeout http_503`: the failing endpoint's 503s are never seen, as
// its requests go on to another endpoint; without `http_503` (ingress-nginx's default,
// `error timeout`) a third of the answers are its 503s.
#[tokio::test]
async fn a_status_in_proxy_next_upstream_is_retried_on_another_endpoint_and_others_are_not() {
    let (gantry, [_a, _b, c], _config) = one_failing(
        &[
            nginx_ingress(
                "retried",
                "retried.test",
                "web",
                &[("proxy-next-upstream", "error timeout http_503")],
            ),
            nginx_ingress("plain", "plain.test", "web", &[]),
        ],
        "",
    )
    .await;
    let retried = statuses(&gantry, "GET", "retried.test", 30, None).await;
    assert!(retried.iter().all(|s| *s == 200), "{retried:?}");
    assert!(
        c.seen.requests.load(Ordering::SeqCst) >= 5,
        "the failing endpoint was asked"
    );
    assert!(
        gantry
            .endpoint_metric(
                "gantry_upstream_endpoint_retries_total",
                "default/web:http",
                c.addr
            )
            .await
            >= 5.0
    );
    let plain = statuses(&gantry, "GET", "plain.test", 30, None).await;
    let failed = plain.iter().filter(|s| **s == 503).count();
    assert!(
        (5..=15).contains(&failed),
        "round robin gives c a third: {plain:?}"
    );
}

// nginx passes a request that reached an upstream to the next one only when it is idempotent:
// a POST's 503 is the client's answer, unless `non_idempotent` is given. A PUT (idempotent)
// with a chunked body goes down Pingora's path, whose retry buffer keeps the body: retried too,
// body and all.
#[tokio::test]
async fn a_post_is_retried_only_with_non_idempotent_and_a_streamed_put_keeps_its_body() {
    let (gantry, [a, b, _c], _config) = one_failing(
        &[
            nginx_ingress(
                "idem",
                "idem.test",
                "web",
                &[("proxy-next-upstream", "error http_503")],
            ),
            nginx_ingress(
                "any",
                "any.test",
                "web",
                &[("proxy-next-upstream", "error http_503 non_idempotent")],
            ),
        ],
        "",
    )
    .await;
    let posts = statuses(&gantry, "POST", "idem.test", 30, Some(("order", false))).await;
    assert!(posts.contains(&503), "a POST went again: {posts:?}");
    let posts = statuses(&gantry, "POST", "any.test", 30, Some(("order", false))).await;
    assert!(posts.iter().all(|s| *s == 200), "{posts:?}");
    let served = a.seen.requests.load(Ordering::SeqCst) + b.seen.requests.load(Ordering::SeqCst);
    let puts = statuses(
        &gantry,
        "PUT",
        "idem.test",
        30,
        Some(("chunked body", true)),
    )
    .await;
    assert!(puts.iter().all(|s| *s == 200), "{puts:?}");
    assert_eq!(
        a.seen.requests.load(Ordering::SeqCst) + b.seen.requests.load(Ordering::SeqCst) - served,
        30
    );
}

// `proxy-next-upstream-tries: 1` makes one attempt only, and `off` retries nothing: an
// endpoint that refuses connections fails the requests it is given. With the default, a
// refused connection goes to another endpoint.
#[tokio::test]
async fn one_try_or_off_leaves_a_refused_connection_failed() {
    let (a, b) = (
        upstream::echo_at("127.0.0.2", "a").await,
        upstream::echo_at("127.0.0.3", "b").await,
    );
    let dead = upstream::closed_port();
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let endpoints = [(a.addr, true), (b.addr, true), (dead, true)];
    config.write(
        "svc.yaml",
        &service("default", "web", "http", None, &endpoints),
    );
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress(
                "one",
                "one.test",
                "web",
                &[("proxy-next-upstream-tries", "1")],
            ),
            nginx_ingress("off", "off.test", "web", &[("proxy-next-upstream", "off")]),
            nginx_ingress("default", "default.test", "web", &[]),
        ]
        .join("---\n"),
    );
    // Passive health would take the dead endpoint out after five refusals: off for this.
    config.write(
        "policy.yaml",
        &backend_policy(
            "web",
            "  healthCheck: {passive: {consecutiveLocalOriginFailures: 0}}\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    for host in ["one.test", "off.test"] {
        let answers = statuses(&gantry, "GET", host, 12, None).await;
        assert!(answers.contains(&502), "{host}: {answers:?}");
    }
    let answers = statuses(&gantry, "GET", "default.test", 12, None).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
}

// The retry budget (Envoy's): retries in flight at most a share of the requests in flight, with
// a floor. A BackendPolicy retrying 503 with a budget of none lets no retry through, and says so
// in the endpoint's metrics; the same policy with the default budget retries them all.
#[tokio::test]
async fn retries_stay_within_the_budget() {
    let policy = |budget: &str| {
        backend_policy(
            "web",
            &format!(
                "  retry:
    numRetries: 2
    retryOn: {{triggers: [retriable-status-codes], httpStatusCodes: [503]}}
{budget}"
            ),
        )
    };
    let (gantry, [_a, _b, c], config) = one_failing(
        &[nginx_ingress("web", "web.test", "web", &[])],
        &policy("    budget: {percent: 0, minRetryConcurrency: 0}\n"),
    )
    .await;
    let answers = statuses(&gantry, "GET", "web.test", 30, None).await;
    assert!(answers.contains(&503), "{answers:?}");
    assert!(
        gantry
            .endpoint_metric(
                "gantry_upstream_endpoint_retries_over_budget_total",
                "default/web:http",
                c.addr
            )
            .await
            >= 5.0
    );
    let generation = gantry.generation().await;
    config.write("extra.yaml", &policy(""));
    gantry.wait_generation_after(generation).await;
    let answers = statuses(&gantry, "GET", "web.test", 30, None).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
}

// Of two gRPC endpoints, one fails every call with UNAVAILABLE: with `unavailable` among the
// policy's triggers every call succeeds; without a policy the failures reach the client.
#[tokio::test]
async fn grpc_calls_go_again_on_the_grpc_statuses_the_policy_names() {
    use crate::support::grpc;
    let good = grpc::server("good").await;
    let failing = grpc::failing_server("failing", tonic::Code::Unavailable).await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let endpoints = [(good.addr, true), (failing.addr, true)];
    config.write(
        "svc.yaml",
        &[
            service("default", "rpc", "grpc", Some("grpc"), &endpoints),
            service("default", "plain", "grpc", Some("grpc"), &endpoints),
        ]
        .join("---\n"),
    );
    let grpc_ingress = |name: &str, host: &str| {
        crate::support::config::ingress(
            "default",
            name,
            Some(host),
            &[("/", "Prefix", name, "grpc")],
        )
    };
    config.write(
        "ingress.yaml",
        &[
            grpc_ingress("rpc", "rpc.test"),
            grpc_ingress("plain", "plain.test"),
        ]
        .join("---\n"),
    );
    config.write(
        "policy.yaml",
        &backend_policy("rpc", "  retry: {retryOn: {triggers: [unavailable]}}\n"),
    );
    let gantry = Gantry::start(config.path()).await;

    let channel = grpc::channel(gantry.http, "rpc.test").await;
    for n in 0..10 {
        let reply = grpc::unary(channel.clone(), &format!("call {n}")).await;
        assert_eq!(reply.expect("retried on the good endpoint").server, "good");
    }
    assert!(
        failing.seen.requests.load(Ordering::SeqCst) > 0,
        "the failing endpoint was never tried"
    );

    let channel = grpc::channel(gantry.http, "plain.test").await;
    let mut unavailable = 0;
    for n in 0..10 {
        match grpc::unary(channel.clone(), &format!("call {n}")).await {
            Ok(reply) => assert_eq!(reply.server, "good"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                unavailable += 1;
            }
        }
    }
    assert!(
        unavailable > 0,
        "no failure reached the client without a policy"
    );
}
