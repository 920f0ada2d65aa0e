//! Kube mode with more than one replica: one leader elected through a Lease writes status and
//! keeps the zones' serials, the others serve; the leader's death or exit hands over.

use crate::kube::{cluster, served, web_ingress, web_service};
use crate::support::gantry::Options;
use crate::support::kubectl::Kubectl;
use crate::support::{Gantry, config, wait_until};
use fake_apiserver::FakeApi;

/// A replica: its own API user (so the fake's log tells who wrote what) and pod name.
pub async fn replica(api: &FakeApi, kubectl: &Kubectl, name: &'static str) -> Gantry {
    replica_with(api, kubectl, name, &[]).await
}

/// A replica with extra arguments.
pub async fn replica_with(
    api: &FakeApi,
    kubectl: &Kubectl,
    name: &'static str,
    extra: &[&str],
) -> Gantry {
    let mut args = vec!["--lease-duration", "3s", "--lease-namespace", "default"];
    args.extend_from_slice(extra);
    Gantry::start_kube(
        &kubectl.kubeconfig_for(api, name),
        Options {
            args,
            env: vec![("POD_NAME", name.to_owned())],
            ..Options::default()
        },
    )
    .await
}

pub async fn lease_holder(kubectl: &Kubectl) -> Option<String> {
    let lease = kubectl.get("lease/gantry", "default").await?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// Whether `user` wrote a status since request number `since`.
fn wrote_status(api: &FakeApi, user: &str, since: usize) -> bool {
    api.requests()[since..].iter().any(|r| {
        r.starts_with("APPLY ") && r.contains("/status") && r.ends_with(&format!(" by {user}"))
    })
}

#[tokio::test]
async fn two_replicas_elect_one_leader_which_alone_writes_and_the_other_takes_over_when_it_dies() {
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    let a = replica(&api, &kubectl, "replica-a").await;
    let b = replica(&api, &kubectl, "replica-b").await;
    wait_until("one replica to hold the Lease", || async {
        lease_holder(&kubectl).await.is_some()
    })
    .await;
    let holder = lease_holder(&kubectl).await.unwrap();
    let (leader, follower, follower_name) = if holder == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    // Both serve traffic.
    for replica in [&leader, &follower] {
        wait_until("each replica to serve", || {
            served(replica, "web.example.test")
        })
        .await;
    }
    kubectl.apply(&config::fixed("default", "one", "one")).await;
    wait_until("the leader to write the new resource's status", || async {
        wrote_status(&api, &holder, 0)
    })
    .await;
    assert!(
        !wrote_status(&api, follower_name, 0),
        "the follower wrote status: {:#?}",
        api.requests()
    );

    // The leader dies without giving the Lease up: it expires, and the follower takes over.
    leader.sigkill();
    wait_until("the follower to take the Lease over", || async {
        lease_holder(&kubectl).await.as_deref() == Some(follower_name)
    })
    .await;
    let since = api.requests().len();
    kubectl.apply(&config::fixed("default", "two", "two")).await;
    wait_until("the new leader to write status", || async {
        wrote_status(&api, follower_name, since)
    })
    .await;
    wait_until("the new resource to be Ready", || async {
        let object = kubectl.get("fixedresponse/two", "default").await.unwrap();
        object["status"]["conditions"][0]["status"] == "True"
    })
    .await;
    assert!(follower.log().contains("leading"), "{}", follower.log());
    drop(leader);
}

#[tokio::test]
async fn a_leader_that_stops_gives_the_lease_up_at_once() {
    let (api, kubectl) = cluster().await;
    let mut a = replica(&api, &kubectl, "replica-a").await;
    wait_until("replica-a to lead", || async {
        lease_holder(&kubectl).await.as_deref() == Some("replica-a")
    })
    .await;
    a.sigterm();
    a.wait_exit(std::time::Duration::from_secs(30)).await;
    let lease = kubectl.get("lease/gantry", "default").await.unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease:#}");
}

#[tokio::test]
async fn every_replica_serves_a_zone_with_the_serial_the_leader_keeps_in_the_api() {
    use crate::support::dns::dig;
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    kubectl
        .apply(
            "apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers: [{name: ns1.example.test, addresses: [192.0.2.53]}]
  ingressAddresses: [192.0.2.10]
",
        )
        .await;
    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    let a = replica(&api, &kubectl, "replica-a").await;
    wait_until("replica-a to lead", || async {
        lease_holder(&kubectl).await.as_deref() == Some("replica-a")
    })
    .await;
    // replica-b's disk remembers a much higher serial for other content (say, a pod's old
    // state): alone, it would serve one above that.
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("dns-serials.json"),
        r#"{"example.test.": {"serial": 4000000000, "digest": "older content"}}"#,
    )
    .unwrap();
    let b = Gantry::start_kube(
        &kubectl.kubeconfig_for(&api, "replica-b"),
        Options {
            flags_from_env: true,
            args: vec!["--lease-duration", "3s", "--lease-namespace", "default"],
            env: vec![
                ("POD_NAME", "replica-b".to_owned()),
                ("GANTRY_STATE_DIR", state.path().display().to_string()),
            ],
            ..Options::default()
        },
    )
    .await;
    let serials = || async {
        (
            dig(a.dns, &["example.test", "SOA"]).await.serial(),
            dig(b.dns, &["example.test", "SOA"]).await.serial(),
        )
    };
    let kept = || async {
        let map = kubectl
            .get("configmap/gantry-dns-serials", "default")
            .await?;
        let serials: serde_json::Value =
            serde_json::from_str(map["data"]["serials.json"].as_str()?).ok()?;
        serials["example.test."]["serial"].as_u64()
    };
    wait_until(
        "both replicas to serve the serial kept in the API",
        || async {
            let (from_a, from_b) = serials().await;
            let kept = kept().await;
            from_a.is_some() && from_a == from_b && from_a.map(u64::from) == kept
        },
    )
    .await;
    let (first, _) = serials().await;
    assert!(first < Some(4_000_000_000), "{first:?}");

    // A new host changes the zone: a new serial, the same on both.
    kubectl
        .apply(&web_ingress("shop", "shop.example.test"))
        .await;
    wait_until("both replicas to serve the new serial", || async {
        let (from_a, from_b) = serials().await;
        from_a > first && from_a == from_b && from_a.map(u64::from) == kept().await
    })
    .await;
}
