//! Load balancing per route with several real endpoints of one Service, as ingress-nginx's
//! annotations define it (docs/user-guide/nginx-configuration/annotations.md: "Custom NGINX
//! upstream hashing" for `upstream-hash-by`, a template of nginx variables; "Custom NGINX load
//! balancing" for `load-balance`, `round_robin` or `ewma`). Shares are checked within binomial
//! tolerances, never exactly, except where the algorithm is deterministic.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::support::config::{GANTRY_CLASS, nginx_ingress, service};
use crate::support::upstream::{self, Upstream};
use crate::support::{ConfigDir, Gantry, clients, wait_until};

/// An Ingress sending every path of `host` to Service `web`, with ingress-nginx annotations.
fn web_ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    nginx_ingress(name, host, "web", annotations)
}

/// Three echo upstreams (`a`, `b`, `c`) as Service `web`, and a folder with `ingresses`.
async fn three_endpoints(ingresses: &str) -> (ConfigDir, [Upstream; 3]) {
    let endpoints = [
        upstream::echo("a").await,
        upstream::echo("b").await,
        upstream::echo("c").await,
    ];
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    let [a, b, c] = &endpoints;
    config.write("svc.yaml", &web_service(&[a, b, c]));
    config.write("ingress.yaml", ingresses);
    (config, endpoints)
}

fn web_service(endpoints: &[&Upstream]) -> String {
    let endpoints: Vec<_> = endpoints.iter().map(|u| (u.addr, true)).collect();
    service("default", "web", "http", None, &endpoints)
}

/// How many requests each endpoint got when `clients` clients at once send `each` requests
/// for `host`, each on its own connection.
async fn spread(
    gantry: &Gantry,
    host: &str,
    clients: usize,
    each: usize,
) -> BTreeMap<String, usize> {
    load(gantry, host, clients, Load::Requests(each)).await
}

/// How long each client of a load keeps sending.
enum Load {
    Requests(usize),
    /// For this long: the load's concurrency stays whole to the end, as a least-request
    /// balancer needs to tell a busy endpoint.
    For(Duration),
}

async fn load(gantry: &Gantry, host: &str, clients: usize, load: Load) -> BTreeMap<String, usize> {
    let until = match load {
        Load::For(period) => Some(tokio::time::Instant::now() + period),
        Load::Requests(_) => None,
    };
    let each = match load {
        Load::Requests(n) => n,
        Load::For(_) => usize::MAX,
    };
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = gantry.url("/");
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = clients::http1();
            let mut seen = Vec::new();
            for _ in 0..each {
                if until.is_some_and(|until| tokio::time::Instant::now() >= until) {
                    break;
                }
                let response = client.get(&url).header("host", &host).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let body: serde_json::Value = response.json().await.unwrap();
                seen.push(body["server"].as_str().unwrap().to_owned());
            }
            seen
        }));
    }
    let mut counts = BTreeMap::new();
    for task in tasks {
        for server in task.await.unwrap() {
            *counts.entry(server).or_insert(0) += 1;
        }
    }
    counts
}

