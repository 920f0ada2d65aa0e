//! ingress-nginx's redirect annotations, as its template renders them (rootfs/etc/nginx/
//! template/nginx.tmpl): `permanent-redirect` / `temporal-redirect` answer `return CODE URL`
//! (301 / 302 unless `-code` says), the temporal one winning; `app-root` answers
//! `302 $scheme://$http_host<root>` for `/` only; `from-to-www-redirect` adds, for the other
//! host, a server answering 308 to the same scheme and request URI on the Ingress's host
//! without a trailing `/`.

use crate::support::config::{nginx_ingress, service_folder};
use crate::support::upstream;
use crate::support::{Gantry, clients};

/// The status and `Location` of `GET target` for `host`, not following redirects.
async fn redirect(gantry: &Gantry, host: &str, target: &str) -> (u16, String) {
    let response = clients::not_following_redirects()
        .get(gantry.url(target))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

#[tokio::test]
async fn redirect_annotations_answer_as_ingress_nginx_does() {
    let echo = upstream::echo("echo").await;
    let config = service_folder("echo", &[echo.addr]);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress(
                "moved",
                "old.test",
                "echo",
                &[("permanent-redirect", "https://new.test/home")],
            ),
            nginx_ingress(
                "moved-308",
                "old308.test",
                "echo",
                &[
                    ("permanent-redirect", "https://new.test/"),
                    ("permanent-redirect-code", "308"),
                ],
            ),
            nginx_ingress(
                "maintenance",
                "busy.test",
                "echo",
                &[
                    ("permanent-redirect", "https://never.test/"),
                    ("temporal-redirect", "https://maintenance.test/"),
                ],
            ),
            nginx_ingress(
                "app",
                "www.app.test",
                "echo",
                &[("app-root", "/app1"), ("from-to-www-redirect", "true")],
            ),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;

    assert_eq!(
        redirect(&gantry, "old.test", "/any/path?q=1").await,
        (301, "https://new.test/home".into())
    );
    assert_eq!(
        redirect(&gantry, "old308.test", "/").await,
        (308, "https://new.test/".into())
    );
    assert_eq!(
        redirect(&gantry, "busy.test", "/").await,
        (302, "https://maintenance.test/".into())
    );

    // app-root: `/` only, with the host as the client wrote it.
    assert_eq!(
        redirect(&gantry, "www.app.test:8080", "/").await,
        (302, "http://www.app.test:8080/app1".into())
    );
    let (status, _) = redirect(&gantry, "www.app.test", "/app1/page").await;
    assert_eq!(status, 200);

    // from-to-www-redirect: the bare host goes to www, the request URI kept, no trailing `/`.
    assert_eq!(
        redirect(&gantry, "app.test", "/shop/?item=2").await,
        (308, "http://www.app.test/shop/?item=2".into())
    );
    assert_eq!(
        redirect(&gantry, "app.test", "/cart/").await,
        (308, "http://www.app.test/cart".into())
    );
    assert_eq!(
        redirect(&gantry, "app.test", "/").await,
        (308, "http://www.app.test".into())
    );
    assert_eq!(
        echo.seen.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only /app1/page went upstream"
    );
}
