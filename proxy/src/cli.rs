//! The command line: `gantry run`, `validate`, `status`, `plugin test`, `crds`, `version`, and
//! the reference of them all `gantry cli-reference` prints (`docs/cli.md`). Every flag of `run`
//! can also be set by an environment variable; this is the one place Gantry reads the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    about = "A Kubernetes cluster's whole edge in one binary",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic as the resources in a folder (or, with --kube, the cluster) say, reloading
    /// when they change.
    Run(Box<RunArgs>),
    /// Check every resource in a folder without serving; exit 1 if there is any problem.
    Validate(ValidateArgs),
    /// Show what a running Gantry says of its resources: certificates with their conditions,
    /// expiry and renewal time, and every resource with a problem.
    Status(StatusArgs),
    /// List every upstream endpoint of a running Gantry with its state, weight, health and
    /// load; or set one's state or weight.
    Endpoints(EndpointsArgs),
    /// Work with proxy-wasm plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print other resources equivalent to a folder's.
    #[command(subcommand)]
    Convert(ConvertCommand),
    /// Print the CustomResourceDefinitions of Gantry's resources (YAML), as deploy/crds.yaml
    /// holds them.
    Crds,
    /// Print the reference of every subcommand and flag (Markdown), as docs/cli.md holds it.
    CliReference,
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Folder of Kubernetes resource files (YAML or JSON, read recursively).
    #[arg(
        long,
        env = "GANTRY_CONFIG",
        value_name = "DIR",
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    pub config: Option<PathBuf>,
    /// Read the resources from the Kubernetes API instead of a folder (in-cluster, or the
    /// kubeconfig kubectl would use).
    #[arg(long, env = "GANTRY_KUBE")]
    pub kube: bool,
    /// The kubeconfig to use with --kube (default: `KUBECONFIG`, `~/.kube/config`, or the pod's
    /// service account).
    #[arg(long, value_name = "FILE", requires = "kube")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kube, watch only these namespaces (repeatable, or comma-separated in the
    /// variable; default: all). Cluster-scoped kinds are always watched.
    #[arg(
        long,
        env = "GANTRY_WATCH_NAMESPACE",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub watch_namespace: Vec<String>,
    /// Address of the plain-HTTP listener.
    #[arg(long, env = "GANTRY_HTTP_ADDR", default_value = "0.0.0.0:80")]
    pub http_addr: SocketAddr,
    /// Address of the HTTPS listener.
    #[arg(long, env = "GANTRY_HTTPS_ADDR", default_value = "0.0.0.0:443")]
    pub https_addr: SocketAddr,
    /// Address of the authoritative DNS listener (UDP and TCP).
    #[arg(long, env = "GANTRY_DNS_ADDR", default_value = "0.0.0.0:53")]
    pub dns_addr: SocketAddr,
    /// UDP responses per second to one client network (/24, /56) for one name and type (all
    /// NXDOMAINs and errors count as one), past which responses are dropped: response-rate
    /// limiting against amplification, as BIND's and NSD's (0: no limit; TCP is never limited).
    #[arg(long, env = "GANTRY_DNS_RATE_LIMIT", default_value_t = 200)]
    pub dns_rate_limit: u32,
    /// Of the responses past the rate limit, every Nth is sent truncated, so that a real client
    /// asks again over TCP (0: none, 1: all).
    #[arg(long, env = "GANTRY_DNS_RATE_LIMIT_SLIP", default_value_t = 2)]
    pub dns_rate_limit_slip: u32,
    /// Addresses Ingress hosts resolve to in DNS zones that do not name their own (repeatable,
    /// or comma-separated in the variable).
    #[arg(long, env = "GANTRY_PUBLISH_ADDRESS", value_delimiter = ',')]
    pub publish_address: Vec<std::net::IpAddr>,
    /// With --kube, read only the Secrets with these labels (a label selector, as kubectl's
    /// `-l`), so that Gantry neither holds nor needs access to the others. Default: every Secret
    /// in the watched namespaces.
    #[arg(
        long,
        env = "GANTRY_SECRET_SELECTOR",
        value_name = "SELECTOR",
        requires = "kube"
    )]
    pub secret_selector: Option<String>,
    /// Serve only the Ingresses of this IngressClass (it must name Gantry's controller,
    /// gantry.dev/ingress-controller); the legacy `kubernetes.io/ingress.class` annotation may
    /// name it too. Default: every IngressClass with Gantry's controller, and the annotation
    /// value `gantry`.
    #[arg(long, env = "GANTRY_INGRESS_CLASS", value_name = "NAME")]
    pub ingress_class: Option<String>,
    /// With --kube, the Lease that elects the one replica that orders certificates, publishes
    /// DNS updates and writes status (every replica serves traffic).
    #[arg(
        long,
        env = "GANTRY_LEASE_NAME",
        default_value = "gantry",
        value_name = "NAME"
    )]
    pub lease_name: String,
    /// How long a Lease not renewed stands before another replica takes over (the holder
    /// renews it every third of this).
    #[arg(long, env = "GANTRY_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// The Lease's namespace (default: the pod's, --pod-namespace, else the service account's,
    /// else `default`).
    #[arg(long, env = "GANTRY_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// The pod's namespace, as the deployment passes it from the downward API.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub pod_namespace: Option<String>,
    /// The pod's name, as the deployment passes it from the downward API: this replica's name
    /// in the Lease and in Events (default: the host's name).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// With --kube, the Service (`NAMESPACE/NAME`) in front of Gantry: its load-balancer
    /// addresses go into every Gantry Ingress's `status.loadBalancer` (without it, the
    /// --publish-address list does).
    #[arg(long, env = "GANTRY_PUBLISH_SERVICE", value_name = "NS/NAME", value_parser = parse_namespaced_name)]
    pub publish_service: Option<crate::config::NamespacedName>,
    /// Address of the admin listener (health, readiness, metrics, configuration view).
    #[arg(long, env = "GANTRY_ADMIN_ADDR", default_value = "127.0.0.1:9901")]
    pub admin_addr: SocketAddr,
    /// A ConfigMap (`NAMESPACE/NAME`) of TCP services as ingress-nginx's flag of the same name
    /// reads it: `"PORT": "NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]"`.
    #[arg(long, env = "GANTRY_TCP_SERVICES_CONFIGMAP", value_name = "NS/NAME", value_parser = parse_namespaced_name)]
    pub tcp_services_configmap: Option<crate::config::NamespacedName>,
    /// Peers (addresses or CIDR ranges, repeatable, or comma-separated in the variable) whose
    /// PROXY protocol headers are believed, on the listeners that accept them; a header from
    /// any other peer is refused.
    #[arg(long, env = "GANTRY_PROXY_PROTOCOL_TRUSTED", value_delimiter = ',', value_name = "CIDR", value_parser = parse_cidr)]
    pub proxy_protocol_trusted: Vec<ipnet::IpNet>,
    /// Listeners (`http`, `https`; repeatable, or comma-separated in the variable) whose
    /// connections from --proxy-protocol-trusted peers start with a PROXY protocol header (v1
    /// or v2), naming the client; a header from any other peer is refused.
    #[arg(
        long,
        env = "GANTRY_ACCEPT_PROXY_PROTOCOL",
        value_delimiter = ',',
        value_enum,
        value_name = "LISTENER"
    )]
    pub accept_proxy_protocol: Vec<ProxyListener>,
    /// The same for UDP services.
    #[arg(long, env = "GANTRY_UDP_SERVICES_CONFIGMAP", value_name = "NS/NAME", value_parser = parse_namespaced_name)]
    pub udp_services_configmap: Option<crate::config::NamespacedName>,
    /// What admin writes (`gantry endpoints set`) must carry as `Authorization: Bearer TOKEN`.
    /// Without it, writes are taken only when the admin listener is on loopback.
    #[arg(
        long,
        env = "GANTRY_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Folder for state kept across restarts (the default certificate, later issued
    /// certificates and DNS serials).
    #[arg(long, env = "GANTRY_STATE_DIR", default_value = "/var/lib/gantry")]
    pub state_dir: PathBuf,
    /// Worker threads serving traffic (default: one per CPU).
    #[arg(long, env = "GANTRY_THREADS")]
    pub threads: Option<usize>,
    /// Longest wait, on SIGTERM, for open requests to finish before exiting.
    #[arg(long, env = "GANTRY_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How long, on SIGTERM, the proxy keeps accepting connections before it drains: time for
    /// load balancers to take the replica out (its admin listener and readiness stop at once;
    /// responses meanwhile close their connections). The Helm chart sets 5s.
    #[arg(long, env = "GANTRY_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Write one access log line per request.
    #[arg(long, env = "GANTRY_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What a client may ask of the proxy's listeners, and when Gantry sheds load