// `upstream-hash-by: "$http_x_user"`: every request of one user goes to one endpoint, users
// spread over all of them, and a fourth endpoint takes users only for itself (a consistent
// hash: no user moves between endpoints that stayed).
#[tokio::test]
async fn hashing_keeps_each_key_on_one_endpoint_and_a_new_endpoint_takes_only_its_share() {
    let (a, b, c, d) = (
        upstream::echo("a").await,
        upstream::echo("b").await,
        upstream::echo("c").await,
        upstream::echo("d").await,
    );
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &web_service(&[&a, &b, &c]));
    config.write(
        "ingress.yaml",
        &web_ingress(
            "hashed",
            "hash.test",
            &[("upstream-hash-by", "$http_x_user")],
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let users: Vec<String> = (0..60).map(|u| format!("user-{u}")).collect();
    let mut placed = HashMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for user in &users {
        let first = gantry
            .served_by(&client, "hash.test", &[("x-user", user)])
            .await;
        for _ in 0..2 {
            let again = gantry
                .served_by(&client, "hash.test", &[("x-user", user)])
                .await;
            assert_eq!(again, first, "{user} moved without any change");
        }
        *counts.entry(first.clone()).or_default() += 1;
        placed.insert(user.clone(), first);
    }
    // 60 users over 3 endpoints: 20 each on average (binomial sd 3.7, the ring's own unevenness
    // on top); every endpoint takes some, none takes most.
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (server, n) in &counts {
        assert!(
            (6..=36).contains(n),
            "{server} took {n} of 60 users: {counts:?}"
        );
    }

    let generation = gantry.generation().await;
    config.write("svc.yaml", &web_service(&[&a, &b, &c, &d]));
    gantry.wait_generation_after(generation).await;
    let mut moved = 0;
    for user in &users {
        let now = gantry
            .served_by(&client, "hash.test", &[("x-user", user)])
            .await;
        if now != placed[user] {
            assert_eq!(now, "d", "{user} moved from {} to {now}", placed[user]);
            moved += 1;
        }
    }
    // A quarter of the users on average (15 of 60).
    assert!(
        (3..=30).contains(&moved),
        "{moved} of 60 users moved to the new endpoint"
    );
}

// One endpoint of three answers 300 ms late, under a steady load of 12 clients. Round robin
// gives it its third regardless; least request and peak EWMA (`load-balance: ewma`) steer away
// from it once it is busy or known slow.
#[tokio::test]
async fn least_request_and_ewma_send_little_to_a_slow_endpoint_where_round_robin_sends_a_third() {
    let (a, b) = (upstream::echo("a").await, upstream::echo("b").await);
    let slow = upstream::slow_echo("slow", Duration::from_millis(300)).await;
    let config = ConfigDir::new();
    config.write("class.yaml", GANTRY_CLASS);
    config.write("svc.yaml", &web_service(&[&a, &b, &slow]));
    config.write(
        "ingress.yaml",
        &[
            web_ingress("rr", "rr.test", &[]),
            web_ingress("least", "least.test", &[("load-balance", "least_request")]),
            web_ingress("ewma", "ewma.test", &[("load-balance", "ewma")]),
        ]
        .join("---\n"),
    );
    let gantry = Gantry::start(config.path()).await;

    let share = |counts: &BTreeMap<String, usize>| {
        counts.get("slow").copied().unwrap_or(0) as f64 / counts.values().sum::<usize>() as f64
    };
    let period = Load::For(Duration::from_millis(1500));
    let rr = load(&gantry, "rr.test", 12, period).await;
    assert!((0.25..=0.42).contains(&share(&rr)), "round robin: {rr:?}");
    for host in ["least.test", "ewma.test"] {
        let counts = load(&gantry, host, 12, Load::For(Duration::from_millis(1500))).await;
        assert!(
            share(&counts) < 0.10,
            "{host}: the slow endpoint took {:.0}% (round robin gave it {:.0}%): {counts:?}",
            share(&counts) * 100.0,
            share(&rr) * 100.0
        );
    }
}

// `load-balance: random` spreads requests evenly in expectation; a value that is not an
// algorithm, or a hash template naming no variable Gantry knows, is a problem naming the
// annotation, and the route goes on with round robin.
#[tokio::test]
async fn random_spreads_evenly_and_bad_values_are_problems_that_leave_round_robin() {
    let (config, _endpoints) = three_endpoints(
        &[
            web_ingress("random", "random.test", &[("load-balance", "random")]),
            web_ingress("typo", "typo.test", &[("load-balance", "fastest")]),
            web_ingress("badhash", "badhash.test", &[("upstream-hash-by", "$nope")]),
        ]
        .join("---\n"),
    )
    .await;
    let gantry = Gantry::start(config.path()).await;

    // 300 requests over 3 endpoints: 100 each on average, binomial sd 8.2.
    let counts = spread(&gantry, "random.test", 3, 100).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (server, n) in &counts {
        assert!(
            (60..=140).contains(n),
            "{server} took {n} of 300: {counts:?}"
        );
    }

    let problems = gantry.problems().await;
    for wanted in [
        "Ingress default/typo: metadata.annotations[nginx.ingress.kubernetes.io/load-balance]: \"fastest\" is not a load-balancing algorithm",
        "Ingress default/badhash: metadata.annotations[nginx.ingress.kubernetes.io/upstream-hash-by]: \"$nope\": $nope is not a variable",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(wanted)),
            "no problem {wanted:?} in {problems:#?}"
        );
    }
    for host in ["typo.test", "badhash.test"] {
        let route = gantry.route_view(host).await;
        assert_eq!(route["backend"]["balance"], "round_robin", "{route:#}");
        let counts = spread(&gantry, host, 1, 6).await;
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [2, 2, 2],
            "{host}: {counts:?}"
        );
    }
    wait_until("random's route in /config", || async {
        gantry.config().await["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["host"] == "random.test" && r["backend"]["balance"] == "random")
    })
    .await;
}

