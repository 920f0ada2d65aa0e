//! External authentication by ingress-nginx's annotations (annotations.md "External
//! Authentication"; the template's `auth_request` location for what the auth service is sent):
//! `auth-url` asked before each request with its head, `auth-response-headers` copied to the
//! upstream, the auth service's cookies to the client, 401 and 403 as they come, 401 sent to
//! `auth-signin` with `rd` when set, and an auth service that fails closes the route (500).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::config::{nginx_ingress, service_folder};
use crate::support::upstream::{self, Upstream};
use crate::support::{Gantry, clients};

/// An auth service deciding by the `Authorization` field: `Bearer good` is 200 (with
/// `x-auth-user` and a cookie), `Bearer bad` 403, `Bearer broken` 500, anything else 401 with
/// `WWW-Authenticate`. It keeps each request's method, target and fields.
async fn auth_service() -> (Upstream, Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let kept = asked.clone();
    let server = upstream::serve("auth", Arc::default(), move |stream, _| {
        let kept = kept.clone();
        async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let token = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        kept.lock().unwrap().push((
                            req.method().to_string(),
                            req.uri().to_string(),
                            req.headers().clone(),
                        ));
                        let response = match token.as_str() {
                            "Bearer good" => Response::builder()
                                .status(200)
                                .header("x-auth-user", "alice")
                                .header("x-auth-secret", "not for the upstream")
                                .header("set-cookie", "session=s1; Path=/"),
                            "Bearer bad" => Response::builder().status(403),
                            "Bearer broken" => Response::builder().status(500),
                            _ => Response::builder()
                                .status(401)
                                .header("www-authenticate", "Bearer realm=\"shop\""),
                        };
                        Ok::<_, Infallible>(
                            response.body(Full::new(Bytes::from("decided"))).unwrap(),
                        )
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    (server, asked)
}

#[tokio::test]
async fn the_auth_service_decides_each_request_as_ingress_nginx_asks_it() {
    let (auth, asked) = auth_service().await;
    let echo = upstream::echo("app").await;
    let config = service_folder("app", &[echo.addr]);
    let url = format!("http://{}/verify?app=shop", auth.addr);
    config.write(
        "ingress.yaml",
        &[
            nginx_ingress(
                "shop",
                "shop.test",
                "app",
                &[("auth-url", &url), ("auth-response-headers", "x-auth-user")],
            ),
            nginx_ingress(
                "signin",
                "signin.test",
                "app",
                &[
                    ("auth-url", &url),
                    ("auth-signin", "https://login.test/start"),
                ],
            ),
            nginx_ingress(
                "down",
                "down.test",
                "app",
                &[("auth-url", "http://127.0.0.1:1/verify")],
            ),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::not_following_redirects();
    let send = |host: &'static str, target: &'static str, token: &'static str| {
        let request = client
            .post(gantry.url(target))
            .header("host", host)
            .body("payload");
        let request = if token.is_empty() {
            request
        } else {
            request.header("authorization", token)
        };
        request.send()
    };

    // Allowed: the upstream gets the request, body and all, with the field the route names.
    let allowed = send("shop.test", "/orders?id=7", "Bearer good")
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["set-cookie"], "session=s1; Path=/");
    let body: serde_json::Value = allowed.json().await.unwrap();
    assert_eq!(body["body"], "payload");
    assert_eq!(body["headers"]["x-auth-user"][0], "alice");
    assert!(body["headers"].get("x-auth-secret").is_none());
    // What the auth service was sent: the head, no body, and nginx's fields.
    let (method, target, fields) = asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (method.as_str(), target.as_str()),
        ("GET", "/verify?app=shop")
    );
    assert_eq!(fields["authorization"], "Bearer good");
    assert_eq!(fields["x-original-url"], "http://shop.test/orders?id=7");
    assert_eq!(fields["x-original-method"], "POST");
    assert_eq!(fields["x-auth-request-redirect"], "/orders?id=7");
    assert_eq!(fields["x-sent-from"], "nginx-ingress-controller");
    assert_eq!(fields["x-real-ip"], "127.0.0.1");
    assert_eq!(fields["host"], auth.addr.to_string().as_str());
    assert!(fields.get("x-request-id").is_some());
    assert!(fields.get("content-length").is_none_or(|l| l == "0"));

    // Refused: the status as the auth service gave it, with its challenge; nothing upstream.
    let before = echo.seen.requests.load(std::sync::atomic::Ordering::SeqCst);
    let refused = send("shop.test", "/", "").await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"shop\""
    );
    assert_eq!(
        send("shop.test", "/", "Bearer bad").await.unwrap().status(),
        403
    );
    // Any other answer, or no answer at all, is a failure: 500, closed.
    assert_eq!(
        send("shop.test", "/", "Bearer broken")
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(
        send("down.test", "/", "Bearer good")
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(
        echo.seen.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // With a sign-in page, a 401 is a redirect there with the original URL in `rd`.
    let signin = send("signin.test", "/cart/items?x=1", "").await.unwrap();
    assert_eq!(signin.status(), 302);
    assert_eq!(
        signin.headers()["location"],
        "https://login.test/start?rd=http://signin.test%2Fcart%2Fitems%3Fx%3D1"
    );
}
