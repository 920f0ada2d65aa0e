//! The fake against a real client (kube-rs), for the behaviours Gantry's tests lean on, each as
//! the Kubernetes API documents it:
//! - watches resume from a resourceVersion, and a version older than the history kept gets a
//!   410 `Expired` event ("Efficient detection of changes", API concepts);
//! - server-side apply records field managers and refuses to let a second manager change a field
//!   another owns unless it forces ("Server-Side Apply", conflicts);
//! - merge, JSON (RFC 6902) and strategic merge patches; a replace with a stale resourceVersion
//!   is a 409 conflict (optimistic concurrency);
//! - requests without a token are refused.

// Helpers of tests: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use fake_apiserver::FakeApi;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;
use serde_json::json;

/// How long a step may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn client(api: &FakeApi, user: &str) -> kube::Client {
    client_of(&api.kubeconfig(user)).await
}

/// A client made from this kubeconfig, as kubectl would.
async fn client_of(kubeconfig: &str) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..ConfigMap::default()
    }
}

fn data(map: &ConfigMap) -> BTreeMap<String, String> {
    map.data.clone().unwrap_or_default()
}

/// The first event of a watch from `version`.
async fn first_event(maps: &Api<ConfigMap>, version: &str) -> WatchEvent<ConfigMap> {
    let stream = maps
        .watch(&WatchParams::default().timeout(10), version)
        .await
        .unwrap();
    let mut stream = stream.boxed();
    tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .expect("an event before the deadline")
        .unwrap()
        .expect("the watch to send an event")
}

#[tokio::test]
async fn a_watch_resumes_from_a_version_and_gets_410_once_the_history_is_compacted() {
    let api = FakeApi::start();
    let maps: Api<ConfigMap> = Api::namespaced(client(&api, "tester").await, "default");
    let first = maps
        .create(&PostParams::default(), &config_map("first", &[]))
        .await
        .unwrap();
    let after_first = first.metadata.resource_version.unwrap();
    maps.create(&PostParams::default(), &config_map("second", &[]))
        .await
        .unwrap();

    match first_event(&maps, &after_first).await {
        WatchEvent::Added(map) => assert_eq!(map.metadata.name.as_deref(), Some("second")),
        other => panic!("expected the second ConfigMap ADDED, got {other:?}"),
    }

    api.compact();
    match first_event(&maps, &after_first).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 Expired event, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_refuses_a_second_manager_unless_it_forces() {
    let api = FakeApi::start();
    let maps: Api<ConfigMap> = Api::namespaced(client(&api, "tester").await, "default");
    let applied = |value: &str| {
        Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "shared"},
            "data": {"colour": value},
        }))
    };
    maps.patch("shared", &PatchParams::apply("alice"), &applied("red"))
        .await
        .unwrap();
    // The same manager changes its own field freely.
    maps.patch("shared", &PatchParams::apply("alice"), &applied("orange"))
        .await
        .unwrap();

    let refused = maps
        .patch("shared", &PatchParams::apply("bob"), &applied("blue"))
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert!(status.message.contains("alice"), "{}", status.message);
        }
        other => panic!("expected a 409 conflict, got {other}"),
    }
    assert_eq!(data(&maps.get("shared").await.unwrap())["colour"], "orange");

    let forced = maps
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &applied("blue"),
        )
        .await
        .unwrap();
    assert_eq!(data(&forced)["colour"], "blue");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert!(managers.contains(&"bob".to_owned()), "{managers:?}");
}

#[tokio::test]
async fn merge_json_and_strategic_patches_apply_and_a_stale_replace_conflicts() {
    let api = FakeApi::start();
    let maps: Api<ConfigMap> = Api::namespaced(client(&api, "tester").await, "default");
    let created = maps
        .create(
            &PostParams::default(),
            &config_map("settings", &[("a", "1"), ("b", "2")]),
        )
        .await
        .unwrap();

    let params = PatchParams::default();
    let merged = maps
        .patch(
            "settings",
            &params,
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&merged),
        BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );

    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/b", "value": "20"},
        {"op": "add", "path": "/data/d", "value": "4"},
    ]))
    .unwrap();
    let patched = maps
        .patch("settings", &params, &Patch::<()>::Json(operations))
        .await
        .unwrap();
    assert_eq!(data(&patched)["b"], "20");
    assert_eq!(data(&patched)["d"], "4");

    let strategic = maps
        .patch(
            "settings",
            &params,
            &Patch::Strategic(json!({"data": {"e": "5"}})),
        )
        .await
        .unwrap();
    assert_eq!(data(&strategic).len(), 4, "{:?}", data(&strategic));

    // A replace carrying the version it was read at, after others have written since.
    let stale = maps
        .replace("settings", &PostParams::default(), &created)
        .await
        .unwrap_err();
    match stale {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected a 409 conflict, got {other}"),
    }
}

#[tokio::test]
async fn a_request_without_a_token_is_refused() {
    let api = FakeApi::start();
    let kubeconfig = api
        .kubeconfig("tester")
        .replace("token: ", "token-unused: ");
    let maps: Api<ConfigMap> = Api::namespaced(client_of(&kubeconfig).await, "default");
    match maps.list(&Default::default()).await.unwrap_err() {
        kube::Error::Api(status) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 Unauthorized, got {other}"),
    }
}