/// The endpoint that answered, and the `Set-Cookie` it came with.
async fn sticky(
    gantry: &Gantry,
    client: &reqwest::Client,
    host: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let response = gantry.send(client, "GET", host, "/", &headers).await;
    assert_eq!(response.status(), 200, "{host}");
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = response.json().await.unwrap();
    (body["server"].as_str().unwrap().to_owned(), set_cookie)
}

/// `NAME=value` of a `Set-Cookie` field.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

// `affinity: cookie` as ingress-nginx's annotations define it ("Session Affinity"): a client
// without the cookie gets one (`INGRESSCOOKIE` unless named, HttpOnly, with the attributes
// asked for), and with it every request goes to the same endpoint, with no new cookie. In
// `persistent` mode the cookie names the endpoint; when that endpoint leaves, the client is
// sent to another and given a new cookie, never an error.
#[tokio::test]
async fn sticky_sessions_keep_a_client_on_one_endpoint_and_move_it_when_its_endpoint_leaves() {
    let (config, [a, b, c]) = three_endpoints(
        &[
            web_ingress(
                "balanced",
                "balanced.test",
                &[
                    ("affinity", "cookie"),
                    ("session-cookie-max-age", "3600"),
                    ("session-cookie-samesite", "Lax"),
                    ("session-cookie-secure", "true"),
                ],
            ),
            web_ingress(
                "persistent",
                "persistent.test",
                &[
                    ("affinity", "cookie"),
                    ("affinity-mode", "persistent"),
                    ("session-cookie-name", "route"),
                ],
            ),
        ]
        .join("---\n"),
    )
    .await;
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();

    let mut sessions = BTreeMap::new();
    for _ in 0..24 {
        let (first, set_cookie) = sticky(&gantry, &client, "balanced.test", None).await;
        let set_cookie = set_cookie.expect("a new client gets a cookie");
        assert!(set_cookie.starts_with("INGRESSCOOKIE="), "{set_cookie}");
        assert!(
            set_cookie.ends_with("; Path=/; Max-Age=3600; SameSite=Lax; Secure; HttpOnly"),
            "{set_cookie}"
        );
        let cookie = pair(&set_cookie);
        for _ in 0..3 {
            let (again, renewed) = sticky(&gantry, &client, "balanced.test", Some(&cookie)).await;
            assert_eq!(again, first, "{cookie} left its endpoint");
            assert_eq!(renewed, None, "a client with its cookie gets no new one");
        }
        *sessions.entry(first).or_insert(0) += 1;
    }
    // 24 sessions over 3 endpoints: 8 each on average.
    assert!(
        sessions.len() >= 2,
        "every session on one endpoint: {sessions:?}"
    );

    let (home, set_cookie) = sticky(&gantry, &client, "persistent.test", None).await;
    let cookie = pair(&set_cookie.expect("a new client gets a cookie"));
    assert!(cookie.starts_with("route="), "{cookie}");
    for _ in 0..3 {
        let (again, renewed) = sticky(&gantry, &client, "persistent.test", Some(&cookie)).await;
        assert_eq!(again, home);
        assert_eq!(renewed, None);
    }
    let staying: Vec<&Upstream> = [&a, &b, &c]
        .into_iter()
        .zip(["a", "b", "c"])
        .filter(|(_, name)| *name != home)
        .map(|(u, _)| u)
        .collect();
    let generation = gantry.generation().await;
    config.write("svc.yaml", &web_service(&staying));
    gantry.wait_generation_after(generation).await;
    let (moved, renewed) = sticky(&gantry, &client, "persistent.test", Some(&cookie)).await;
    assert_ne!(moved, home, "sent to an endpoint that left");
    let renewed = pair(&renewed.expect("a moved client gets a new cookie"));
    assert_ne!(renewed, cookie);
    for _ in 0..3 {
        let (again, _) = sticky(&gantry, &client, "persistent.test", Some(&renewed)).await;
        assert_eq!(again, moved, "the new cookie holds");
    }
}

