//! `deploy/`: every manifest, the kustomization and the rendered Helm chart are accepted by the
//! API server (the fake one: see the fake-apiserver crate) through the real `kubectl apply
//! --dry-run=server`, and the chart renders with the real `helm` (`scripts/lib.sh` installs it
//! and sets `HELM`).

use std::path::{Path, PathBuf};

use crate::support::kubectl::Kubectl;
use fake_apiserver::FakeApi;

/// Fails unless the Deployments in `yaml` start `gantry` with arguments it accepts.
fn assert_gantry_accepts_its_arguments(yaml: &str) {
    use clap::Parser;
    let mut checked = 0;
    for document in yaml.split("\n---") {
        let Ok(value) = yaml_serde::from_str::<serde_json::Value>(document) else {
            continue;
        };
        if value["kind"] != "Deployment" {
            continue;
        }
        let args: Vec<String> = value["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let parsed = gantry::cli::Cli::try_parse_from(
            std::iter::once("gantry".to_owned()).chain(args.clone()),
        );
        assert!(parsed.is_ok(), "gantry {args:?}: {}", parsed.err().unwrap());
        checked += 1;
    }
    assert_eq!(checked, 1, "one Deployment expected in:\n{yaml}");
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The namespace and the CRDs, created for real: a dry run of what lives in them needs them.
async fn cluster() -> (FakeApi, Kubectl) {
    let api = FakeApi::start();
    let kubectl = Kubectl::new(&api);
    for file in ["namespace.yaml", "crds.yaml", "gateway-api/standard.yaml"] {
        let path = deploy().join(file);
        kubectl
            .ok(&["apply", "--server-side", "-f", path.to_str().unwrap()])
            .await;
    }
    (api, kubectl)
}

#[tokio::test]
async fn every_manifest_in_deploy_is_accepted_by_the_api_server() {
    let (_api, kubectl) = cluster().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    assert_gantry_accepts_its_arguments(
        &std::fs::read_to_string(deploy().join("deployment.yaml")).unwrap(),
    );
    for file in &files {
        let printed = kubectl
            .ok(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
            .await;
        assert!(printed.contains("(server dry run)"), "{printed}");
    }
    let printed = kubectl
        .ok(&[
            "apply",
            "--dry-run=server",
            "-k",
            deploy().to_str().unwrap(),
        ])
        .await;
    for kind in [
        "deployment.apps/gantry",
        "service/gantry",
        "poddisruptionbudget.policy/gantry",
        "ingressclass.networking.k8s.io/gantry",
        "clusterrole.rbac.authorization.k8s.io/gantry",
    ] {
        assert!(printed.contains(kind), "{kind} missing from:\n{printed}");
    }

    // The check can fail: a field the schema does not have is refused.
    let broken = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy().join("pdb.yaml"))
        .unwrap()
        .replace("minAvailable", "minAvailabel");
    let file = broken.path().join("pdb.yaml");
    std::fs::write(&file, text).unwrap();
    let output = kubectl
        .run(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
        .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("minAvailabel"), "{said}");
}

/// The real helm: `HELM` as `scripts/lib.sh` sets it, else `helm` on the PATH.
fn helm(args: &[&str]) -> String {
    #[expect(
        clippy::disallowed_methods,
        reason = "scripts/test.sh tells the tests where helm is"
    )]
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".to_owned());
    let output = std::process::Command::new(&helm)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {helm} (scripts/test.sh installs it): {e}"));
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_helm_chart_renders_and_is_accepted_by_the_api_server() {
    let (_api, kubectl) = cluster().await;
    let chart = deploy().join("helm/gantry");
    let chart = chart.to_str().unwrap();
    helm(&["lint", "--strict", chart]);
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("default", vec![]),
        (
            "namespaces",
            vec![
                "--set",
                "watchNamespaces={team-a,team-b}",
                "--set",
                "replicaCount=3",
            ],
        ),
    ] {
        let mut args = vec!["template", "gantry", chart, "--namespace", "gantry-system"];
        args.extend(extra);
        let rendered = helm(&args);
        assert!(rendered.contains("kind: Deployment"), "{rendered}");
        assert!(rendered.contains("--kube"), "{rendered}");
        if name == "namespaces" {
            assert!(rendered.contains("team-a,team-b"), "{rendered}");
            assert!(rendered.contains("replicas: 3"), "{rendered}");
        }
        assert_gantry_accepts_its_arguments(&rendered);
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let printed = kubectl
            .ok(&["apply", "--dry-run=server", "-f", file.to_str().unwrap()])
            .await;
        assert!(printed.contains("deployment.apps/gantry"), "{printed}");
    }
}
