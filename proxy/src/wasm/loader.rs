//! Turns the wanted plugins (WasmPlugins, and those ingress-nginx annotations ask for) into
//! loaded plugins. A built-in plugin is configured in place (it is compiled into Gantry, see
//! [`super::native`]). A module is read from its file (hashing it, and checking it against the
//! resource's sha256), compiled once per content hash (wasmtime's
//! cache keeps the result on disk under the state dir), links it, and brings one trial instance
//! up to check that `proxy_on_vm_start` and `proxy_on_configure` accept their configuration
//! (for a SERVICE plugin, that instance is the one that serves, and the loader keeps it running
//! once told to).
//! A plugin whose resource and module are unchanged is reused as it is, instances and all.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::{Linker, Module};

use super::abi;
use super::builtin;
use super::host::HostState;
use super::instance::{Failure, Instance};
use super::native;
use super::plugin::{Code, Plugin, PluginInfo, Vm, VmInfo};
use super::runtime::{MAX_MEMORY_LIMIT, RuntimeError, Shared};
use super::service::{self, Service, Started};
use crate::config::crd::FailurePolicy;
use crate::config::crd::{WasmPluginSpec, WasmPluginType};
use crate::config::{NamespacedName, ObjectRef};
use crate::duration::parse_duration;
use crate::problem::{FieldError, Problem};

pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// One plugin to load, as the compiler worked it out from the resources (`compile::wanted`).
#[derive(Clone, Debug, PartialEq)]
pub struct WantedPlugin {
    pub key: NamespacedName,
    pub spec: WasmPluginSpec,
    /// Where problems are reported.
    pub file: Option<Arc<Path>>,
    pub object: ObjectRef,
    /// For plugins an annotation asks for: the field every problem is reported on.
    pub field: Option<String>,
    /// Found already: the plugin cannot load.
    pub problem: Option<FieldError>,
}

/// A WasmPlugin after loading.
#[derive(Clone, Debug)]
pub enum PluginLoad {
    Ready(Arc<Plugin>),
    /// It could not be loaded: routes it applies to follow its failure policy.
    Broken {
        reason: String,
        policy: FailurePolicy,
        phase: crate::config::crd::Phase,
        priority: i32,
    },
}

pub type LoadedPlugins = BTreeMap<NamespacedName, PluginLoad>;

struct FileSeen {
    modified: Option<SystemTime>,
    len: u64,
    sha256: String,
}

pub struct Loader {
    shared: Arc<Shared>,
    linker: Linker<HostState>,
    root: PathBuf,
    files: HashMap<PathBuf, FileSeen>,
    modules: HashMap<String, Result<Module, String>>,
    /// The VMs plugins use, so that a plugin loaded later joins the VM its module's others
    /// run in.
    vms: HashMap<VmInfo, Weak<Vm>>,
    plugins: HashMap<NamespacedName, (WantedPlugin, String, PluginLoad, Option<Problem>)>,
    /// The SERVICE plugins running, stopped when dropped.
    services: HashMap<NamespacedName, Service>,
    /// SERVICE plugins brought up by a load and not started yet (see [`Loader::run_services`]).
    pending: HashMap<NamespacedName, (Arc<Plugin>, Started)>,
}

/// Where a plugin's code is.
enum ModuleSource {
    Builtin(builtin::Configure),
    File(PathBuf),
}

/// A configuration value as the plugin receives it: strings as they are, anything else as JSON.
fn config_bytes(value: Option<&serde_json::Value>) -> Bytes {
    match value {
        None | Some(serde_json::Value::Null) => Bytes::new(),
        Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    }
}

/// The field and reason of a refused configuration: gantry-sdk plugins log
/// ``invalid configuration at `FIELD`: REASON``, which names a field inside `spec.config`.
/// The resource's field for `path` inside the plugin's configuration (`limits[0].per`).
fn config_field(path: &str) -> String {
    if path.is_empty() {
        "spec.config".to_owned()
    } else if path.starts_with('[') {
        format!("spec.config{path}")
    } else {
        format!("spec.config.{path}")
    }
}

