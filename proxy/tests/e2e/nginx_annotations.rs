//! ingress-nginx's annotations on Gantry, each checked against what ingress-nginx's
//! documentation says it does (docs/user-guide/nginx-configuration/annotations.md, v1.15):
//! rate limits with their burst, allow and deny source ranges, rewrite-target with regex
//! capture groups, CORS, basic auth from a Secret; snippets refused and everything else reported.

use crate::support::config::{GANTRY_CLASS, service};
use crate::support::{ConfigDir, Gantry, clients, upstream};

/// An Ingress `name` on `host` with ingress-nginx `annotations` (without their prefix) and
/// `(path, pathType)` paths, all to Service `echo`.
fn annotated(
    name: &str,
    host: &str,
    annotations: &[(&str, &str)],
    paths: &[(&str, &str)],
) -> String {
    let mut metadata = String::from("\n  annotations:");
    for (key, value) in annotations {
        metadata.push_str(&format!(
            "\n    nginx.ingress.kubernetes.io/{key}: \"{value}\""
        ));
    }
    let mut yaml = crate::support::config::ingress_head("default", name, Some(host), &metadata);
    for (path, path_type) in paths {
        yaml.push_str(&format!(
            "          - path: \"{path}\"
            pathType: {path_type}
            backend:
              service:
                name: echo
                port:
                  name: http
"
        ));
    }
    yaml
}

