//! The quick start answers as the README says it does.

use std::path::Path;

use crate::support::dns::dig;
use crate::support::{ConfigDir, Gantry, clients, wait_for, wait_until};

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

    let plain = clients::not_following_redirects();
    gantry
        .assert_redirects_to_https("www.example.test", "/")
        .await;
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

    // Its responses pass the built-in plugin of plugins.yaml.
    let home = https.get(www("/")).send().await.unwrap();
    assert_eq!(home.headers()["x-served-by"], "gantry-quickstart");

    // Its certificate is the one Gantry issued itself (certificates.yaml), once issued.
    let issued = wait_for(
        "the certificate of www.example.test to be issued",
        || async { gantry.issued("quickstart_www-example-test-tls") },
    )
    .await;
    let issued = crate::support::pki::pem_to_der(&issued);
    wait_until("the issued certificate to be served", || async {
        clients::presented_certificate(gantry.https, "www.example.test").await == issued
    })
    .await;

    // Gantry's DNS server answers for the example's hosts (dns.yaml).
    let www = dig(gantry.dns, &["www.example.test", "A"]).await;
    assert_eq!(
        www.answer(),
        ["www.example.test. 300 A 127.0.0.1"],
        "{}",
        www.0
    );
    let app = dig(gantry.dns, &["shop.apps.example.test", "A"]).await;
    assert_eq!(
        app.answer(),
        ["shop.apps.example.test. 300 A 127.0.0.1"],
        "{}",
        app.0
    );
}
