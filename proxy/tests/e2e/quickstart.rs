//! The quick start answers as the README says it does.

use std::path::Path;

use crate::support::{ConfigDir, Gantry, clients, wait_until};

#[tokio::test]
async fn quickstart_answers_as_the_readme_says() {
    // A copy of examples/quickstart, with the EndpointSlice of its admin Service pointed at this
    // Gantry's admin port (the example uses the default, 9901).
    let config = ConfigDir::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        let contents = std::fs::read_to_string(entry.path()).unwrap();
        config.write(entry.file_name().to_str().unwrap(), &contents);
    }
    let gantry = Gantry::start(config.path()).await;
    let www = std::fs::read_to_string(config.path().join("www.yaml")).unwrap();
    config.write(
        "www.yaml",
        &www.replace(
            "    port: 9901\n",
            &format!("    port: {}\n", gantry.admin.port()),
        ),
    );

    clients::crypto();
    let https = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .resolve("www.example.test", gantry.https)
        .no_proxy()
        .build()
        .unwrap();
    let www = |path: &str| format!("https://www.example.test:{}{path}", gantry.https.port());
    wait_until("/healthz to be proxied to the admin listener", || async {
        match https.get(www("/healthz")).send().await {
            Ok(r) => r.text().await.unwrap_or_default() == "ok\n",
            Err(_) => false,
        }
    })
    .await;

    let home = https.get(www("/")).send().await.unwrap();
    assert_eq!(home.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        home.text().await.unwrap(),
        "Welcome to www.example.test, served by Gantry.\n"
    );
    let api = https.get(www("/api/orders")).send().await.unwrap();
    assert_eq!(api.headers()["content-type"], "application/json");
    assert_eq!(
        api.text().await.unwrap(),
        "{\"service\": \"api\", \"version\": \"v1\"}\n"
    );

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let redirect = plain
        .get(gantry.url("/"))
        .header("host", "www.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()["location"],
        format!("https://www.example.test:{}/", gantry.https.port()).as_str()
    );
    let app = plain
        .get(gantry.url("/"))
        .header("host", "shop.apps.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.text().await.unwrap(),
        "One of the apps under *.apps.example.test.\n"
    );
    let other = plain
        .get(gantry.url("/"))
        .header("host", "nope.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(
        other.text().await.unwrap(),
        "Nothing is served at this host; try www.example.test.\n"
    );

    // The certificate served for www.example.test is the one in the example's Secret.
    let secret: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(example.join("www-tls.yaml")).unwrap())
            .unwrap();
    let certificate = secret["stringData"]["tls.crt"].as_str().unwrap();
    assert_eq!(
        clients::presented_certificate(gantry.https, "www.example.test").await,
        crate::support::pki::pem_to_der(certificate)
    );
}