/// (docs/limits.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Client limits and overload")]
pub struct LimitArgs {
    /// Longest a request head may take to arrive whole, from the connection's start (or a
    /// kept-alive connection's first byte of it); 408 after.
    #[arg(long, env = "GANTRY_REQUEST_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub request_header_timeout: Duration,
    /// Longest a kept-alive connection (HTTP/1.1 or HTTP/2) may wait for its next request.
    #[arg(long, env = "GANTRY_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = parse_timeout)]
    pub keepalive_timeout: Duration,
    /// Longest wait between two reads of a request body.
    #[arg(long, env = "GANTRY_REQUEST_BODY_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub request_body_timeout: Duration,
    /// Longest wait between two writes of a response the client is slow to read.
    #[arg(long, env = "GANTRY_SEND_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub send_timeout: Duration,
    /// Longest a TLS handshake may take, from the connection's start.
    #[arg(long, env = "GANTRY_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub tls_handshake_timeout: Duration,
    /// Largest request head, request line and header fields together (431 over it; HTTP/2:
    /// the header list's size).
    #[arg(long, env = "GANTRY_MAX_REQUEST_HEADER_BYTES", default_value = "32Ki", value_parser = parse_head_bytes)]
    pub max_request_header_bytes: usize,
    /// Most header fields in a request head (431 over it).
    #[arg(long, env = "GANTRY_MAX_REQUEST_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_request_headers: u16,
    /// Longest request target, path and query (414 over it).
    #[arg(long, env = "GANTRY_MAX_URI_BYTES", default_value = "8Ki", value_parser = parse_head_bytes)]
    pub max_uri_bytes: usize,
    /// Most streams open at once on one HTTP/2 connection.
    #[arg(long, env = "GANTRY_H2_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_concurrent_streams: u32,
    /// Most client connections open at once, over every listener; more are closed as soon as
    /// they are accepted (default: half the open-files limit, which Gantry raises to its hard
    /// limit, less 256 kept for everything else).
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Most connections open at once from one client address (0: no limit; clients behind one
    /// NAT, or a load balancer that does not send the PROXY protocol, share an address).
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 0)]
    pub max_connections_per_client: usize,
    /// Shed new requests with 503 while this many are in flight (0: never).
    #[arg(long, env = "GANTRY_OVERLOAD_MAX_REQUESTS", default_value_t = 0)]
    pub overload_max_requests: usize,
    /// Shed new requests with 503 while the process's resident memory is over this, like
    /// `900Mi` (default: 90% of its cgroup's memory limit, when it has one; 0: never).
    #[arg(long, env = "GANTRY_OVERLOAD_MEMORY", value_parser = crate::quantity::parse_bytes)]
    pub overload_memory: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Folder of Kubernetes resource files.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin listener of the Gantry to ask.
    #[arg(long, env = "GANTRY_ADMIN_ADDR", default_value = "127.0.0.1:9901")]
    pub admin_addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// The admin listener of the Gantry to ask.
    #[arg(
        long,
        env = "GANTRY_ADMIN_ADDR",
        default_value = "127.0.0.1:9901",
        global = true
    )]
    pub admin_addr: SocketAddr,
    #[command(subcommand)]
    pub command: Option<EndpointsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Drain an endpoint (no new requests; its sticky sessions stay), put it in maintenance (no
    /// requests), make it ready again, or change its weight. Lasts until set back or the
    /// endpoint leaves its Service.
    Set(EndpointSetArgs),
}

