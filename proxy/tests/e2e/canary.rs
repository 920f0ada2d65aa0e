//! Canary Ingresses as ingress-nginx defines them (docs/user-guide/nginx-configuration/
//! annotations.md, "Canary"): a second Ingress with `canary: "true"` on the same host and path
//! takes requests by `canary-by-header` (`always` / `never`, or a value, or a pattern), then
//! `canary-by-cookie` (`always` / `never`), then `canary-weight` out of `canary-weight-total`;
//! every other request goes to the main Ingress's backend. And weighted backends in Gantry's
//! own RoutePolicy (`backendRefs`, the Gateway API's weighted `HTTPBackendRef`s: each takes
//! weight / sum of weights of the requests, weight 0 none).

use crate::support::config::{GANTRY_CLASS, nginx_ingress as ingress, service};
use crate::support::upstream;
use crate::support::{ConfigDir, Gantry, clients, wait_until};

#[tokio::test]
async fn canaries_take_requests_by_header_then_cookie_then_weight() {
    let stable = upstream::echo("stable").await;
    let canary = upstream::echo("canary").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "services.yaml",
        &[
            service("default", "stable", "http", None, &[(stable.addr, true)]),
            service("default", "canary", "http", None, &[(canary.addr, true)]),
        ]
        .join("---\n"),
    );
    let canary_on = |name: &str, host: &str, rules: &[(&str, &str)]| {
        let mut annotations = vec![("canary", "true")];
        annotations.extend_from_slice(rules);
        ingress(name, host, "canary", &annotations)
    };
    config.write(
        "ingresses.yaml",
        &[
            ingress("main", "shop.test", "stable", &[]),
            canary_on(
                "rules",
                "shop.test",
                &[
                    ("canary-by-header", "x-canary"),
                    ("canary-by-cookie", "canary"),
                ],
            ),
            ingress("main-weighted", "weighted.test", "stable", &[]),
            canary_on("weighted", "weighted.test", &[("canary-weight", "30")]),
            ingress("main-valued", "valued.test", "stable", &[]),
            canary_on(
                "valued",
                "valued.test",
                &[
                    ("canary-by-header", "x-user"),
                    ("canary-by-header-value", "beta"),
                ],
            ),
            ingress("main-pattern", "pattern.test", "stable", &[]),
            canary_on(
                "pattern",
                "pattern.test",
                &[
                    ("canary-by-header", "x-user"),
                    ("canary-by-header-pattern", "^beta-[0-9]+$"),
                ],
            ),
            // Bad: a canary with no main Ingress, a second canary on one route, a weight above
            // its total, canary rules on an Ingress that is no canary.
            canary_on("orphan", "nobody.test", &[("canary-weight", "50")]),
            canary_on("second", "shop.test", &[("canary-weight", "100")]),
            ingress("main-heavy", "heavy.test", "stable", &[]),
            canary_on(
                "heavy",
                "heavy.test",
                &[("canary-weight", "150"), ("canary-by-header", "x-canary")],
            ),
            ingress("plain", "plain.test", "stable", &[("canary-weight", "50")]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    // By header, then by cookie; without either (and no weight) the main backend.
    for (headers, expected) in [
        (vec![("x-canary", "always")], "canary"),
        (vec![("x-canary", "never")], "stable"),
        (
            vec![("x-canary", "never"), ("cookie", "canary=always")],
            "stable",
        ),
        (
            vec![("x-canary", "maybe"), ("cookie", "canary=always")],
            "canary",
        ),
        (vec![("cookie", "a=1; canary=always")], "canary"),
        (vec![("cookie", "canary=never")], "stable"),
        (vec![("cookie", "canary=perhaps")], "stable"),
        (vec![], "stable"),
    ] {
        assert_eq!(
            gantry.served_by(&client, "shop.test", &headers).await,
            expected,
            "{headers:?}"
        );
    }

    // A header value, then a pattern: with either, `always` is just another value.
    for (host, user, expected) in [
        ("valued.test", "beta", "canary"),
        ("valued.test", "alpha", "stable"),
        ("valued.test", "always", "stable"),
        ("pattern.test", "beta-42", "canary"),
        ("pattern.test", "beta-x", "stable"),
    ] {
        assert_eq!(
            gantry.served_by(&client, host, &[("x-user", user)]).await,
            expected,
            "{host} x-user: {user}"
        );
    }

    // 30 of 100: 400 requests give 120 on average (binomial sd 9.2).
    let mut to_canary = 0;
    for _ in 0..400 {
        if gantry.served_by(&client, "weighted.test", &[]).await == "canary" {
            to_canary += 1;
        }
    }
    assert!(
        (80..=160).contains(&to_canary),
        "{to_canary} of 400 to the canary"
    );

    gantry
        .assert_problems(&[
            "Ingress default/orphan: spec.rules[0].http.paths[0]: canary: no Ingress without canary serves host nobody.test path /",
            "Ingress default/second: spec.rules[0].http.paths[0]: canary: the route already has canary Ingress default/rules (older)",
            "Ingress default/heavy: metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]: \"150\" is not a whole number from 0 to the weight total (100)",
            "Ingress default/plain: metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]: has no effect without canary: \"true\"",
        ])
        .await;
    // /config shows the canary on the main route.
    let route = gantry.route_view("shop.test").await;
    assert_eq!(route["canary"]["ingress"], "default/rules", "{route:#}");
    assert_eq!(route["canary"]["byHeader"], "x-canary");
    assert_eq!(route["canary"]["byCookie"], "canary");
    assert_eq!(route["canary"]["upstream"], "default/canary:http");

    // What a problem leaves out does not change what the rest does.
    assert_eq!(gantry.served_by(&client, "heavy.test", &[]).await, "stable");
    assert_eq!(
        gantry
            .served_by(&client, "heavy.test", &[("x-canary", "always")])
            .await,
        "canary"
    );
    assert_eq!(gantry.served_by(&client, "plain.test", &[]).await, "stable");
}

/// A RoutePolicy `backendRefs` naming `(service, weight)` for Ingress `ingress`.
fn split_policy(ingress: &str, backends: &[(&str, u32)]) -> String {
    let mut refs = String::new();
    for (service, weight) in backends {
        refs.push_str(&format!(
            "\n    - {{name: {service}, port: 80, weight: {weight}}}"
        ));
    }
    format!(
        "apiVersion: gantry.dev/v1alpha1
kind: RoutePolicy
metadata: {{name: {ingress}, namespace: default}}
spec:
  targetRefs: [{{group: networking.k8s.io, kind: Ingress, name: {ingress}}}]
  backendRefs:{refs}
"
    )
}

#[tokio::test]
async fn a_route_policy_splits_requests_over_weighted_backends() {
    let v1 = upstream::echo("v1").await;
    let v2 = upstream::echo("v2").await;
    let v3 = upstream::echo("v3").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "services.yaml",
        &[
            service("default", "v1", "http", None, &[(v1.addr, true)]),
            service("default", "v2", "http", None, &[(v2.addr, true)]),
            service("default", "v3", "http", None, &[(v3.addr, true)]),
        ]
        .join("---\n"),
    );
    config.write(
        "ingresses.yaml",
        &[
            ingress("shop", "shop.test", "v1", &[]),
            ingress("missing", "missing.test", "v1", &[]),
        ]
        .join("---\n"),
    );
    config.write(
        "policies.yaml",
        &[
            split_policy("shop", &[("v1", 60), ("v2", 30), ("v3", 10), ("v4", 0)]),
            split_policy("missing", &[("v1", 1), ("nowhere", 1)]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;

    // 600 requests: v1 360 on average (binomial sd 12.0), v2 180 (sd 11.2), v3 60 (sd 7.3);
    // five standard deviations either way, and nothing to weight 0.
    let counts = gantry.answers("shop.test", 600).await;
    let share = |name: &str| counts.get(name).copied().unwrap_or(0);
    assert_eq!(share("v1") + share("v2") + share("v3"), 600, "{counts:?}");
    assert!((300..=420).contains(&share("v1")), "{counts:?}");
    assert!((124..=236).contains(&share("v2")), "{counts:?}");
    assert!((24..=96).contains(&share("v3")), "{counts:?}");

    // A Service that is not there: its share is answered 503, the rest is served, and the
    // problem names the policy's field.
    let counts = gantry.answers("missing.test", 200).await;
    assert_eq!(
        counts.get("v1").copied().unwrap_or(0) + counts.get("status 503").copied().unwrap_or(0),
        200,
        "{counts:?}"
    );
    assert!(
        (60..=140).contains(&counts.get("v1").copied().unwrap_or(0)),
        "{counts:?}"
    );
    gantry
        .assert_problems(&[
            "RoutePolicy default/missing: spec.backendRefs[1]: Service default/nowhere not found",
        ])
        .await;

    // /config shows the split on the route.
    let route = gantry.route_view("shop.test").await;
    let split: Vec<_> = route["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["weight"].as_u64().unwrap(),
                b["backend"]["upstream"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            (60, "default/v1:http"),
            (30, "default/v2:http"),
            (10, "default/v3:http")
        ]
    );

    // Shifting every request to v2 takes effect on reload; a policy whose weights are all 0 is
    // refused and the last one applied is not kept: the route is the Ingress's own again.
    config.write(
        "policies.yaml",
        &split_policy("shop", &[("v1", 0), ("v2", 1)]),
    );
    wait_until("every request to v2", || async {
        gantry.answers("shop.test", 20).await.get("v2") == Some(&20)
    })
    .await;
    config.write("policies.yaml", &split_policy("shop", &[("v2", 0)]));
    wait_until("the Ingress's own backend again", || async {
        gantry.answers("shop.test", 20).await.get("v1") == Some(&20)
    })
    .await;
    gantry
        .assert_problems(&["RoutePolicy default/shop: spec.backendRefs: every weight is 0"])
        .await;
}
