//! `gantry run`: starts every subsystem and the Pingora server that runs them, each made by a
//! constructor of its own below (the data plane, admin, reloader, certificates, DNS, kube mode's
//! side effects, the drain) from the pieces they share (a [`Hub`]).

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
use crate::admin::readiness::Readiness;
use crate::certs::challenges::Challenges;
use crate::certs::default_cert::{self, DefaultCertError};
use crate::certs::manager::CertService;
use crate::certs::solver::{Presented, Responses};
use crate::certs::status::CertStatuses;
use crate::cli::ProxyListener;
use crate::cli::RunArgs;
use crate::cmd::drain::Drain;
use crate::config::folder::{FolderError, FolderSource};
use crate::config::kube::{KubeError, KubeSource};
use crate::dataplane::limits::ClientLimits;
use crate::dataplane::{self, Shared, headers::RequestIds};
use crate::dns::publish::PublishFailures;
use crate::dns::service::SharedSerials;
use crate::dns::service::{DnsService, SerialBook};
use crate::kube::leader::LeaseRelease;
use crate::metrics::Metrics;
use crate::reload::{ConfigReloader, ConfigSource, IssuedSecrets, Sources, install};
use crate::snapshot::l4::L4Protocol;
use crate::snapshot::{Snapshot, SnapshotHandle};
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
    prepare_state_dir(&mut args)?;
    let default_cert = default_cert::load_or_create(&args.state_dir)?;
    let (http, https, dns_listeners) = bind_listeners(&args)?;
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    let (config, kube) = config_source(&args, changes.clone())?;
    let kube_mode = kube.is_some();
    let hub = Hub::new(kube_mode)?;
    let resolver = Resolver::from_system().map_err(wasm::runtime::RuntimeError::from)?;
    let wasm = plugin_runtime(&args, &hub, resolver.clone())?;
    let mut sources = sources(&args, config, &wasm)?;
    // In kube mode the first Snapshot waits for the first lists, in the reloader.
    if !kube_mode && let Some(snapshot) = sources.read(true) {
        install(&hub.snapshots, &hub.metrics, &hub.generations, snapshot);
    }
    let ready = Arc::new(Readiness::default());

    let mut server = server(&args, threads);
    let conf = server.configuration.clone();
    let Guards {
        limits,
        admission,
        overload,
    } = client_limits(&args.limits, &hub.metrics)?;
    let shared = Shared {
        acme: hub.responses.clone(),
        snapshots: hub.snapshots.clone(),
        metrics: hub.metrics.clone(),
        request_ids: Arc::new(RequestIds::new(rand_prefix())),
        access_log: args.access_log,
        wasm,
        resolver,
        side_client: Arc::default(),
        limits,
        overload: overload.clone(),
        shutdown_delay: args.shutdown_delay,
    };
    let l4 = Arc::new(dataplane::l4::L4Shared {
        resolver: shared.resolver.clone(),
        metrics: dataplane::l4::L4Metrics::new(&hub.metrics.registry)?,
        proxy_metrics: hub.metrics.clone(),
        proxy_trusted: args.proxy_protocol_trusted.clone().into(),
        admission: admission.clone(),
    });
    let listeners = dataplane::Listeners {
        http,
        https,
        http_proxy_protocol: args.accept_proxy_protocol.contains(&ProxyListener::Http),
        https_proxy_protocol: args.accept_proxy_protocol.contains(&ProxyListener::Https),
        proxy_trusted: args.proxy_protocol_trusted.clone().into(),
        generations: hub.generation_watch.clone(),
        admission,
        ready: ready.clone(),
    };
    server.add_service(dataplane::proxy_service(
        &conf,
        &shared,
        listeners,
        default_cert,
        l4.clone(),
    ));
    server.add_service(dataplane::l4::L4Listeners::new(
        hub.snapshots.clone(),
        hub.generation_watch.clone(),
        args.http_addr.ip(),
        l4,
        ready.clone(),
    ));
    server.add_service(admin(&args, &hub, ready.clone()));
    let reloader = ConfigReloader::new(
        sources,
        hub.snapshots.clone(),
        hub.metrics.clone(),
        ready,
        hub.generations.clone(),
        (changes, changed),
    );
    server.add_service(background_service(
        "gantry certificates",
        certificates(&args, &hub, kube.as_ref(), reloader.changes()),
    ));
    server.add_service(background_service("gantry config reloader", reloader));
    server.add_service(background_service(
        "gantry overload",
        dataplane::overload::OverloadWatch(overload),
    ));
    server.add_service(background_service(
        "gantry OCSP stapling",
        crate::certs::ocsp::Stapler {
            snapshots: hub.snapshots.clone(),
            generations: hub.generation_watch.clone(),
            resolver: shared.resolver.clone(),
        },
    ));
    server.add_service(background_service(
        "gantry health checks",
        crate::upstream::probe::Prober {
            snapshots: hub.snapshots.clone(),
            generations: hub.generation_watch.clone(),
        },
    ));
    let lease = kube.as_ref().map(|kube| kube_tasks(&args, &hub, kube));
    server.add_service(background_service(
        "gantry dns",
        dns(&args, &hub, kube.as_ref(), dns_listeners),
    ));
    server.add_service(background_service(
        "gantry drain",
        Drain {
            open_connections: hub.metrics.open_connections.clone(),
            delay: args.shutdown_delay,
            timeout: args.drain_timeout,
            lease,
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
    // Kept alive until the process exits: the kube watches' runtime, and the leader's sender.
    let _kube = kube;
    let _hub = hub;
    server.run_forever()
}

/// What guards the listeners: the client limits, the connection counts, the overload
/// thresholds.
struct Guards {
    limits: Arc<ClientLimits>,
    admission: Arc<dataplane::admission::Admission>,
    overload: Arc<dataplane::overload::Overload>,
}

/// The guards the flags ask for.
fn client_limits(args: &crate::cli::LimitArgs, metrics: &Metrics) -> Result<Guards, RunError> {
    let limits = ClientLimits {
        request_header_timeout: args.request_header_timeout,
        keepalive_timeout: args.keepalive_timeout,
        request_body_timeout: args.request_body_timeout,
        send_timeout: args.send_timeout,
        tls_handshake_timeout: args.tls_handshake_timeout,
        max_request_header_bytes: args.max_request_header_bytes,
        max_request_headers: usize::from(args.max_request_headers),
        max_uri_bytes: args.max_uri_bytes,
        h2_max_concurrent_streams: args.h2_max_concurrent_streams,
    };
    let for_open_files = dataplane::admission::max_connections_for_open_files();
    let max_connections = args.max_connections.map_or(for_open_files, |max| {
        usize::try_from(max).unwrap_or(usize::MAX)
    });
    let admission = dataplane::admission::Admission::new(
        max_connections,
        args.max_connections_per_client,
        &metrics.connections_refused,
    );
    let max_memory = match args.overload_memory {
        Some(bytes) => bytes as u64,
        None => dataplane::overload::default_memory_threshold().unwrap_or(0),
    };
    let overload = dataplane::overload::Overload::new(
        args.overload_max_requests,
        max_memory,
        &metrics.registry,
    )?;
    info!(
        max_connections,
        max_connections_per_client = args.max_connections_per_client,
        overload_max_requests = args.overload_max_requests,
        overload_memory = max_memory,
        "client limits"
    );
    Ok(Guards {
        limits: Arc::new(limits),
        admission: Arc::new(admission),
        overload: Arc::new(overload),
    })
}

/// What the subsystems share, made once: the Snapshot and its generations, the metrics, who
/// leads, and what the certificate manager, the DNS service, the data plane and (in kube mode)
/// the cluster's shared documents pass between them.
struct Hub {
    metrics: Arc<Metrics>,
    snapshots: SnapshotHandle,
    generations: tokio::sync::watch::Sender<u64>,
    /// Made with the channel, before the first Snapshot: every clone sees that Snapshot as new.
    generation_watch: tokio::sync::watch::Receiver<u64>,
    /// Who orders certificates, publishes DNS updates and writes status: in kube mode the
    /// replica holding the Lease, else this one.
    leader: tokio::sync::watch::Sender<bool>,
    leader_watch: tokio::sync::watch::Receiver<bool>,
    /// The ACME HTTP-01 and TLS-ALPN-01 answers the data plane serves.
    responses: Responses,
    /// What the leader last shared of the challenges it presented (kube mode).
    shared_challenges: tokio::sync::watch::Sender<Presented>,
    shared_watch: tokio::sync::watch::Receiver<Presented>,
    statuses: CertStatuses,
    /// The DNS-01 records the DNS server serves.
    challenges: Challenges,
    publish_failures: PublishFailures,
    shared_serials: SharedSerials,
    serials: tokio::sync::watch::Receiver<crate::dns::service::Serials>,
}

impl Hub {
    fn new(kube_mode: bool) -> Result<Self, RunError> {
        let (serials_outbox, serials) = tokio::sync::watch::channel(Default::default());
        let (generations, generation_watch) = tokio::sync::watch::channel(0u64);
        let (leader, leader_watch) = tokio::sync::watch::channel(!kube_mode);
        let (shared_challenges, shared_watch) = tokio::sync::watch::channel(Presented::default());
        Ok(Hub {
            metrics: Metrics::new()?,
            snapshots: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            generations,
            generation_watch,
            leader,
            leader_watch,
            responses: Responses::default(),
            shared_challenges,
            shared_watch,
            statuses: CertStatuses::default(),
            challenges: Challenges::default(),
            publish_failures: PublishFailures::default(),
            shared_serials: SharedSerials {
                outbox: Arc::new(serials_outbox),
                ..Default::default()
            },
            serials,
        })
    }
}

/// Kube mode's client, and the runtime its watches and side effects run on (beside Pingora's),
/// alive until the process exits.
struct Kube {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    /// Where the Lease and the shared documents live.
    namespace: String,
}

/// Makes the state dir, absolute: wasmtime's compilation cache takes absolute paths only.
fn prepare_state_dir(args: &mut RunArgs) -> Result<(), RunError> {
    std::fs::create_dir_all(&args.state_dir).map_err(|source| RunError::StateDir {
        path: args.state_dir.clone(),
        source,
    })?;
    args.state_dir = std::path::absolute(&args.state_dir).map_err(|source| RunError::StateDir {
        path: args.state_dir.clone(),
        source,
    })?;
    Ok(())
}

/// Binds the proxy's HTTP and HTTPS listeners and the DNS server's UDP and TCP sockets, which
/// take connections and queries from here on (into the backlog and the socket's buffer until
/// their services start): readiness, which answers once the admin listener is up, can then
/// never come before them. The admin address, which Pingora binds later, is tried first:
/// Pingora cannot report a failed bind except by panicking inside its runtime, and here a clear
/// error can still be given.
fn bind_listeners(
    args: &RunArgs,
) -> Result<
    (
        dataplane::BoundListener,
        dataplane::BoundListener,
        gantry_dns::server::DnsListeners,
    ),
    RunError,
> {
    let bind = |addr, flag| {
        dataplane::BoundListener::new(addr).map_err(|source| RunError::Listen {
            addr,
            flag,
            source,
        })
    };
    let http = bind(args.http_addr, "--http-addr")?;
    let https = bind(args.https_addr, "--https-addr")?;
    TcpListener::bind(args.admin_addr).map_err(|source| RunError::Listen {
        addr: args.admin_addr,
        flag: "--admin-addr",
        source,
    })?;
    let dns = gantry_dns::server::DnsListeners::bind(args.dns_addr).map_err(|error| {
        let gantry_dns::server::ServeError::Listen {
            addr,
            protocol,
            source,
        } = error;
        RunError::Listen {
            addr,
            flag: match protocol {
                "TCP" => "--dns-addr, TCP",
                _ => "--dns-addr, UDP",
            },
            source,
        }
    })?;
    Ok((http, https, dns))
}

/// The folder, or in kube mode the API server's watches (started on their own runtime).
fn config_source(
    args: &RunArgs,
    changes: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<(ConfigSource, Option<Kube>), RunError> {
    if let Some(dir) = &args.config {
        return Ok((ConfigSource::Folder(FolderSource::open(dir)?), None));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gantry-kube")
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let client = runtime.block_on(crate::config::kube::client(args.kubeconfig.as_deref()))?;
    let source = {
        let _entered = runtime.enter();
        KubeSource::start(
            &client,
            &args.watch_namespace,
            args.secret_selector.as_deref(),
            &args
                .tcp_services_configmap
                .iter()
                .chain(&args.udp_services_configmap)
                .cloned()
                .collect::<Vec<_>>(),
            changes,
        )
    };
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| crate::kube::leader::default_namespace(args.pod_namespace.as_deref()));
    let kube = Kube {
        runtime,
        client,
        namespace,
    };
    Ok((ConfigSource::Kube(source), Some(kube)))
}

/// The Wasm engine and what plugins share.
fn plugin_runtime(
    args: &RunArgs,
    hub: &Hub,
    resolver: Resolver,
) -> Result<Arc<wasm::Shared>, RunError> {
    let engine = wasm::runtime::engine(Some(&args.state_dir.join("wasm-cache")))?;
    Ok(wasm::Shared::new(
        engine,
        &hub.metrics.registry,
        hub.snapshots.clone(),
        resolver,
    )?)
}

/// What a reload reads: the resources, their plugins, and (in folder mode) the certificates
/// Gantry issued.
fn sources(
    args: &RunArgs,
    config: ConfigSource,
    wasm: &Arc<wasm::Shared>,
) -> Result<Sources, RunError> {
    // Plugin files named by relative paths are found next to the resources, or, in kube mode,
    // in the working directory.
    let plugin_root = match &config {
        ConfigSource::Folder(folder) => folder.root().to_owned(),
        ConfigSource::Kube(_) => std::path::PathBuf::from("."),
    };
    let kube_mode = matches!(config, ConfigSource::Kube(_));
    Ok(Sources {
        config,
        plugins: Loader::new(wasm.clone(), &plugin_root)?,
        settings: crate::compile::Settings {
            publish_addresses: args.publish_address.clone(),
            publish_service: args.publish_service.clone(),
            ingress_class: args.ingress_class.clone(),
            listener_ports: listener_ports(args),
            http_port: args.http_addr.port(),
            https_port: args.https_addr.port(),
            tcp_services: args.tcp_services_configmap.clone(),
            udp_services: args.udp_services_configmap.clone(),
            proxy_trusted: args.proxy_protocol_trusted.clone(),
        },
        issued: (!kube_mode).then(|| IssuedSecrets::new(issued_storage(args))),
    })
}

/// The ports of Gantry's own listeners, which L4Services cannot take.
fn listener_ports(args: &RunArgs) -> Vec<(u16, L4Protocol, String)> {
    vec![
        (
            args.http_addr.port(),
            L4Protocol::Tcp,
            "HTTP listener".to_owned(),
        ),
        (
            args.https_addr.port(),
            L4Protocol::Tcp,
            "HTTPS listener".to_owned(),
        ),
        (
            args.dns_addr.port(),
            L4Protocol::Tcp,
            "DNS listener".to_owned(),
        ),
        (
            args.dns_addr.port(),
            L4Protocol::Udp,
            "DNS listener".to_owned(),
        ),
        (
            args.admin_addr.port(),
            L4Protocol::Tcp,
            "admin listener".to_owned(),
        ),
    ]
}

fn issued_storage(args: &RunArgs) -> FileStorage {
    FileStorage::new(args.state_dir.join("certificates"))
}

/// Pingora's server: `threads` workers with no work stealing, and a drain bounded by
/// `--drain-timeout`.
fn server(args: &RunArgs, threads: usize) -> Server {
    let mut conf = ServerConf {
        threads,
        // Pingora sleeps this long after SIGTERM before it stops; the drain watcher exits as
        // soon as the connections are done, so this is only the backstop.
        grace_period_seconds: Some((args.shutdown_delay + args.drain_timeout).as_secs() + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        // Each connection stays on one worker thread, where its plugins' instances live.
        work_stealing: false,
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 1024;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    server
}

/// The admin listener, on one thread.
fn admin(args: &RunArgs, hub: &Hub, ready: Arc<Readiness>) -> Service<HttpServer<AdminApp>> {
    let app = AdminApp {
        certificates: hub.statuses.clone(),
        snapshots: hub.snapshots.clone(),
        metrics: hub.metrics.clone(),
        ready,
        token: args.admin_token.clone(),
        loopback: args.admin_addr.ip().is_loopback(),
    };
    let mut admin = Service::new("gantry admin".to_owned(), HttpServer::new_app(app));
    admin.add_tcp(&args.admin_addr.to_string());
    admin.threads = Some(1);
    admin
}

/// The certificate manager: ACME state in a folder, or in kube mode in a Secret; issued
/// certificates also in their TLS Secrets in kube mode.
fn certificates(
    args: &RunArgs,
    hub: &Hub,
    kube: Option<&Kube>,
    reload: tokio::sync::mpsc::UnboundedSender<()>,
) -> CertService {
    let acme_store = match kube {
        Some(kube) => gantry_acme::acme::AcmeStore::with_state(Arc::new(
            crate::kube::state::SecretState::new(
                kube.client.clone(),
                &kube.namespace,
                &format!("{}-acme", args.lease_name),
            ),
        )),
        None => gantry_acme::acme::AcmeStore::new(args.state_dir.join("acme")),
    };
    CertService {
        snapshots: hub.snapshots.clone(),
        generations: hub.generation_watch.clone(),
        storage: issued_storage(args),
        acme_store,
        peers: kube.map(|_| crate::certs::solver::Peers {
            shared: hub.shared_watch.clone(),
            service: args.publish_service.clone(),
        }),
        tls_secrets: kube.map(|kube| crate::kube::state::TlsSecrets::new(kube.client.clone())),
        reload,
        metrics: hub.metrics.clone(),
        responses: hub.responses.clone(),
        challenges: hub.challenges.clone(),
        dns_addr: args.dns_addr,
        statuses: hub.statuses.clone(),
        leader: hub.leader_watch.clone(),
    }
}

/// Kube mode's side effects, on the kube runtime: the Lease, the shared DNS serials and
/// challenges, and the status writer. Returns what the drain needs to give the Lease up.
fn kube_tasks(args: &RunArgs, hub: &Hub, kube: &Kube) -> LeaseRelease {
    let instance = crate::kube::status::instance_name(args.pod_name.as_deref());
    let stopping = Arc::new(AtomicBool::new(false));
    let document = |suffix: &str, file: &'static str| {
        crate::kube::document::SharedDocument::new(
            kube.client.clone(),
            &kube.namespace,
            &format!("{}-{suffix}", args.lease_name),
            file,
        )
    };
    let runtime = &kube.runtime;
    runtime.spawn(
        crate::kube::leader::LeaderElection {
            client: kube.client.clone(),
            namespace: kube.namespace.clone(),
            name: args.lease_name.clone(),
            identity: instance.clone(),
            duration: args.lease_duration,
            leader: hub.leader.clone(),
            stopping: stopping.clone(),
        }
        .run(),
    );
    runtime.spawn(
        crate::kube::serials::SerialSync {
            document: document("dns-serials", "serials.json"),
            shared: hub.shared_serials.clone(),
            outbox: hub.serials.clone(),
            leader: hub.leader_watch.clone(),
        }
        .run(),
    );
    runtime.spawn(
        crate::kube::challenges::SharedChallenges {
            document: document("acme-challenges", "challenges.json"),
            responses: hub.responses.clone(),
            challenges: hub.challenges.clone(),
            leader: hub.leader_watch.clone(),
            written: hub.shared_challenges.clone(),
        }
        .run(),
    );
    runtime.spawn(
        crate::kube::status::StatusWriter {
            client: kube.client.clone(),
            snapshots: hub.snapshots.clone(),
            generations: hub.generation_watch.clone(),
            certificates: hub.statuses.clone(),
            leader: hub.leader_watch.clone(),
            instance: instance.clone(),
            publish_failures: hub.publish_failures.clone(),
        }
        .run(),
    );
    LeaseRelease {
        runtime: runtime.handle().clone(),
        client: kube.client.clone(),
        namespace: kube.namespace.clone(),
        name: args.lease_name.clone(),
        identity: instance,
        stopping,
        leader: hub.leader.clone(),
    }
}

/// The DNS service: the Snapshot's zones with serials kept in the state dir (and, in kube mode,
/// numbered as the leader numbers them).
fn dns(
    args: &RunArgs,
    hub: &Hub,
    kube: Option<&Kube>,
    listeners: gantry_dns::server::DnsListeners,
) -> DnsService {
    let mut book = SerialBook::open(&args.state_dir);
    if kube.is_some() {
        book.shared = Some(hub.shared_serials.clone());
    }
    DnsService {
        listeners: std::sync::Mutex::new(Some(listeners)),
        rate_limit: gantry_dns::RateLimit {
            responses_per_second: args.dns_rate_limit,
            slip: args.dns_rate_limit_slip,
            ..gantry_dns::RateLimit::OFF
        },
        snapshots: hub.snapshots.clone(),
        generations: hub.generation_watch.clone(),
        book: std::sync::Mutex::new(book),
        metrics: hub.metrics.clone(),
        challenges: hub.challenges.clone(),
        leader: hub.leader_watch.clone(),
        publish_failures: hub.publish_failures.clone(),
    }
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
