//! Golden cases for the compile passes: every `proxy/tests/fixtures/compile/PASS/CASE.yaml` is
//! compiled, and the part of the Snapshot that pass makes, with every problem found, must be
//! what `CASE.golden` holds (JSON). A change to what a pass makes shows up as a diff of a file.
//! `GANTRY_GOLDEN=rewrite cargo test -p gantry --lib golden` writes the files anew; read the
//! diff before committing it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::compile;
use crate::admin::config_view::ConfigView;
use crate::config::folder::FolderSource;
use crate::snapshot::Snapshot;
use crate::snapshot::certificates::Issuing;

/// The pass a folder of cases checks, and the part of the Snapshot it makes.
fn view(pass: &str, snapshot: &Snapshot, store: &crate::config::Store) -> Value {
    let config = serde_json::to_value(ConfigView::new(snapshot)).unwrap_or_default();
    match pass {
        "routes" => config["routes"].clone(),
        "policies" => json!({
            "upstreams": snapshot
                .upstreams
                .iter()
                .map(|g| {
                    json!({
                        "upstream": g.name,
                        "health": g.health,
                        "retry": g.retry.as_deref(),
                        "circuitBreaker": g.breaker,
                    })
                })
                .collect::<Vec<_>>(),
            "routes": config["routes"],
            "status": crate::admin::status_view::resources(snapshot, &[])
                .into_iter()
                .filter(|r| {
                    use crate::config::Kind;
                    matches!(r.reference.kind, Kind::BackendPolicy | Kind::RoutePolicy)
                })
                .collect::<Vec<_>>(),
        }),
        "tls" => json!({"tls": config["tls"], "routes": config["routes"]}),
        "dns" => json!({
            "zones": snapshot.dns.iter().map(|zone| json!({
                "origin": zone.origin.to_string(),
                "records": zone.records.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "publications": snapshot.dns_publications.iter().map(|p| json!({
                "server": p.target.server.to_string(),
                "zone": p.target.zone.to_string(),
                "records": p.records.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        "certificates" => Value::Array(
            snapshot
                .certificates
                .iter()
                .map(|c| {
                    json!({
                        "secret": c.secret.to_string(),
                        "dnsNames": c.request.dns_names,
                        "key": format!("{:?}", c.request.key),
                        "durationSeconds": c.request.duration.as_secs(),
                        "renewBeforeSeconds": c.renew_before.map(|d| d.as_secs()),
                        "rotateKey": c.rotate_key,
                        "issuer": c.issuer,
                        "issuing": match &c.issuing {
                            Issuing::SelfSigned => "selfSigned".to_owned(),
                            Issuing::Ca { .. } => "ca".to_owned(),
                            Issuing::Acme(acme) => format!("acme {}", acme.server.directory_url),
                        },
                        "owner": c.owner.to_string(),
                    })
                })
                .collect(),
        ),
        "nginx" => json!({
            "routes": config["routes"],
            "plugins": super::wanted::wanted_plugins(store).iter().map(|p| json!({
                "plugin": p.key.to_string(),
                "module": p.spec.module,
                "config": p.spec.config,
            })).collect::<Vec<_>>(),
        }),
        other => panic!("no view for the pass {other:?}"),
    }
}

fn cases() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compile");
    let mut cases = Vec::new();
    for pass in std::fs::read_dir(&root).expect("tests/fixtures/compile") {
        let pass = pass.expect("a pass folder").path();
        let name = pass
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a pass name")
            .to_owned();
        for case in std::fs::read_dir(&pass).expect("a pass folder") {
            let case = case.expect("a case").path();
            if case.extension().is_some_and(|e| e == "yaml") {
                cases.push((name.clone(), case));
            }
        }
    }
    cases.sort();
    cases
}

#[test]
fn every_compile_pass_makes_what_its_golden_cases_say() {
    #[expect(
        clippy::disallowed_methods,
        reason = "a test switch, read where the test runs"
    )]
    let rewrite = std::env::var("GANTRY_GOLDEN").is_ok_and(|v| v == "rewrite");
    let cases = cases();
    assert!(cases.len() >= 10, "too few golden cases: {}", cases.len());
    let mut stale = Vec::new();
    for (pass, case) in cases {
        let folder = tempfile::tempdir().expect("a temporary folder");
        std::fs::copy(&case, folder.path().join("case.yaml")).expect("copy the case");
        let source = FolderSource::open(folder.path()).expect("read the case");
        let store = source.store();
        let snapshot = compile(&store, &Default::default(), &Default::default());
        let problems: Vec<String> = snapshot
            .problems
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.file = None;
                p.to_string()
            })
            .collect();
        let actual = json!({"made": view(&pass, &snapshot, &store), "problems": problems});
        let actual = serde_json::to_string_pretty(&actual).expect("JSON") + "\n";
        let golden = case.with_extension("golden");
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if actual != expected {
            if rewrite {
                std::fs::write(&golden, &actual).expect("write the golden file");
            } else {
                stale.push(format!("{}:\n{actual}", golden.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ (GANTRY_GOLDEN=rewrite writes them anew):\n{}",
        stale.join("\n")
    );
}
