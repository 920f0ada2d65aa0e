//! A wire-level fake of the Kubernetes API server, for testing kube mode: no real API server can
//! be installed on these machines. It speaks the API's HTTP and JSON on loopback, so the real
//! `kubectl` and Gantry's kube-rs client drive it exactly as they would a cluster:
//!
//! - discovery (`/api`, `/apis`, resource lists) for the built-in kinds Gantry and its manifests
//!   use, and for every kind a CustomResourceDefinition adds once it is created;
//! - get, list and watch with resourceVersion, label and field selectors, bookmarks, and 410 Gone
//!   for a watch resuming from before the history was compacted ([`FakeApi::compact`]);
//! - create, replace (with resourceVersion conflicts), merge, JSON and strategic patches,
//!   server-side apply with managed fields and conflicts, delete, `dryRun=All`;
//! - the status subresource (the main resource cannot change `status`, `/status` only can),
//!   `metadata.generation`, Secrets' `stringData`;
//! - validation: built-in kinds against their OpenAPI types, custom resources against their CRD's
//!   schema, unknown fields refused or pruned as `fieldValidation` says;
//! - bearer-token authentication, over TLS (clients send tokens over TLS only).
//!
//! It speaks JSON (and YAML for server-side apply), not protobuf: `kubectl create` of a
//! built-in kind, which sends protobuf, is refused with 415; tests use `kubectl apply`.
//!
//! A test can also break every watch, compact the history, or stop the server and start it again
//! on the same port, to see how a client copes.
//!
//! `tests/conformance.rs` checks the behaviours Gantry's tests lean on against kube-rs, a real
//! client, so that a change to the fake cannot quietly make it a worse model of the real server.

mod fields;
mod read;
mod request;
mod respond;
mod server;
mod store;
mod tls;
mod types;
mod validate;
mod write;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::Value;
use tokio::sync::watch;

use store::Objects;
use types::Types;

/// How long the server may take to stop.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A bearer token is this prefix and the user's name.
pub const TOKEN_PREFIX: &str = "gantry-test-token-for-";

/// Everything the server knows, shared by its connections.
pub struct State {
    pub inner: Mutex<Inner>,
    /// Bumped to end every open watch.
    pub watch_epoch: watch::Sender<u64>,
    /// One line per request: `VERB resource [details]`.
    pub requests: Mutex<Vec<String>>,
    /// Users whose connections are dropped.
    pub cut_off: Mutex<std::collections::HashSet<String>>,
    /// Every call, as RBAC sees it.
    pub calls: Mutex<Vec<Call>>,
}

/// One call as RBAC authorizes it.
#[derive(Clone, Debug)]
pub struct Call {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: String,
    pub group: String,
    /// The plural, with its subresource (`ingresses/status`).
    pub resource: String,
    pub namespace: Option<String>,
    pub user: String,
}

pub struct Inner {
    pub types: Types,
    pub objects: Objects,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate: clients send a token only over TLS.
    ca_pem: String,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The accept loop, and what tells when it has stopped (the sender drops with it).
    server: Option<(tokio::task::JoinHandle<()>, std::sync::mpsc::Receiver<()>)>,
}

impl FakeApi {
    /// Starts on a free loopback port, with the namespaces a new cluster has.
    pub fn start() -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                types: Types::default(),
                objects: Objects::default(),
            }),
            watch_epoch: watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            cut_off: Mutex::default(),
            calls: Mutex::default(),
        });
        for namespace in ["default", "kube-system", "kube-public"] {
            write::create_namespace(&state, namespace);
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let (ca_pem, tls) = tls::server_config();
        let mut api = FakeApi {
            addr,
            ca_pem,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            state,
            runtime: Some(runtime),
            server: None,
        };
        api.serve(listener);
        api
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let _entered = self.runtime().enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the listener in the runtime");
        let state = self.state.clone();
        let tls = self.tls.clone();
        let (closed, stopped) = std::sync::mpsc::channel::<()>();
        let task = self.runtime().spawn(async move {
            // Dropped after the accept loop (and its listener) when the task is cancelled.
            let _closed = closed;
            server::accept(listener, tls, state).await;
        });
        self.server = Some((task, stopped));
    }

    /// The server goes away: the listener closes and every connection is cut.
    pub fn stop(&mut self) {
        if let Some((task, stopped)) = self.server.take() {
            task.abort();
            // The listener is closed once the loop is: the port is free to bind again.
            let closed = stopped.recv_timeout(STOP_DEADLINE);
            assert!(
                matches!(closed, Err(std::sync::mpsc::RecvTimeoutError::Disconnected)),
                "the fake API server did not stop"
            );
        }
        self.break_watches();
    }

    /// The server comes back on the same address, with everything it stored.
    pub fn restart(&mut self) {
        let listener = std::net::TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("rebind {}: {e}", self.addr));
        self.serve(listener);
    }

    /// Cuts `user` off, as a network partition would: its open watches end and its requests'
    /// connections are dropped, while other users carry on.
    pub fn cut_off(&self, user: &str) {
        self.state
            .cut_off
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user.to_owned());
        self.break_watches();
    }

    /// Ends a partition made by [`FakeApi::cut_off`].
    pub fn reconnect(&self, user: &str) {
        self.state
            .cut_off
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(user);
    }

    /// Ends every open watch; clients resume from the last resourceVersion they saw.
    pub fn break_watches(&self) {
        self.state.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the change history: a watch resuming from before now gets 410 Gone.
    pub fn compact(&self) {
        self.state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .objects
            .compact();
    }

    /// The requests served so far, one line each (`LIST ingresses by gantry`,
    /// `WATCH ingresses rv=7 by gantry`, `APPLY ingresses/status default/web gantry by gantry`...).
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every call made so far, as RBAC sees it.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// An object as stored, by group, plural, namespace (empty for cluster-scoped) and name.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .objects
            .get(&(group.to_owned(), plural.to_owned()), namespace, name)
            .cloned()
    }

    /// A kubeconfig that points at this server with `user`'s token, as `kubectl` and kube-rs
    /// read it.
    pub fn kubeconfig(&self, user: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: https://{addr}
    certificate-authority-data: {ca}
contexts:
- name: fake
  context:
    cluster: fake
    user: {user}
    namespace: default
current-context: fake
users:
- name: {user}
  user:
    token: {TOKEN_PREFIX}{user}
",
            addr = self.addr,
            ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
        )
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
