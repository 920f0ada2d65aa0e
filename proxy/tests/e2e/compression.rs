//! Response compression from a RoutePolicy, checked with curl (which decodes gzip, brotli and
//! zstd): the coding is the first of the policy's the client's `Accept-Encoding` accepts
//! (RFC 9110 section 12.5.3), responses below the minimum length or of other media types are
//! sent as they are, and every compressible response says `Vary: Accept-Encoding`.

use crate::support::Gantry;
use crate::support::config::{nginx_ingress, service_folder};
use crate::support::upstream;

/// `curl` for `host` and `target` with `accept_encoding`: the response's
/// `Content-Encoding` (empty when none), `Vary`, and its body as curl decoded it.
async fn curl(
    gantry: &Gantry,
    host: &str,
    target: &str,
    accept_encoding: &str,
) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--compressed", "-D"])
        .arg(&head)
        .args([
            "-H",
            &format!("host: {host}"),
            "-H",
            &format!("accept-encoding: {accept_encoding}"),
        ])
        .arg(gantry.url(target))
        .output()
        .await
        .expect("curl (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = std::fs::read_to_string(head).unwrap();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    (
        field("content-encoding"),
        field("vary"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn responses_are_compressed_as_the_client_accepts_and_the_policy_says() {
    let echo = upstream::echo("app").await;
    let config = service_folder("app", &[echo.addr]);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress("zipped", "zipped.test", "app", &[]),
            nginx_ingress("texts", "texts.test", "app", &[]),
            nginx_ingress("plain", "plain.test", "app", &[]),
        ]
        .join("---\n"),
    );
    let policy = |name: &str, compression: &str| {
        format!(
            "apiVersion: gantry.dev/v1alpha1
kind: RoutePolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: networking.k8s.io, kind: Ingress, name: {name}}}]
  compression: {compression}
"
        )
    };
    config.write(
        "policies.yaml",
        &[
            policy("zipped", "{minContentLength: 2000}"),
            policy("texts", "{contentTypes: [text/*]}"),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    // The echo's answer holds the path: padded past the minimum length.
    let big = format!("/?pad={}", "a".repeat(3000));

    for (accepted, expected) in [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip", "gzip"),
        ("zstd;q=0, gzip", "gzip"),
    ] {
        let (coding, vary, body) = curl(&gantry, "zipped.test", &big, accepted).await;
        assert_eq!(coding, expected, "Accept-Encoding: {accepted}");
        assert!(
            vary.to_ascii_lowercase().contains("accept-encoding"),
            "{vary:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["server"], "app");
        assert_eq!(body["path"], big.as_str());
    }
    // Nothing the client accepts, a small answer, a type not listed, a route without policy.
    assert_eq!(curl(&gantry, "zipped.test", &big, "identity").await.0, "");
    let (coding, vary, _) = curl(&gantry, "zipped.test", "/small", "gzip").await;
    assert_eq!((coding.as_str(), vary.as_str()), ("", ""));
    assert_eq!(curl(&gantry, "texts.test", &big, "gzip").await.0, "");
    assert_eq!(curl(&gantry, "plain.test", &big, "gzip").await.0, "");
}
