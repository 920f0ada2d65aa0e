//! ingress-nginx's annotations on what the upstream gets (annotations.md; the template sets
//! them with `proxy_set_header`): `upstream-vhost` as the `Host` field, `x-forwarded-prefix` as
//! `X-Forwarded-Prefix`; `server-alias` serving the Ingress's paths on more hosts (nginx's
//! `server_name` aliases, skipped for a host another Ingress serves); `service-upstream`
//! sending to the Service's cluster IP instead of its endpoints. And a BackendPolicy's time
//! limits, which routes take where their Ingress sets none.

use crate::support::config::{GANTRY_CLASS, backend_policy, nginx_ingress, service_folder};
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

#[tokio::test]
async fn a_backend_policys_time_limits_apply_where_the_ingress_sets_none() {
    let slow = upstream::echo("slow").await;
    let config = service_folder("slow", &[slow.addr]);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress("plain", "plain.test", "slow", &[]),
            nginx_ingress(
                "patient",
                "patient.test",
                "slow",
                &[("proxy-read-timeout", "30")],
            ),
        ]
        .join("---\n"),
    );
    config.write(
        "policy.yaml",
        &backend_policy(
            "slow",
            "  timeout: {tcp: {connectTimeout: 2s}, http: {readTimeout: 300ms}}\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    // The echo upstream waits `/slow/MS` milliseconds before answering.
    let status = |host: &'static str, path: &'static str| {
        let client = client.clone();
        let gantry = &gantry;
        async move {
            gantry
                .send(&client, "GET", host, path, &[])
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status("plain.test", "/slow/5000").await,
        504,
        "the policy's read limit"
    );
    assert_eq!(status("plain.test", "/slow/0").await, 200);
    assert_eq!(
        gantry.route_view("plain.test").await["timeoutsMs"],
        serde_json::json!({"connect": 2000, "read": 300, "send": 60000})
    );
    assert_eq!(
        gantry.route_view("patient.test").await["timeoutsMs"],
        serde_json::json!({"connect": 2000, "read": 30000, "send": 60000}),
        "the Ingress's annotation wins over the policy"
    );
}