fn refusal(failure: &Failure) -> FieldError {
    if let Failure::Rejected {
        callback: "proxy_on_configure",
        said: Some(said),
    } = failure
        && let Some(rest) = said.strip_prefix("invalid configuration at `")
        && let Some((path, reason)) = rest.split_once("`: ")
    {
        return FieldError::new(config_field(path), reason);
    }
    if let Failure::Rejected {
        callback: "proxy_on_configure",
        said: Some(said),
    } = failure
        && let Some(reason) = said.strip_prefix("invalid configuration: ")
    {
        return FieldError::new("spec.config", reason);
    }
    FieldError::new("spec.config", format!("the plugin {failure}"))
}

impl Loader {
    pub fn new(shared: Arc<Shared>, root: &Path) -> Result<Self, RuntimeError> {
        let linker = abi::linker(&shared.engine).map_err(RuntimeError::Engine)?;
        Ok(Loader {
            shared,
            linker,
            root: root.to_owned(),
            files: HashMap::new(),
            modules: HashMap::new(),
            vms: HashMap::new(),
            plugins: HashMap::new(),
            services: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// Loads the wanted plugins. Returns the plugins, the problems found, and whether anything
    /// differs from the previous call.
    pub fn load(&mut self, wanted: &[WantedPlugin]) -> (LoadedPlugins, Vec<Problem>, bool) {
        let mut loaded = BTreeMap::new();
        let mut problems = Vec::new();
        let mut changed = wanted.len() != self.plugins.len();
        let mut kept = HashMap::new();
        for want in wanted {
            let source = self.module_source(&want.spec);
            let sha256 = match &source {
                Ok(ModuleSource::File(path)) => self.hash(path).unwrap_or_default(),
                // The binary's own code: its name says all.
                Ok(ModuleSource::Builtin(_)) => want.spec.module.clone(),
                Err(_) => String::new(),
            };
            let previous = self
                .plugins
                .remove(&want.key)
                .filter(|(w, h, _, _)| w == want && *h == sha256);
            let (load, problem) = match previous {
                Some((_, _, load, problem)) => (load, problem),
                None => {
                    changed = true;
                    // A new version of a service replaces the old one: stop the old first.
                    self.services.remove(&want.key);
                    self.pending.remove(&want.key);
                    let result = match &want.problem {
                        Some(error) => Err(error.clone()),
                        None => {
                            source.and_then(|source| self.load_one(&want.key, &want.spec, source))
                        }
                    };
                    match result {
                        Ok((plugin, started)) => {
                            let plugin = Arc::new(plugin);
                            if let Some(started) = started {
                                self.pending
                                    .insert(want.key.clone(), (plugin.clone(), started));
                            }
                            let warning = (want.spec.plugin_type == WasmPluginType::Service
                                && want.spec.targets.is_some())
                            .then(|| {
                                problem(
                                    want,
                                    FieldError::new(
                                        "spec.targets",
                                        "a SERVICE plugin runs on its own, on no route: \
                                         its targets are ignored",
                                    ),
                                )
                                .0
                            });
                            (PluginLoad::Ready(plugin), warning)
                        }
                        Err(bad) => {
                            let (problem, reason) = problem(want, bad);
                            let load = PluginLoad::Broken {
                                reason,
                                policy: want.spec.failure_policy,
                                phase: want.spec.phase,
                                priority: want.spec.priority,
                            };
                            (load, Some(problem))
                        }
                    }
                }
            };
            problems.extend(problem.clone());
            kept.insert(
                want.key.clone(),
                (want.clone(), sha256, load.clone(), problem),
            );
            loaded.insert(want.key.clone(), load);
        }
        self.plugins = kept;
        let plugins = &self.plugins;
        let ready = |key: &NamespacedName| {
            plugins
                .get(key)
                .is_some_and(|(_, _, load, _)| matches!(load, PluginLoad::Ready(_)))
        };
        self.services.retain(|key, _| ready(key));
        self.pending.retain(|key, _| ready(key));
        self.vms.retain(|_, vm| vm.strong_count() > 0);
        (loaded, problems, changed)
    }

    /// Starts the SERVICE plugins the last loads brought up (those gone or changed are stopped
    /// by the load itself). Only a serving Gantry calls this: `gantry validate` and `gantry
    /// plugin test` check a service's start-up and let it go.
    pub fn run_services(&mut self) {
        for (key, (plugin, started)) in self.pending.drain() {
            match Service::start(self.shared.clone(), plugin, started) {
                Ok(service) => {
                    self.services.insert(key, service);
                }
                Err(e) => tracing::error!(plugin = %key, "cannot start the service plugin: {e}"),
            }
        }
    }

    fn module_source(&mut self, spec: &WasmPluginSpec) -> Result<ModuleSource, FieldError> {
        if spec.module.is_empty() {
            return Err(FieldError::new("spec.module", "required"));
        }
        if let Some(name) = spec.module.strip_prefix("builtin:") {
            let Some(configure) = builtin::find(name) else {
                return Err(FieldError::new(
                    "spec.module",
                    format!(
                        "there is no built-in plugin {name:?}; there are {}",
                        builtin::names()
                    ),
                ));
            };
            return Ok(ModuleSource::Builtin(configure));
        }
        let path = Path::new(&spec.module);
        Ok(ModuleSource::File(if path.is_absolute() {
            path.to_owned()
        } else {
            self.root.join(path)
        }))
    }

    /// The module file's SHA-256, read again only when its size or time changed.
    fn hash(&mut self, path: &Path) -> Result<String, std::io::Error> {
        let meta = std::fs::metadata(path)?;
        let modified = meta.modified().ok();
        if let Some(seen) = self.files.get(path)
            && seen.modified == modified
            && seen.len == meta.len()
        {
            return Ok(seen.sha256.clone());
        }
        let bytes = std::fs::read(path)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        self.files.insert(
            path.to_owned(),
            FileSeen {
                modified,
                len: meta.len(),
                sha256: sha256.clone(),
            },
        );
        Ok(sha256)
    }

    fn load_one(
        &mut self,
        key: &NamespacedName,
        spec: &WasmPluginSpec,
        source: ModuleSource,
    ) -> Result<(Plugin, Option<Started>), FieldError> {
        let deadline = match &spec.timeout {
            None => DEFAULT_DEADLINE,
            Some(text) => match parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(FieldError::new("spec.timeout", "must be more than zero")),
                Err(reason) => return Err(FieldError::new("spec.timeout", reason)),
            },
        };
        let memory_limit = match &spec.memory_limit {
            None => DEFAULT_MEMORY_LIMIT,
            Some(text) => match crate::quantity::parse_bytes(text) {
                Ok(n) if n > MAX_MEMORY_LIMIT => {
                    return Err(FieldError::new("spec.memoryLimit", "must be at most 1Gi"));
                }
                Ok(n) if n < (1 << 16) => {
                    return Err(FieldError::new(
                        "spec.memoryLimit",
                        "must be at least 64Ki (one page)",
                    ));
                }
                Ok(n) => n,
                Err(reason) => return Err(FieldError::new("spec.memoryLimit", reason)),
            },
        };
        let info = Arc::new(PluginInfo {
            name: key.to_string(),
            namespace: key.namespace.clone(),
            root_id: spec.root_id.clone(),
            config: config_bytes(spec.config.as_ref()),
            failure_policy: spec.failure_policy,
            deadline,
        });
        let path = match source {
            ModuleSource::Builtin(configure) => {
                return self
                    .load_builtin(spec, info, configure)
                    .map(|plugin| (plugin, None));
            }
            ModuleSource::File(path) => path,
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| FieldError::new("spec.module", format!("{}: {e}", path.display())))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        if let Some(expected) = &spec.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(FieldError::new(
                "spec.sha256",
                format!("the module's SHA-256 is {sha256}, not {expected}"),
            ));
        }
        let module = self
            .modules
            .entry(sha256.clone())
            .or_insert_with(|| {
                Module::new(&self.shared.engine, &bytes).map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| FieldError::new("spec.module", format!("does not compile: {e}")))?;
        let vm_info = VmInfo {
            sha256,
            vm_id: spec.vm_id.clone(),
            vm_config: config_bytes(spec.vm_config.as_ref()),
            memory_limit,
        };
        let vm = match self.vms.get(&vm_info).and_then(Weak::upgrade) {
            Some(vm) => vm,
            None => {
                let mut linker = self.linker.clone();
                let pre = abi::stub_other_wasi(&mut linker, &module)
                    .and_then(|()| linker.instantiate_pre(&module))
                    .map_err(|e| FieldError::new("spec.module", format!("does not link: {e:#}")))?;
                let vm = Arc::new(Vm::new(vm_info.clone(), pre));
                self.vms.insert(vm_info, Arc::downgrade(&vm));
                vm
            }
        };
        let plugin = Plugin::new(info, Code::Wasm(vm), spec.phase, spec.priority);
        self.bring_up(plugin, spec.plugin_type)
    }

    /// Configures a built-in plugin: it must accept its configuration.
    fn load_builtin(
        &self,
        spec: &WasmPluginSpec,
        info: Arc<PluginInfo>,
        configure: builtin::Configure,
    ) -> Result<Plugin, FieldError> {
        if spec.plugin_type == WasmPluginType::Service {
            return Err(FieldError::new(
                "spec.type",
                "a built-in plugin is an HTTP filter: SERVICE is for modules that run on their own",
            ));
        }
        if spec.sha256.is_some() {
            return Err(FieldError::new(
                "spec.sha256",
                "a built-in plugin is compiled into Gantry: there is no module to check",
            ));
        }
        let vm_id: Arc<str> = Arc::from(spec.vm_id.as_str());
        let filter = native::configure(&self.shared, &info, &vm_id, configure)
            .map_err(|e| FieldError::new(config_field(&e.field), e.reason))?;
        Ok(Plugin::new(
            info,
            Code::Native { filter, vm_id },
            spec.phase,
            spec.priority,
        ))
    }

    /// Brings a plugin up once: it must come up with its configuration. A service's instance is
    /// the one that serves. An HTTP plugin's is a trial on scratch state (its serving instances
    /// start on the worker threads), which must also make an HTTP context.
    fn bring_up(
        &self,
        mut plugin: Plugin,
        plugin_type: WasmPluginType,
    ) -> Result<(Plugin, Option<Started>), FieldError> {
        if plugin_type == WasmPluginType::Service {
            let started = service::bring_up(&self.shared, &plugin).map_err(|f| refusal(&f))?;
            return Ok((plugin, Some(started)));
        }
        let scratch = self
            .shared
            .scratch()
            .map_err(|e| FieldError::new("spec.module", e.to_string()))?;
        let Some(vm) = plugin.vm() else {
            return Ok((plugin, None));
        };
        let mut trial =
            Instance::new(vm, scratch, None, plugin.info.deadline).map_err(|f| refusal(&f))?;
        let root = trial.add_root(&plugin.info).map_err(|f| refusal(&f))?;
        trial.probe_http_context(root).map_err(|failure| {
            FieldError::new(
                "spec.type",
                format!(
                    "the module makes no HTTP context (creating one {failure}): a module with \
                     only a root context, such as an Envoy bootstrap plugin, runs as type SERVICE"
                ),
            )
        })?;
        plugin.unneeded = trial.state().unneeded;
        Ok((plugin, None))
    }
}

/// The problem `bad` makes for `want`, and the reason routes that apply it answer with.
fn problem(want: &WantedPlugin, bad: FieldError) -> (Problem, String) {
    let (field, reason) = match &want.field {
        None => (bad.field, bad.reason),
        Some(field) => (
            field.clone(),
            format!("{}: {}: {}", want.spec.module, bad.field, bad.reason),
        ),
    };
    let broken = format!("{}: {field}: {reason}", want.object);
    let problem = Problem::field(want.file.clone(), want.object.clone(), field, reason);
    (problem, broken)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