// Sticky sessions from a BackendPolicy's `sessionPersistence` (the Gateway API's field names;
// GEP-1619: a session stays with its backend): every route to the Service that does not choose
// its own balancing gets them, with the cookie named, Permanent for `absoluteTimeout`, and the
// route's path.
#[tokio::test]
async fn a_backend_policy_keeps_sessions_on_their_endpoint() {
    let (config, _endpoints) = three_endpoints(&web_ingress("web", "shop.test", &[])).await;
    config.write(
        "policy.yaml",
        &crate::support::config::backend_policy(
            "web",
            "  sessionPersistence:
    sessionName: SHOPSESSION
    absoluteTimeout: 1h
    cookieConfig: {lifetimeType: Permanent}
",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let client = clients::http1();
    let mut homes = BTreeMap::new();
    for _ in 0..12 {
        let (home, set_cookie) = sticky(&gantry, &client, "shop.test", None).await;
        let set_cookie = set_cookie.expect("a new client gets a cookie");
        assert!(set_cookie.starts_with("SHOPSESSION="), "{set_cookie}");
        assert!(
            set_cookie.ends_with("; Path=/; Max-Age=3600; HttpOnly"),
            "{set_cookie}"
        );
        let cookie = pair(&set_cookie);
        for _ in 0..3 {
            let (again, renewed) = sticky(&gantry, &client, "shop.test", Some(&cookie)).await;
            assert_eq!(again, home, "{cookie} left its endpoint");
            assert_eq!(renewed, None);
        }
        *homes.entry(home).or_insert(0) += 1;
    }
    assert!(homes.len() >= 2, "every session on one endpoint: {homes:?}");
}

// Slow start (Envoy Gateway's `loadBalancer.slowStart.window`; Envoy's slow start with
// aggression 1): an endpoint that joins a Service already serving gets a tenth of its share at
// first, growing over the window; those there from the start are not slowed.
#[tokio::test]
async fn an_endpoint_that_joins_starts_slow() {
    let (config, [a, b, c]) = three_endpoints(&web_ingress("web", "shop.test", &[])).await;
    config.write("svc.yaml", &web_service(&[&a, &b]));
    config.write(
        "policy.yaml",
        &crate::support::config::backend_policy(
            "web",
            "  loadBalancer: {type: RoundRobin, slowStart: {window: 1h}}\n",
        ),
    );
    let gantry = Gantry::start(config.path()).await;
    let counts = gantry.answers("shop.test", 100).await;
    assert_eq!(counts.get("a"), Some(&50), "{counts:?}");

    let generation = gantry.generation().await;
    config.write("svc.yaml", &web_service(&[&a, &b, &c]));
    gantry.wait_generation_after(generation).await;
    // Weights 100, 100 and 10: c takes 30 of 630 on average (binomial sd 5.3), not 210.
    let counts = gantry.answers("shop.test", 630).await;
    let c_share = counts.get("c").copied().unwrap_or(0);
    assert!((5..=70).contains(&c_share), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 630, "{counts:?}");
}
