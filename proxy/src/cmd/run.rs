//! `gantry run`: reads the folder, compiles the first Snapshot, and starts the Pingora server
//! with the HTTP, HTTPS and admin listeners, the reloader and the drain watcher.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use gantry_acme::storage::FileStorage;
use pingora::apps::http_app::HttpServer;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tracing::info;

use crate::admin::AdminApp;
use crate::certs::default_cert::{self, DefaultCertError};
use crate::certs::manager::CertService;
use crate::cli::RunArgs;
use crate::cmd::drain::Drain;
use crate::config::folder::{FolderError, FolderSource};
use crate::config::kube::{KubeError, KubeSource};
use crate::dataplane::{self, Shared, headers::RequestIds};
use crate::dns::service::{DnsService, SerialBook};
use crate::metrics::Metrics;
use crate::reload::{ConfigReloader, ConfigSource, IssuedSecrets, Sources, install};
use crate::snapshot::Snapshot;
use crate::upstream::Resolver;
use crate::wasm::{self, Loader};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("the Kubernetes client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("state dir {}: {source}", path.display())]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DefaultCert(#[from] DefaultCertError),
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Listen {
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Wasm(#[from] wasm::runtime::RuntimeError),
    #[error("server setup: {0}")]
    Server(#[from] Box<pingora::Error>),
}

/// Runs until SIGTERM (drain, then exit 0) or SIGINT (immediate exit).
pub fn run(mut args: RunArgs) -> Result<(), RunError> {
    // Pingora and rustls need one process-wide crypto provider; the first install wins.
    let _ = rustls::crypto::ring::default_provider().install_default();

    std::fs::create_dir_all(&args.state_dir).map_err(|source| RunError::StateDir {
        path: args.state_dir.clone(),
        source,
    })?;
    // wasmtime's compilation cache takes absolute paths only; `--state-dir state` is fine too.
    args.state_dir = std::path::absolute(&args.state_dir).map_err(|source| RunError::StateDir {
        path: args.state_dir.clone(),
        source,
    })?;
    let default_cert = default_cert::load_or_create(&args.state_dir)?;
    // Pingora cannot report a failed bind except by panicking inside its runtime, so each
    // address is tried first, while a clear error can still be given.
    for (addr, flag) in [
        (args.http_addr, "--http-addr"),
        (args.https_addr, "--https-addr"),
        (args.admin_addr, "--admin-addr"),
        (args.dns_addr, "--dns-addr"),
    ] {
        TcpListener::bind(addr).map_err(|source| RunError::Listen { addr, flag, source })?;
    }
    std::net::UdpSocket::bind(args.dns_addr).map_err(|source| RunError::Listen {
        addr: args.dns_addr,
        flag: "--dns-addr",
        source,
    })?;

    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    // The kube watches run on a runtime of their own, alive until the process exits.
    let mut kube_runtime = None;
    let mut kube_client = None;
    let config = match &args.config {
        Some(dir) => ConfigSource::Folder(FolderSource::open(dir)?),
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("gantry-kube")
                .enable_all()
                .build()
                .map_err(RunError::Runtime)?;
            let client =
                runtime.block_on(crate::config::kube::client(args.kubeconfig.as_deref()))?;
            let source = {
                let _entered = runtime.enter();
                KubeSource::start(
                    &client,
                    &args.watch_namespace,
                    args.secret_selector.as_deref(),
                    changes.clone(),
                )
            };
            kube_runtime = Some(runtime);
            kube_client = Some(client);
            ConfigSource::Kube(source)
        }
    };
    let metrics = Metrics::new()?;
    let snapshots = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    // Room in the instance pool for many plugins on every worker, plus trial instances.
    let pool = u32::try_from(threads * 64 + 64)
        .unwrap_or(u32::MAX)
        .min(2048);
    let engine = wasm::runtime::engine(Some(&args.state_dir.join("wasm-cache")), pool)?;
    let resolver = Resolver::from_system().map_err(wasm::runtime::RuntimeError::from)?;
    let wasm = wasm::Shared::new(
        engine,
        &metrics.registry,
        snapshots.clone(),
        resolver.clone(),
    )?;
    // Plugin files named by relative paths are found next to the resources, or, in kube mode,
    // in the working directory.
    let plugin_root = match &config {
        ConfigSource::Folder(folder) => folder.root().to_owned(),
        ConfigSource::Kube(_) => std::path::PathBuf::from("."),
    };
    let plugins = Loader::new(wasm.clone(), &plugin_root)?;
    let settings = crate::compile::Settings {
        publish_addresses: args.publish_address.clone(),
        publish_service: args.publish_service.clone(),
        ingress_class: args.ingress_class.clone(),
    };
    let issued = FileStorage::new(args.state_dir.join("certificates"));
    let kube_mode = matches!(config, ConfigSource::Kube(_));
    let mut sources = Sources {
        config,
        plugins,
        settings,
        issued: (!kube_mode).then(|| IssuedSecrets::new(issued.clone())),
    };
    let (generations, generation_watch) = tokio::sync::watch::channel(0u64);
    // In kube mode the first Snapshot waits for the first lists, in the reloader.
    if !kube_mode && let Some(snapshot) = sources.read(true) {
        install(&snapshots, &metrics, &generations, snapshot);
    }
    let ready = Arc::new(AtomicBool::new(false));

    let mut conf = ServerConf {
        threads,
        // Pingora sleeps this long after SIGTERM before it stops; the drain watcher exits as
        // soon as the connections are done, so this is only the backstop.
        grace_period_seconds: Some(args.drain_timeout.as_secs() + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        // Each connection stays on one worker thread, where its plugins' instances live.
        work_stealing: false,
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 1024;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    // Who orders certificates, publishes DNS updates and writes status: in kube mode the
    // replica holding the Lease, else this one.
    let (leader_sender, leader) = tokio::sync::watch::channel(!kube_mode);
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(crate::kube::leader::pod_namespace);
    let publish_failures = crate::dns::publish::PublishFailures::default();
    let mut book = SerialBook::open(&args.state_dir);
    let (serials_outbox, serials_watch) = tokio::sync::watch::channel(Default::default());
    let shared_serials = crate::dns::service::SharedSerials {
        outbox: Arc::new(serials_outbox),
        ..Default::default()
    };
    if kube_mode {
        book.shared = Some(shared_serials.clone());
    }
    let responses = crate::certs::solver::Responses::default();
    // What the leader last shared of the challenges it presented (kube mode).
    let (shared_challenges, shared_watch) =
        tokio::sync::watch::channel(crate::certs::solver::Presented::default());
    let statuses = crate::certs::status::CertStatuses::default();
    let challenges = crate::certs::challenges::Challenges::default();
    let shared = Shared {
        acme: responses.clone(),
        snapshots: snapshots.clone(),
        metrics: metrics.clone(),
        request_ids: Arc::new(RequestIds::new(rand_prefix())),
        access_log: args.access_log,
        wasm,
        resolver,
    };
    let listeners = dataplane::Listeners {
        http: &args.http_addr.to_string(),
        https: args.https_addr,
    };
    server.add_service(dataplane::proxy_service(
        &conf,
        &shared,
        &listeners,
        default_cert,
    )?);

    let admin = AdminApp {
        certificates: statuses.clone(),
        snapshots: snapshots.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let mut admin = Service::new("gantry admin".to_owned(), HttpServer::new_app(admin));
    admin.add_tcp(&args.admin_addr.to_string());
    admin.threads = Some(1);
    server.add_service(admin);

    let reloader = ConfigReloader::new(
        sources,
        snapshots.clone(),
        metrics.clone(),
        ready,
        generations,
        (changes, changed),
    );
    server.add_service(background_service(
        "gantry certificates",
        CertService {
            snapshots: snapshots.clone(),
            generations: generation_watch.clone(),
            storage: issued,
            acme_store: match &kube_client {
                Some(client) => gantry_acme::acme::AcmeStore::with_state(Arc::new(
                    crate::kube::state::SecretState::new(
                        client.clone(),
                        &lease_namespace,
                        &format!("{}-acme", args.lease_name),
                    ),
                )),
                None => gantry_acme::acme::AcmeStore::new(args.state_dir.join("acme")),
            },
            peers: kube_mode.then(|| crate::certs::solver::Peers {
                shared: shared_watch.clone(),
                service: args.publish_service.clone(),
            }),
            tls_secrets: kube_client.clone().map(crate::kube::state::TlsSecrets::new),
            reload: reloader.changes(),
            metrics: metrics.clone(),
            responses: responses.clone(),
            challenges: challenges.clone(),
            dns_addr: args.dns_addr,
            statuses: statuses.clone(),
            leader: leader.clone(),
        },
    ));
    server.add_service(background_service("gantry config reloader", reloader));
    let mut lease_release = None;
    if let (Some(runtime), Some(client)) = (&kube_runtime, kube_client) {
        let instance = crate::kube::status::instance_name();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        runtime.spawn(
            crate::kube::leader::LeaderElection {
                client: client.clone(),
                namespace: lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: instance.clone(),
                duration: args.lease_duration,
                leader: leader_sender.clone(),
                stopping: stopping.clone(),
            }
            .run(),
        );
        runtime.spawn(
            crate::kube::serials::SerialSync {
                document: crate::kube::document::SharedDocument::new(
                    client.clone(),
                    &lease_namespace,
                    &format!("{}-dns-serials", args.lease_name),
                    "serials.json",
                ),
                shared: shared_serials,
                outbox: serials_watch,
                leader: leader.clone(),
            }
            .run(),
        );
        runtime.spawn(
            crate::kube::challenges::SharedChallenges {
                document: crate::kube::document::SharedDocument::new(
                    client.clone(),
                    &lease_namespace,
                    &format!("{}-acme-challenges", args.lease_name),
                    "challenges.json",
                ),
                responses: responses.clone(),
                challenges: challenges.clone(),
                leader: leader.clone(),
                written: shared_challenges,
            }
            .run(),
        );
        runtime.spawn(
            crate::kube::status::StatusWriter {
                client: client.clone(),
                snapshots: snapshots.clone(),
                generations: generation_watch.clone(),
                certificates: statuses.clone(),
                leader: leader.clone(),
                instance: instance.clone(),
                publish_failures: publish_failures.clone(),
            }
            .run(),
        );
        lease_release = Some(crate::kube::leader::LeaseRelease {
            runtime: runtime.handle().clone(),
            client,
            namespace: lease_namespace,
            name: args.lease_name.clone(),
            identity: instance,
            stopping,
            leader: leader_sender.clone(),
        });
    }
    server.add_service(background_service(
        "gantry dns",
        DnsService {
            addr: args.dns_addr,
            snapshots,
            generations: generation_watch,
            book: std::sync::Mutex::new(book),
            metrics: metrics.clone(),
            challenges,
            leader: leader.clone(),
            publish_failures: publish_failures.clone(),
        },
    ));
    server.add_service(background_service(
        "gantry drain",
        Drain {
            open_connections: metrics.open_connections.clone(),
            timeout: args.drain_timeout,
            lease: lease_release,
        },
    ));

    info!(
        http = %args.http_addr,
        https = %args.https_addr,
        admin = %args.admin_addr,
        dns = %args.dns_addr,
        config = %args.config.as_ref().map_or("(kube)".into(), |c| c.display().to_string()),
        threads,
        "gantry {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let _kube_runtime = kube_runtime;
    let _leader_sender = leader_sender;
    server.run_forever()
}

/// A prefix for request ids that differs between runs.
fn rand_prefix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
