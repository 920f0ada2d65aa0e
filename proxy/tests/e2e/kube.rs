//! Kube mode, against the fake API server (the fake-apiserver crate; no real API server can be
//! installed here), with resources created and changed by the real `kubectl`.

use crate::support::gantry::Options;
use crate::support::kubectl::Kubectl;
use crate::support::{Gantry, clients, config, upstream, wait_until};
use fake_apiserver::FakeApi;

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds.yaml");

#[tokio::test]
async fn kubectl_applies_gets_and_deletes_through_the_fake_api_server() {
    let api = FakeApi::start();
    let kubectl = Kubectl::new(&api);
    kubectl.ok(&["apply", "--server-side", "-f", CRDS]).await;
    kubectl
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: web.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
",
        )
        .await;
    let ingress = kubectl.get("ingress/web", "default").await.unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], "web.example.test");
    kubectl
        .apply(
            "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: hello
spec:
  body: hello
",
        )
        .await;
    let listed = kubectl.ok(&["get", "fixedresponses", "-o", "name"]).await;
    assert_eq!(listed.trim(), "fixedresponse.gantry.dev/hello");
    // Strict field validation, as a real API server does it for kubectl.
    let typo = kubectl
        .try_apply(
            "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: typo
spec:
  bodyy: hello
",
        )
        .await;
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(said.contains(r#"unknown field "spec.bodyy""#), "{said}");
    kubectl.ok(&["delete", "ingress", "web"]).await;
    assert!(kubectl.get("ingress/web", "default").await.is_none());
}

/// The CRDs, applied as an operator would before starting Gantry.
pub async fn cluster() -> (FakeApi, Kubectl) {
    let api = FakeApi::start();
    let kubectl = Kubectl::new(&api);
    kubectl.ok(&["apply", "--server-side", "-f", CRDS]).await;
    (api, kubectl)
}

/// Gantry in kube mode, as the API server's user `gantry`.
async fn gantry(api: &FakeApi, kubectl: &Kubectl) -> Gantry {
    Gantry::start_kube(&kubectl.kubeconfig_for(api, "gantry"), Options::default()).await
}

/// The fixtures most tests start from: Gantry's IngressClass and a Service `web` in front of
/// a real upstream.
async fn web_service(kubectl: &Kubectl) -> upstream::Upstream {
    let upstream = upstream::echo("web").await;
    kubectl.apply(config::GANTRY_CLASS).await;
    kubectl
        .apply(&config::service(
            "default",
            "web",
            "http",
            None,
            &[(upstream.addr, true)],
        ))
        .await;
    upstream
}

fn web_ingress(name: &str, host: &str) -> String {
    config::ingress(
        "default",
        name,
        Some(host),
        &[("/", "Prefix", "web", "http")],
    )
}

async fn served(gantry: &Gantry, host: &str) -> bool {
    body(gantry, host, "/").await.is_some()
}

/// A cluster where Gantry serves Ingress `NAME` for `NAME.example.test` from Service `web`.
struct Serving {
    api: FakeApi,
    kubectl: Kubectl,
    gantry: Gantry,
    upstream: upstream::Upstream,
}

async fn serving(name: &str) -> Serving {
    let (api, kubectl) = cluster().await;
    let upstream = web_service(&kubectl).await;
    let host = format!("{name}.example.test");
    kubectl.apply(&web_ingress(name, &host)).await;
    let gantry = gantry(&api, &kubectl).await;
    wait_until("the Ingress to be served", || served(&gantry, &host)).await;
    Serving {
        api,
        kubectl,
        gantry,
        upstream,
    }
}

async fn body(gantry: &Gantry, host: &str, path: &str) -> Option<String> {
    let response = gantry.send(&clients::http1(), "GET", host, path, &[]).await;
    (response.status() == 200).then_some(response.text().await.unwrap())
}

#[tokio::test]
async fn an_ingress_applied_with_kubectl_is_served_and_its_changes_follow() {
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    let gantry = gantry(&api, &kubectl).await;

    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    wait_until("the Ingress to be served", || async {
        body(&gantry, "web.example.test", "/hello")
            .await
            .is_some_and(|b| b.contains("web"))
    })
    .await;

    // A change, and a FixedResponse (a Gantry CRD) taking over a path.
    kubectl
        .apply(&config::fixed("default", "maintenance", "back soon"))
        .await;
    let mut changed = web_ingress("web", "web.example.test");
    changed.push_str(&config::fixed_path("/status", "Prefix", "maintenance"));
    kubectl.apply(&changed).await;
    wait_until("the new path to be served", || async {
        body(&gantry, "web.example.test", "/status")
            .await
            .as_deref()
            == Some("back soon")
    })
    .await;

    kubectl.ok(&["delete", "ingress", "web"]).await;
    wait_until("the deleted Ingress to stop being served", || async {
        gantry
            .send(&clients::http1(), "GET", "web.example.test", "/", &[])
            .await
            .status()
            == 404
    })
    .await;
}

#[tokio::test]
async fn a_watch_broken_by_410_gone_lists_again_and_misses_nothing() {
    let Serving {
        api,
        kubectl,
        gantry,
        upstream: _upstream,
    } = serving("old").await;

    // While Gantry is cut off, the cluster changes and its history is compacted: resuming
    // from the resourceVersion Gantry saw last is no longer possible.
    api.cut_off("gantry");
    kubectl.apply(&web_ingress("new", "new.example.test")).await;
    kubectl.ok(&["delete", "ingress", "old"]).await;
    api.compact();
    api.reconnect("gantry");

    wait_until("the Ingress created meanwhile to be served", || {
        served(&gantry, "new.example.test")
    })
    .await;
    wait_until("the Ingress deleted meanwhile to be gone", || async {
        !served(&gantry, "old.example.test").await
    })
    .await;
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("GONE ingresses")),
        "no watch was answered 410 Gone: {requests:#?}"
    );
}

