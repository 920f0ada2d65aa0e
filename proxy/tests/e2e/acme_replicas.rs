//! ACME in kube mode with more than one replica: a new leader finishes the order the dead one
//! started, and every replica answers the HTTP-01 challenge the leader presents.

use crate::acme::{ISSUANCE, ZONE, certificate, dns01_issuer, issuer, served_from};
use crate::support::config::{GANTRY_CLASS, service, tls_ingress};
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::{upstream, wait_until, wait_until_within};

/// Kube mode: the fake API server with Gantry's CRDs and IngressClass, and Service `echo` in
/// front of a real upstream.
async fn cluster_with_echo() -> (
    fake_apiserver::FakeApi,
    crate::support::kubectl::Kubectl,
    upstream::Upstream,
) {
    let (api, kubectl) = crate::kube::cluster().await;
    let echo = upstream::echo("echo").await;
    kubectl.apply(GANTRY_CLASS).await;
    kubectl
        .apply(&service(
            "default",
            "echo",
            "http",
            None,
            &[(echo.addr, true)],
        ))
        .await;
    (api, kubectl, echo)
}

#[tokio::test]
async fn a_new_leader_finishes_the_order_the_dead_one_started_without_a_second_order() {
    use crate::kube_replicas::{lease_holder, replica};
    let (api, kubectl, _echo) = cluster_with_echo().await;
    // example.test is published into BIND, which the CA asks and which is not running yet: the
    // DNS-01 value cannot be seen, so the first leader's order waits.
    let bind_port = crate::support::dns::free_port();
    kubectl.apply(&crate::dns_publish::zone(bind_port)).await;
    kubectl
        .apply(&format!(
            "{}---\n{}",
            certificate("pub", &["pub.example.test"], "pub-tls", "pebble"),
            tls_ingress("pub", "pub.example.test", "pub-tls", "")
        ))
        .await;
    let first = replica(&api, &kubectl, "replica-a").await;
    wait_until("replica-a to lead", || async {
        lease_holder(&kubectl).await.as_deref() == Some("replica-a")
    })
    .await;
    let second = replica(&api, &kubectl, "replica-b").await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: first.http.port(),
        tls_port: first.https.port(),
        dns: std::net::SocketAddr::from(([127, 0, 0, 1], bind_port)),
        validity: None,
        external_account: None,
    })
    .await;
    kubectl.apply(&dns01_issuer(&pebble)).await;

    // The order is kept in the API, not on the leader's disk.
    let saved_order = || async {
        let secret = kubectl.get("secret/gantry-acme", "default").await?;
        let encoded = secret["data"]["orders.default_pub-tls"]
            .as_str()?
            .to_owned();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let order: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        order["url"].as_str().map(str::to_owned)
    };
    wait_until_within("the order to be saved in the API", ISSUANCE, || async {
        saved_order().await.is_some()
    })
    .await;
    let url = saved_order().await.unwrap();
    first.sigkill();

    let _bind = crate::dns_publish::named_primary(bind_port);
    wait_until("replica-b to take the Lease over", || async {
        lease_holder(&kubectl).await.as_deref() == Some("replica-b")
    })
    .await;
    served_from(&second, &pebble, "pub.example.test").await;
    let log = second.log();
    assert!(
        log.contains("resuming the ACME order") && log.contains(&url),
        "replica-b did not finish the order {url}:\n{log}"
    );
    wait_until("the finished order to be forgotten", || async {
        saved_order().await.is_none()
    })
    .await;
    let secret = kubectl.get("secret/pub-tls", "default").await.unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["metadata"]["annotations"]["cert-manager.io/alt-names"],
        "pub.example.test"
    );
    let calls = api.calls();
    crate::support::rbac::assert_allowed(&calls, "replica-a", "default");
    crate::support::rbac::assert_allowed(&calls, "replica-b", "default");
    drop(first);
}

#[tokio::test]
async fn every_replica_answers_the_http01_challenge_the_leader_presents() {
    use crate::kube_replicas::{lease_holder, replica_with};
    let (api, kubectl, _echo) = cluster_with_echo().await;
    kubectl.apply(ZONE).await;
    let publish = ["--publish-service", "default/gantry"];
    let leader = replica_with(&api, &kubectl, "replica-a", &publish).await;
    wait_until("replica-a to lead", || async {
        lease_holder(&kubectl).await.as_deref() == Some("replica-a")
    })
    .await;
    let follower = replica_with(&api, &kubectl, "replica-b", &publish).await;
    // The Service in front of both, as the Deployment's pods would fill it.
    kubectl
        .apply(&service(
            "default",
            "gantry",
            "http",
            None,
            &[(leader.http, true), (follower.http, true)],
        ))
        .await;
    // The CA reaches the cluster through the follower only.
    let pebble = Pebble::start(PebbleOptions {
        http_port: follower.http.port(),
        tls_port: follower.https.port(),
        dns: follower.dns,
        validity: None,
        external_account: None,
    })
    .await;
    kubectl.apply(&issuer("pebble", &pebble)).await;
    kubectl
        .apply(&format!(
            "{}---\n{}",
            certificate("web", &["web.example.test"], "web-tls", "pebble"),
            tls_ingress("web", "web.example.test", "web-tls", "")
        ))
        .await;
    served_from(&follower, &pebble, "web.example.test").await;
    served_from(&leader, &pebble, "web.example.test").await;
    assert!(
        follower.log().contains("/.well-known/acme-challenge/"),
        "the follower was not asked:\n{}",
        follower.log()
    );
    assert!(
        !follower.log().contains("ordering a certificate"),
        "the follower ordered:\n{}",
        follower.log()
    );
    // Everything both replicas did is allowed by the RBAC that deploy/ installs.
    let calls = api.calls();
    crate::support::rbac::assert_allowed(&calls, "replica-a", "default");
    crate::support::rbac::assert_allowed(&calls, "replica-b", "default");
}
