//! ingress-nginx's `custom-http-errors` and `default-backend` (annotations.md, and the
//! template's `CUSTOM_ERRORS` locations): an error response with a listed status is replaced by
//! the default backend's answer to `/`, which is told `X-Code`, `X-Format`, `X-Original-URI`,
//! `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port` and `X-Request-ID`; a
//! route whose Service has no endpoint sends its requests there with `X-Code: 503`.

use crate::support::config::{GANTRY_CLASS, nginx_ingress, service};
use crate::support::upstream;
use crate::support::{ConfigDir, Gantry, clients};

#[tokio::test]
async fn listed_errors_and_services_without_endpoints_go_to_the_default_backend() {
    let (app, errors) = (upstream::echo("app").await, upstream::echo("errors").await);
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &[
            service("default", "app", "http", None, &[(app.addr, true)]),
            service("default", "errors", "http", None, &[(errors.addr, true)]),
            service("default", "empty", "http", None, &[]),
        ]
        .join("---\n"),
    );
    let pages = [
        ("custom-http-errors", "404,503"),
        ("default-backend", "errors"),
    ];
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress("shop", "shop.test", "app", &pages),
            nginx_ingress(
                "closed",
                "closed.test",
                "empty",
                &[("default-backend", "errors")],
            ),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let replaced = gantry
        .send(
            &client,
            "GET",
            "shop.test",
            "/status/404?x=1",
            &[("accept", "text/html")],
        )
        .await;
    let body: serde_json::Value = replaced.json().await.unwrap();
    assert_eq!(body["server"], "errors");
    assert_eq!(body["path"], "/");
    let field = |name: &str| body["headers"][name][0].clone();
    assert_eq!(field("x-code"), "404");
    assert_eq!(field("x-format"), "text/html");
    assert_eq!(field("x-original-uri"), "/status/404?x=1");
    assert_eq!(field("x-namespace"), "default");
    assert_eq!(field("x-ingress-name"), "shop");
    assert_eq!(field("x-service-name"), "app");
    assert_eq!(field("x-service-port"), "http");
    assert!(
        field("x-request-id")
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(field("host"), "shop.test");

    // A status not listed is the client's as it came.
    let kept = gantry
        .send(&client, "GET", "shop.test", "/status/500", &[])
        .await;
    assert_eq!(kept.status(), 500);
    let body: serde_json::Value = kept.json().await.unwrap();
    assert_eq!(body["server"], "app");
    // A POST's error is replaced as well, its body sent along.
    let post = client
        .post(gantry.url("/status/503"))
        .header("host", "shop.test")
        .body("order")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = post.json().await.unwrap();
    assert_eq!(
        (body["server"].as_str(), body["body"].as_str()),
        (Some("errors"), Some("order"))
    );

    // No endpoint: the default backend serves the request as it is, told 503.
    let closed = gantry
        .send(&client, "GET", "closed.test", "/page", &[])
        .await;
    let body: serde_json::Value = closed.json().await.unwrap();
    assert_eq!(body["server"], "errors");
    assert_eq!(body["path"], "/page");
    assert_eq!(body["headers"]["x-code"][0], "503");
    assert_eq!(body["headers"]["x-service-name"][0], "empty");
}