#[tokio::test]
async fn bookmarks_carry_a_quiet_watch_forward() {
    let Serving {
        api,
        kubectl,
        gantry,
        upstream: _upstream,
    } = serving("web").await;
    // Changes to other kinds move the resourceVersion on; the Ingress watch sees them only as
    // bookmarks.
    for i in 0..3 {
        kubectl
            .apply(&config::fixed("default", &format!("page{i}"), "page"))
            .await;
    }
    let last: u64 = api
        .object("gantry.dev", "fixedresponses", "default", "page2")
        .unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let versions = |prefix: &str| -> Vec<u64> {
        api.requests()
            .iter()
            .filter_map(|r| {
                r.strip_prefix(prefix)?
                    .strip_suffix(" by gantry")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    wait_until("a bookmark past the latest change", || async {
        versions("BOOKMARK ingresses rv=")
            .iter()
            .any(|rv| *rv >= last)
    })
    .await;
    // A broken watch resumes from a bookmark, not from the Ingress's own older version.
    api.break_watches();
    wait_until("the Ingress watch to resume from a bookmark", || async {
        let bookmarks = versions("BOOKMARK ingresses rv=");
        versions("WATCH ingresses rv=")
            .iter()
            .any(|rv| *rv >= last && bookmarks.contains(rv))
    })
    .await;
    assert!(served(&gantry, "web.example.test").await);
}

#[tokio::test]
async fn traffic_keeps_flowing_while_the_api_server_is_away() {
    let Serving {
        mut api,
        kubectl,
        gantry,
        upstream: _upstream,
    } = serving("web").await;

    api.stop();
    // Long enough for the watches to notice and retry: the log says so.
    wait_until("Gantry to notice the API server is gone", || async {
        gantry.log().contains("watch failed")
    })
    .await;
    for _ in 0..20 {
        assert!(served(&gantry, "web.example.test").await);
    }
    let ready = clients::http1()
        .get(gantry.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "/readyz must stay ready");

    api.restart();
    kubectl
        .apply(&web_ingress("later", "later.example.test"))
        .await;
    wait_until(
        "a change after the API server came back to be served",
        || served(&gantry, "later.example.test"),
    )
    .await;
}

#[tokio::test]
async fn ingresses_get_the_published_address_and_gantry_resources_a_ready_condition() {
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    kubectl
        .apply(
            "apiVersion: v1
kind: Service
metadata:
  name: gantry
  namespace: default
spec:
  type: LoadBalancer
  ports:
  - name: http
    port: 80
",
        )
        .await;
    // What a cloud's load-balancer controller does once the balancer is up.
    kubectl
        .ok(&[
            "patch",
            "service",
            "gantry",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}}"#,
        ])
        .await;
    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    kubectl
        .apply(&config::fixed("default", "hello", "hello"))
        .await;
    let gantry = Gantry::start_kube(
        &kubectl.kubeconfig_for(&api, "gantry"),
        Options {
            args: vec!["--publish-service", "default/gantry"],
            ..Options::default()
        },
    )
    .await;
    wait_until("Gantry to be serving", || {
        served(&gantry, "web.example.test")
    })
    .await;

    wait_until("the Ingress status to carry the address", || async {
        let ingress = kubectl.get("ingress/web", "default").await.unwrap();
        ingress["status"]["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.7"
    })
    .await;
    let ready = |object: serde_json::Value| {
        object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
    };
    wait_until("the FixedResponse to be Ready", || async {
        let object = kubectl.get("fixedresponse/hello", "default").await.unwrap();
        ready(object).is_some_and(|c| c["status"] == "True" && c["observedGeneration"] == 1)
    })
    .await;
    let object = api
        .object("gantry.dev", "fixedresponses", "default", "hello")
        .unwrap();
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"gantry"), "{object:#}");
    crate::support::rbac::assert_allowed(&api.calls(), "gantry", "default");

    // A change that breaks it: the condition says so, for the new generation.
    kubectl
        .apply(
            "apiVersion: gantry.dev/v1alpha1
kind: FixedResponse
metadata:
  name: hello
  namespace: default
spec:
  body: hello
  status: 42
",
        )
        .await;
    wait_until(
        "the FixedResponse to be not Ready, naming the field",
        || async {
            let object = kubectl.get("fixedresponse/hello", "default").await.unwrap();
            ready(object).is_some_and(|c| {
                c["status"] == "False"
                    && c["reason"] == "Invalid"
                    && c["message"].as_str().unwrap_or("").contains("spec.status")
                    && c["observedGeneration"] == 2
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_broken_ingress_gets_one_event_and_is_left_out() {
    let (api, kubectl) = cluster().await;
    let _upstream = web_service(&kubectl).await;
    kubectl.apply(&web_ingress("web", "web.example.test")).await;
    let gantry = gantry(&api, &kubectl).await;
    kubectl
        .apply(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken
  namespace: default
spec:
  rules:
  - host: broken.example.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          resource:
            apiGroup: \"\"
            kind: ConfigMap
            name: page
",
        )
        .await;
    let events = || events_about(&kubectl, "broken");
    wait_until("an Event about the broken Ingress", || async {
        !events().await.is_empty()
    })
    .await;
    let event = &events().await[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "Invalid");
    assert_eq!(event["regarding"]["kind"], "Ingress");
    assert!(event["regarding"]["uid"].is_string(), "{event:#}");
    assert!(
        event["note"].as_str().unwrap().contains("resource"),
        "{event:#}"
    );
    assert_eq!(
        gantry
            .send(&clients::http1(), "GET", "broken.example.test", "/", &[])
            .await
            .status(),
        404
    );
    assert!(served(&gantry, "web.example.test").await);

    // More Snapshots while it stays broken: no more Events about it.
    for i in 0..3 {
        let host = format!("more{i}.example.test");
        kubectl
            .apply(&web_ingress(&format!("more{i}"), &host))
            .await;
        wait_until("the new Ingress to be served", || served(&gantry, &host)).await;
    }
    let events = events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0]["series"].is_null(), "{events:#?}");
    crate::support::rbac::assert_allowed(&api.calls(), "gantry", "default");
}

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

/// The Events (events.k8s.io) about objects named `name`.
async fn events_about(kubectl: &Kubectl, name: &str) -> Vec<serde_json::Value> {
    let list = kubectl
        .ok(&["get", "events.events.k8s.io", "-n", "default", "-o", "json"])
        .await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_zone_that_cannot_be_published_gets_an_event() {
    let (api, kubectl) = cluster().await;
    // Published into a DNS server that is not there.
    let port = crate::support::dns::free_port();
    kubectl.apply(&crate::dns_publish::zone(port)).await;
    let _gantry = gantry(&api, &kubectl).await;
    wait_until("an Event about the zone", || async {
        !events_about(&kubectl, "example").await.is_empty()
    })
    .await;
    let event = &events_about(&kubectl, "example").await[0];
    assert_eq!(event["reason"], "PublishFailed");
    assert_eq!(event["regarding"]["kind"], "DNSZone");
    assert!(
        event["note"].as_str().unwrap().contains(&port.to_string()),
        "{event:#}"
    );
}

#[tokio::test]
async fn only_the_watched_namespaces_and_selected_secrets_are_read() {
    let (api, kubectl) = cluster().await;
    let upstream = web_service(&kubectl).await;
    kubectl
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
        .await;
    kubectl
        .apply(&config::service(
            "team-a",
            "web",
            "http",
            None,
            &[(upstream.addr, true)],
        ))
        .await;
    kubectl
        .apply(&web_ingress("outside", "outside.example.test"))
        .await;
    kubectl
        .apply(&config::ingress(
            "team-a",
            "inside",
            Some("inside.example.test"),
            &[("/", "Prefix", "web", "http")],
        ))
        .await;
    let gantry = Gantry::start_kube(
        &kubectl.kubeconfig_for(&api, "gantry"),
        Options {
            args: vec![
                "--watch-namespace",
                "team-a",
                "--secret-selector",
                "gantry.dev/tls=true",
            ],
            ..Options::default()
        },
    )
    .await;
    wait_until("the watched namespace's Ingress to be served", || {
        served(&gantry, "inside.example.test")
    })
    .await;
    assert!(!served(&gantry, "outside.example.test").await);
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("LIST secrets in team-a gantry.dev/tls=true")),
        "{requests:#?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("LIST ingresses ") && !r.contains("team-a")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn a_failed_issuance_gets_an_event_on_its_certificate() {
    let (api, kubectl) = cluster().await;
    let closed = crate::support::upstream::closed_port();
    kubectl
        .apply(&format!(
            "apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: gone}}
spec:
  acme:
    server: https://{closed}/dir
    solvers: [{{http01: {{}}}}]
---
apiVersion: gantry.dev/v1alpha1
kind: Certificate
metadata: {{name: web, namespace: default}}
spec:
  dnsNames: [web.example.test]
  secretName: web-tls
  issuerRef: {{name: gone, kind: ClusterIssuer}}
"
        ))
        .await;
    let _gantry = gantry(&api, &kubectl).await;
    wait_until("an Event about the Certificate", || async {
        events_about(&kubectl, "web")
            .await
            .iter()
            .any(|e| e["reason"] == "IssuanceFailed")
    })
    .await;
    let event = events_about(&kubectl, "web")
        .await
        .into_iter()
        .find(|e| e["reason"] == "IssuanceFailed")
        .unwrap();
    assert_eq!(event["regarding"]["kind"], "Certificate");
    assert!(
        event["note"].as_str().unwrap().contains("default/web-tls"),
        "{event:#}"
    );
    wait_until("the Certificate to be not Ready", || async {
        let object = kubectl.get("certificate/web", "default").await.unwrap();
        object["status"]["conditions"][0]["status"] == "False"
    })
    .await;
}

#[tokio::test]
async fn a_status_changed_behind_gantrys_back_is_set_right_again() {
    let (api, kubectl) = cluster().await;
    kubectl
        .apply(&config::fixed("default", "hello", "hello"))
        .await;
    let _gantry = gantry(&api, &kubectl).await;
    let ready = || async {
        let object = kubectl.get("fixedresponse/hello", "default").await.unwrap();
        object["status"]["conditions"][0]["status"]
            .as_str()
            .map(str::to_owned)
    };
    wait_until("the FixedResponse to be Ready", || async {
        ready().await.as_deref() == Some("True")
    })
    .await;
    kubectl
        .ok(&[
            "patch",
            "fixedresponse",
            "hello",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Meddled","message":"by hand","lastTransitionTime":"2020-01-01T00:00:00Z"}]}}"#,
        ])
        .await;
    wait_until("Gantry to set the condition right again", || async {
        ready().await.as_deref() == Some("True")
    })
    .await;
}
