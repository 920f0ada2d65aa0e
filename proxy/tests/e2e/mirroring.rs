//! Request mirroring by ingress-nginx's annotations (annotations.md "Mirror": `mirror-target`
//! with nginx variables, `mirror-host`, `mirror-request-body`; nginx's `mirror` module sends a
//! copy and drops its answer): the copy carries the method, fields and body, at the target's
//! path, and the client's answer never waits for it.

use std::sync::atomic::Ordering;

use crate::support::config::{nginx_ingress, service_folder};
use crate::support::upstream;
use crate::support::{Gantry, clients, wait_until};

#[tokio::test]
async fn copies_go_to_the_mirror_and_the_client_never_waits_for_them() {
    let app = upstream::echo("app").await;
    let (mirror, copies) = upstream::recorder("mirror").await;
    let config = service_folder("app", &[app.addr]);
    let target = format!("http://{}/copy$request_uri", mirror.addr);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress(
                "shop",
                "shop.test",
                "app",
                &[("mirror-target", &target), ("mirror-host", "shadow.test")],
            ),
            nginx_ingress(
                "headless",
                "nobody.test",
                "app",
                &[("mirror-target", &target), ("mirror-request-body", "off")],
            ),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    // The mirror holds every copy: the client is answered all the same.
    mirror.seen.holding.store(true, Ordering::SeqCst);
    let answer = client
        .post(gantry.url("/orders?id=7"))
        .header("host", "shop.test")
        .header("x-trace", "t1")
        .body("order body")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        (body["server"].as_str(), body["body"].as_str()),
        (Some("app"), Some("order body"))
    );
    wait_until("the copy held at the mirror", || async {
        mirror.seen.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    mirror.seen.release();
    let copy = copies.lock().unwrap()[0].clone();
    assert_eq!(
        (copy.method.as_str(), copy.target.as_str()),
        ("POST", "/copy/orders?id=7")
    );
    assert_eq!(copy.headers["host"], "shadow.test");
    assert_eq!(copy.headers["x-trace"], "t1");
    assert_eq!(&copy.body[..], b"order body");

    // `mirror-request-body: off`: the copy carries no body.
    let answer = client
        .post(gantry.url("/x"))
        .header("host", "nobody.test")
        .body("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    wait_until("the second copy", || async {
        copies.lock().unwrap().len() == 2
    })
    .await;
    let copy = copies.lock().unwrap()[1].clone();
    assert!(copy.body.is_empty(), "{copy:?}");
    assert_eq!(copy.headers["host"], mirror.addr.to_string().as_str());
    wait_until("both copies counted", || async {
        gantry
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("gantry_mirror_requests_total") && l.contains("answered"))
            .count()
            == 2
    })
    .await;
}
