//! ingress-nginx's annotations on what the upstream gets (annotations.md; the template sets
//! them with `proxy_set_header`): `upstream-vhost` as the `Host` field, `x-forwarded-prefix` as
//! `X-Forwarded-Prefix`; `server-alias` serving the Ingress's paths on more hosts (nginx's
//! `server_name` aliases, skipped for a host another Ingress serves); `service-upstream`
//! sending to the Service's cluster IP instead of its endpoints.

use crate::support::config::{GANTRY_CLASS, nginx_ingress, service_folder};
use crate::support::upstream;
use crate::support::{ConfigDir, Gantry, clients};

#[tokio::test]
async fn upstream_vhost_forwarded_prefix_and_server_alias_reach_the_upstream() {
    let echo = upstream::echo("echo").await;
    let config = service_folder("echo", &[echo.addr]);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress(
                "shop",
                "shop.test",
                "echo",
                &[
                    ("upstream-vhost", "internal.shop.svc"),
                    ("x-forwarded-prefix", "/shop"),
                    ("server-alias", "store.test,taken.test"),
                ],
            ),
            nginx_ingress("taken", "taken.test", "echo", &[]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    for host in ["shop.test", "store.test"] {
        let response = gantry.send(&client, "GET", host, "/page", &[]).await;
        assert_eq!(response.status(), 200, "{host}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["headers"]["host"][0], "internal.shop.svc", "{host}");
        assert_eq!(body["headers"]["x-forwarded-prefix"][0], "/shop", "{host}");
        assert_eq!(body["headers"]["x-forwarded-host"][0], host);
    }
    // taken.test has an Ingress of its own: the alias does not apply there.
    let response = gantry
        .send(&client, "GET", "taken.test", "/page", &[])
        .await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["headers"]["host"][0], "taken.test");
    assert!(body["headers"].get("x-forwarded-prefix").is_none());
}

// The Service's endpoints are gone (a closed port), but its cluster IP answers: with
// `service-upstream` the requests go there, without it they fail.
#[tokio::test]
async fn service_upstream_sends_to_the_cluster_ip() {
    let echo = upstream::echo("vip").await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write(
        "svc.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{clusterIP: \"{ip}\", ports: [{{name: http, port: {port}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {closed}}}]
endpoints: [{{addresses: [\"127.0.0.1\"]}}]
",
            ip = echo.addr.ip(),
            port = echo.addr.port(),
            closed = upstream::closed_port().port(),
        ),
    );
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress("vip", "vip.test", "web", &[("service-upstream", "true")]),
            nginx_ingress("pods", "pods.test", "web", &[]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    assert_eq!(gantry.served_by(&client, "vip.test", &[]).await, "vip");
    let response = gantry.send(&client, "GET", "pods.test", "/", &[]).await;
    assert_eq!(response.status(), 502);
}
