//! Runtime control of endpoints, as the HAProxy runtime API offers it (`set server ... state
//! ready|drain|maint`, `set server ... weight`), through `gantry endpoints` and the admin
//! listener's `/endpoints`: an endpoint drained or in maintenance gets no new requests, one put
//! back gets its turns again, weights share the turns, and writes need the admin token when
//! one is set.

use std::process::Command;

use crate::support::config::{GANTRY_CLASS, nginx_ingress, service};
use crate::support::gantry::Options;
use crate::support::upstream::{self, Upstream};
use crate::support::{ConfigDir, Gantry};

/// `gantry endpoints ARGS` against `gantry`'s admin listener: its output, or its error.
fn endpoints(gantry: &Gantry, args: &[&str]) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("endpoints")
        .args(["--admin-addr", &gantry.admin.to_string()])
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn three_behind(gantry_args: Vec<&str>) -> (Gantry, [Upstream; 3], ConfigDir) {
    let endpoints = upstream::three_echoes().await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let ready: Vec<_> = endpoints.iter().map(|u| (u.addr, true)).collect();
    config.write("svc.yaml", &service("default", "web", "http", None, &ready));
    config.write(
        "ingress.yaml",
        &nginx_ingress("web", "web.test", "web", &[]),
    );
    let options = Options {
        args: gantry_args,
        ..Options::default()
    };
    let gantry = Gantry::start_with(config.path(), options).await;
    (gantry, endpoints, config)
}

#[tokio::test]
async fn drain_maint_ready_and_weight_change_where_requests_go() {
    let (gantry, [a, b, c], _config) = three_behind(Vec::new()).await;
    let listed = endpoints(&gantry, &[]).unwrap();
    for endpoint in [&a, &b, &c] {
        let line = listed
            .lines()
            .find(|l| l.contains(&endpoint.addr.to_string()))
            .unwrap_or_else(|| panic!("{} not listed:\n{listed}", endpoint.addr));
        assert!(line.starts_with("default/web:http"), "{line}");
        assert!(line.contains("ready") && line.contains("healthy"), "{line}");
    }
    let set = |endpoint: &Upstream, flags: &[&str]| {
        let mut args = vec!["set", "default/web:http"];
        let addr = endpoint.addr.to_string();
        args.push(&addr);
        args.extend_from_slice(flags);
        endpoints(&gantry, &args)
    };

    let shown = set(&c, &["--state", "drain"]).unwrap();
    assert!(shown.contains("drain (set)"), "{shown}");
    let counts = gantry.answers("web.test", 30).await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "c drained: {counts:?}"
    );
    set(&b, &["--state", "maint"]).unwrap();
    let counts = gantry.answers("web.test", 20).await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["a"],
        "b in maintenance: {counts:?}"
    );

    set(&b, &["--state", "ready"]).unwrap();
    set(&c, &["--state", "ready", "--weight", "3"]).unwrap();
    let counts = gantry.answers("web.test", 50).await;
    // Weighted round robin: 1, 1 and 3 of every 5 turns.
    assert_eq!(
        (counts["a"], counts["b"], counts["c"]),
        (10, 10, 30),
        "{counts:?}"
    );
    let listed = endpoints(&gantry, &[]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&c.addr.to_string()) && l.contains("ready (set)"))
    );

    let unknown = set(&a, &["--state", "sleep"]);
    assert!(unknown.is_err());
    let missing = endpoints(
        &gantry,
        &["set", "default/web:http", "10.9.9.9:80", "--state", "drain"],
    );
    assert!(missing.unwrap_err().contains("has no endpoint"));
}

#[tokio::test]
async fn writes_need_the_admin_token_when_one_is_set() {
    let (gantry, [a, _b, _c], _config) = three_behind(vec!["--admin-token", "s3cret"]).await;
    let addr = a.addr.to_string();
    let refused = endpoints(
        &gantry,
        &["set", "default/web:http", &addr, "--state", "drain"],
    );
    assert!(refused.unwrap_err().contains("401"));
    let allowed = endpoints(
        &gantry,
        &[
            "set",
            "default/web:http",
            &addr,
            "--state",
            "drain",
            "--token",
            "s3cret",
        ],
    );
    assert!(allowed.unwrap().contains("drain (set)"));
    // Reading needs no token.
    assert!(endpoints(&gantry, &[]).is_ok());
    let counts = gantry.answers("web.test", 20).await;
    assert!(!counts.contains_key("a"), "a drained: {counts:?}");
}