#[tokio::test]
async fn ingress_nginx_annotations_behave_as_ingress_nginx_documents_them() {
    let echo = upstream::echo("echo").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "echo.yaml",
        &service("default", "echo", "http", None, &[(echo.addr, true)]),
    );
    config.write(
        "secret.yaml",
        // `htpasswd -c auth carol` (Apache MD5, htpasswd's default), as the ingress-nginx
        // example stores it: `kubectl create secret generic basic-auth --from-file=auth`.
        "apiVersion: v1
kind: Secret
metadata: {name: basic-auth, namespace: default}
type: Opaque
stringData:
  auth: |
    carol:$apr1$r4nd0m00$fPOHg4sbMk1d5HZ7AAUQS.
",
    );
    let ingresses = [
        // "limit-rpm: number of requests accepted from a given IP each minute. The burst limit
        // is set to this limit multiplied by the burst multiplier"; nginx passes burst + 1 at
        // once. 1 a minute with a multiplier of 3: 4 pass, then 503 (limit-req-status-code).
        annotated(
            "limited",
            "limited.test",
            &[("limit-rpm", "1"), ("limit-burst-multiplier", "3")],
            &[("/", "Prefix")],
        ),
        // "limit-whitelist: client IP source ranges to be excluded from rate-limiting".
        annotated(
            "exempt",
            "exempt.test",
            &[("limit-rps", "1"), ("limit-whitelist", "127.0.0.1/32")],
            &[("/", "Prefix")],
        ),
        // "whitelist-source-range: a comma-separated list of IP ranges" allowed; others get 403.
        annotated(
            "office",
            "office.test",
            &[("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16")],
            &[("/", "Prefix")],
        ),
        annotated(
            "local",
            "local.test",
            &[("whitelist-source-range", "10.0.0.0/8,127.0.0.1/32")],
            &[("/", "Prefix")],
        ),
        // "denylist-source-range: a comma-separated list of IP ranges" refused.
        annotated(
            "blocked",
            "blocked.test",
            &[("denylist-source-range", "127.0.0.0/8")],
            &[("/", "Prefix")],
        ),
        // The rewrite example of ingress-nginx's docs: `/something(/|$)(.*)` with `/$2`.
        annotated(
            "rewrite",
            "rewrite.test",
            &[("use-regex", "true"), ("rewrite-target", "/$2")],
            &[("/something(/|$)(.*)", "ImplementationSpecific")],
        ),
        // "enable-cors" with the defaults the docs list.
        annotated(
            "cors",
            "cors.test",
            &[("enable-cors", "true")],
            &[("/", "Prefix")],
        ),
        annotated(
            "cors-list",
            "cors-list.test",
            &[
                ("enable-cors", "true"),
                (
                    "cors-allow-origin",
                    "https://app.example.test, https://*.example.org",
                ),
                ("cors-allow-credentials", "false"),
                ("cors-max-age", "60"),
            ],
            &[("/", "Prefix")],
        ),
        // "auth-type: basic", "auth-secret" with key `auth`, "auth-realm".
        annotated(
            "auth",
            "auth.test",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "basic-auth"),
                ("auth-realm", "Authentication Required - carol"),
            ],
            &[("/", "Prefix")],
        ),
        annotated(
            "auth-missing",
            "auth-missing.test",
            &[("auth-type", "basic"), ("auth-secret", "nope")],
            &[("/", "Prefix")],
        ),
        // Refused and not honoured: reported, the rest of the Ingress serves.
        annotated(
            "snippets",
            "snippets.test",
            &[
                ("configuration-snippet", "more_set_headers 'X: y';"),
                ("proxy-buffering", "on"),
                ("enable-corz", "true"),
            ],
            &[("/", "Prefix")],
        ),
    ];
    config.write("ingresses.yaml", &ingresses.join("---\n"));
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    // Rate limits: 4 pass at once, the rest get 503, even from several connections.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let mut batch = Vec::new();
        for _ in 0..3 {
            let client = clients::http1();
            let url = gantry.url("/");
            batch.push(tokio::spawn(async move {
                client
                    .get(url)
                    .header("host", "limited.test")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for task in batch {
            statuses.push(task.await.unwrap());
        }
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 503, 503, 503, 503, 503, 503, 503, 503]
    );
    for _ in 0..10 {
        assert_eq!(
            gantry
                .send(&client, "GET", "exempt.test", "/", &[])
                .await
                .status(),
            200
        );
    }

    // Source ranges: the test connects from 127.0.0.1.
    assert_eq!(
        gantry
            .send(&client, "GET", "office.test", "/", &[])
            .await
            .status(),
        403
    );
    assert_eq!(
        gantry
            .send(&client, "GET", "local.test", "/", &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        gantry
            .send(&client, "GET", "blocked.test", "/", &[])
            .await
            .status(),
        403
    );
    // X-Forwarded-For is not believed: ingress-nginx reads the connection's address unless its
    // real-ip settings say otherwise.
    let spoofed = gantry
        .send(
            &client,
            "GET",
            "office.test",
            "/",
            &[("x-forwarded-for", "10.1.1.1")],
        )
        .await;
    assert_eq!(spoofed.status(), 403);

    // Rewrites: "rewrite.bar.com/something/new rewrites to rewrite.bar.com/new", the query kept;
    // paths are case-insensitive regular expressions.
    let seen: serde_json::Value = gantry
        .send(&client, "GET", "rewrite.test", "/something/new?q=1", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/new?q=1");
    let seen: serde_json::Value = gantry
        .send(&client, "GET", "rewrite.test", "/SOMETHING", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/");
    assert_eq!(
        gantry
            .send(&client, "GET", "rewrite.test", "/other", &[])
            .await
            .status(),
        404
    );

    // CORS with the defaults: a preflight is answered 204 by the proxy with every header.
    let preflight = gantry
        .send(
            &client,
            "OPTIONS",
            "cors.test",
            "/x",
            &[
                ("origin", "https://any.example"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, Content-Type, Range, Authorization"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "1728000");
    let simple = gantry
        .send(
            &client,
            "GET",
            "cors.test",
            "/x",
            &[("origin", "https://any.example")],
        )
        .await;
    assert_eq!(simple.status(), 200);
    assert_eq!(simple.headers()["access-control-allow-origin"], "*");
    // A list of origins: one matching origin is echoed, a wildcard covers one label.
    let listed = gantry
        .send(
            &client,
            "GET",
            "cors-list.test",
            "/",
            &[("origin", "https://shop.example.org")],
        )
        .await;
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://shop.example.org"
    );
    assert!(
        listed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert_eq!(listed.headers()["access-control-max-age"], "60");
    let other = gantry
        .send(
            &client,
            "GET",
            "cors-list.test",
            "/",
            &[("origin", "https://evil.test")],
        )
        .await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Basic auth: 401 with the realm; the right password passes and is not forwarded.
    let challenge = gantry.send(&client, "GET", "auth.test", "/", &[]).await;
    assert_eq!(challenge.status(), 401);
    assert_eq!(
        challenge.headers()["www-authenticate"],
        "Basic realm=\"Authentication Required - carol\""
    );
    let passed = client
        .get(gantry.url("/"))
        .header("host", "auth.test")
        .basic_auth("carol", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(passed.status(), 200);
    let seen: serde_json::Value = passed.json().await.unwrap();
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // A missing Secret closes the routes, as ingress-nginx answers 503.
    assert_eq!(
        gantry
            .send(&client, "GET", "auth-missing.test", "/", &[])
            .await
            .status(),
        503
    );

    // Snippets are refused, other annotations reported; the Ingress still serves.
    assert_eq!(
        gantry
            .send(&client, "GET", "snippets.test", "/", &[])
            .await
            .status(),
        200
    );
    let problems = gantry.problems().await;
    for wanted in [
        "Ingress default/snippets: metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]: raw nginx configuration cannot be applied",
        "Ingress default/snippets: metadata.annotations[nginx.ingress.kubernetes.io/proxy-buffering]: ingress-nginx annotation that Gantry does not honour",
        "Ingress default/snippets: metadata.annotations[nginx.ingress.kubernetes.io/enable-corz]: not an ingress-nginx annotation",
        "Ingress default/auth-missing: metadata.annotations[nginx.ingress.kubernetes.io/auth-secret]: Secret default/nope not found",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no {wanted:?} in {problems:#?}"
        );
    }
    // The honoured ones are not reported.
    assert!(
        !problems.iter().any(|p| p.contains("default/limited")
            || p.contains("default/rewrite")
            || p.contains("default/cors")),
        "{problems:#?}"
    );
}