#[derive(Debug, Args)]
pub struct EndpointSetArgs {
    /// The upstream, as `gantry endpoints` lists it (`NAMESPACE/SERVICE:PORT`).
    pub upstream: String,
    /// The endpoint's address (`IP:PORT`).
    pub endpoint: String,
    /// `ready`, `drain` or `maint`.
    #[arg(long, value_parser = ["ready", "drain", "maint"])]
    pub state: Option<String>,
    /// Its share against its peers' (default 1; 0 takes no new requests).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub weight: Option<u32>,
    /// The admin token, when the Gantry has one (`--admin-token`).
    #[arg(long, env = "GANTRY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin in Gantry's proxy-wasm host against the cases in a YAML file, without a
    /// proxy; exit 1 if any case fails.
    Test(PluginTestArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConvertCommand {
    /// Print the Gateway API resources (and Gantry WasmPlugins) that do what the folder's
    /// Ingresses and their ingress-nginx annotations do, as YAML; list on stderr what could
    /// not be carried over, one line per Ingress field.
    Ingress(ConvertIngressArgs),
}

#[derive(Debug, Args)]
pub struct ConvertIngressArgs {
    /// Folder of Kubernetes resource files (the Services too, to resolve named ports).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The GatewayClass of the Gateways (printed too, with Gantry's controller).
    #[arg(long, default_value = "gantry", value_name = "NAME")]
    pub gateway_class: String,
    /// The name of each namespace's Gateway.
    #[arg(long, default_value = "gantry", value_name = "NAME")]
    pub gateway_name: String,
}

#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The plugin: a `.wasm` file, or `builtin:NAME`.
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
    /// The cases (see `gantry::plugin_test` or the README for their form).
    #[arg(value_name = "CASES.yaml")]
    pub cases: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "GANTRY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, as tracing's EnvFilter reads it (e.g. `info`, `gantry=debug`).
    #[arg(long, env = "GANTRY_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A timeout: a duration longer than zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("a timeout must be longer than 0".to_owned()),
        duration => Ok(duration),
    }
}

/// A size limit of a request head: at least 1Ki, at most 1Mi (Pingora's own limit).
fn parse_head_bytes(text: &str) -> Result<usize, String> {
    match crate::quantity::parse_bytes(text)? {
        bytes @ 1024..=1_048_575 => Ok(bytes),
        _ => Err(format!("{text:?} is not between 1Ki and 1Mi - 1")),
    }
}

fn parse_namespaced_name(text: &str) -> Result<crate::config::NamespacedName, String> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(crate::config::NamespacedName::new(namespace, name))
        }
        _ => Err(format!("{text:?} is not NAMESPACE/NAME")),
    }
}

/// A CIDR range, or one address (a range of one).
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR range (10.0.0.0/8)"))
}

/// A listener that may read the PROXY protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyListener {
    Http,
    Https,
}
