//! The real `kubectl`, pointed at a fake API server by a kubeconfig in a temporary folder (its
//! discovery cache too, so that tests never share one).

use std::path::PathBuf;
use std::process::Output;

use fake_apiserver::FakeApi;

pub struct Kubectl {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(api: &FakeApi) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig("admin")).unwrap();
        Kubectl { dir, kubeconfig }
    }

    /// A kubeconfig for another user of the same server (Gantry's own, say).
    pub fn kubeconfig_for(&self, api: &FakeApi, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{user}"));
        std::fs::write(&path, api.kubeconfig(user)).unwrap();
        path
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .output()
            .await
            .expect("run kubectl")
    }

    /// Runs kubectl, failing the test unless it succeeds; returns what it printed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply --server-side` of some YAML, failing the test unless it succeeds.
    pub async fn apply(&self, yaml: &str) -> String {
        let output = self.try_apply(yaml).await;
        assert!(
            output.status.success(),
            "kubectl apply failed:\n{}\n{yaml}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply --server-side` of some YAML, whatever comes of it.
    pub async fn try_apply(&self, yaml: &str) -> Output {
        let file = self.dir.path().join("apply.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.run(&["apply", "--server-side", "-f", file.to_str().unwrap()])
            .await
    }

    /// `kubectl get -o json` of one object, or `None` when kubectl says it is not there.
    pub async fn get(&self, what: &str, namespace: &str) -> Option<serde_json::Value> {
        let output = self
            .run(&["get", what, "-n", namespace, "-o", "json"])
            .await;
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }
}
