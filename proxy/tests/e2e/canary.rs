//! Canary Ingresses as ingress-nginx defines them (docs/user-guide/nginx-configuration/
//! annotations.md, "Canary"): a second Ingress with `canary: "true"` on the same host and path
//! takes requests by `canary-by-header` (`always` / `never`, or a value, or a pattern), then
//! `canary-by-cookie` (`always` / `never`), then `canary-weight` out of `canary-weight-total`;
//! every other request goes to the main Ingress's backend.

use crate::support::config::{GANTRY_CLASS, nginx_ingress as ingress, service};
use crate::support::upstream;
use crate::support::{ConfigDir, Gantry, clients};

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

    let problems = gantry.problems().await;
    for wanted in [
        "Ingress default/orphan: spec.rules[0].http.paths[0]: canary: no Ingress without canary serves host nobody.test path /",
        "Ingress default/second: spec.rules[0].http.paths[0]: canary: the route already has canary Ingress default/rules (older)",
        "Ingress default/heavy: metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]: \"150\" is not a whole number from 0 to the weight total (100)",
        "Ingress default/plain: metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]: has no effect without canary: \"true\"",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no problem {wanted:?} in {problems:#?}"
        );
    }
    // /config shows the canary on the main route.
    let config_view = gantry.config().await;
    let route = config_view["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "shop.test")
        .unwrap();
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
