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
pub async fn gantry(api: &FakeApi, kubectl: &Kubectl) -> Gantry {
    Gantry::start_kube(&kubectl.kubeconfig_for(api, "gantry"), Options::default()).await
}

/// The fixtures most tests start from: Gantry's IngressClass and a Service `web` in front of
/// a real upstream.
pub async fn web_service(kubectl: &Kubectl) -> upstream::Upstream {
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

pub fn web_ingress(name: &str, host: &str) -> String {
    config::ingress(
        "default",
        name,
        Some(host),
        &[("/", "Prefix", "web", "http")],
    )
}

pub async fn served(gantry: &Gantry, host: &str) -> bool {
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
