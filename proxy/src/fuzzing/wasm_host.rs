//! The proxy-wasm host boundary under a fuzzer: a plugin that calls every host function Gantry
//! defines with arguments the fuzzer chooses. The plugin is one fixed module, made here with
//! wasm-encoder, that imports every function of Gantry's linker (found by walking it, so a host
//! function added later is fuzzed too) and runs a little program in each callback: the fuzz
//! input, handed to it as the plugin's configuration (in hex, as configuration strings are
//! UTF-8). Each step of the program is a byte choosing the host function, a byte choosing how
//! its integer arguments are read (two bytes each, which lands in the plugin's memory more
//! often than not, or four), then the arguments; a byte `0xff` ends the callback's part. So
//! pointers, sizes, buffer and map types, map encodings (the memory holds the program's own
//! bytes) and the order of calls across the request's phases are the fuzzer's.
//!
//! The plugin is loaded through Gantry's loader and sent one request and its response through
//! the filter chain, as the proxy does. Whatever the plugin does must end in a verdict: a trap,
//! a bad host call or a refused configuration is contained, never a panic, and the host must
//! still run a plain plugin afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, ImportSection, Instruction, MemArg, MemorySection, MemoryType,
    Module, TypeSection, ValType,
};

use crate::config::crd::{FailurePolicy, Phase, WasmPluginSpec};
use crate::config::{Kind, NamespacedName, ObjectRef};
use crate::snapshot::Snapshot;
use crate::wasm::host::HostState;
use crate::wasm::plugin::VmInfo;
use crate::wasm::{Filters, Loader, PluginLoad, RequestInfo, Shared, Verdict, WantedPlugin};

/// Where the plugin keeps the program, and the most of it kept.
const PROGRAM_AT: i32 = 0x1000;
const PROGRAM_MOST: i32 = 0xe000;
/// Where `proxy_get_buffer_bytes` writes the configuration's address and size.
const RETURNED_AT: i32 = 0x100;
/// Where `proxy_on_memory_allocate` starts handing memory out.
const HEAP_AT: i32 = 0x10000;
const END_OF_PART: u8 = 0xff;
/// The proxy-wasm buffer type of the plugin's configuration.
const PLUGIN_CONFIGURATION: i32 = 7;

/// Globals of the module.
const CURSOR: u32 = 0;
const END: u32 = 1;
const MODE: u32 = 2;
const HEAP: u32 = 3;

/// One host function: where the linker defines it and its signature.
#[derive(Debug, Clone)]
pub struct HostFunction {
    pub module: String,
    pub name: String,
    params: Vec<ValType>,
    results: Vec<ValType>,
}

fn encoder_type(ty: &wasmtime::ValType) -> Option<ValType> {
    match ty {
        wasmtime::ValType::I32 => Some(ValType::I32),
        wasmtime::ValType::I64 => Some(ValType::I64),
        wasmtime::ValType::F32 => Some(ValType::F32),
        wasmtime::ValType::F64 => Some(ValType::F64),
        _ => None,
    }
}

/// Every function Gantry's linker defines, by module and name (the linker's own order changes
/// from one linker to the next, and a fuzz input must mean the same calls in every run).
pub fn host_functions(shared: &Arc<Shared>) -> Vec<HostFunction> {
    let linker = crate::wasm::abi::linker(&shared.engine).expect("Gantry's linker builds");
    let info = Arc::new(VmInfo {
        sha256: String::new(),
        vm_id: String::new(),
        vm_config: Bytes::new(),
        memory_limit: 1 << 20,
    });
    let state = HostState::new(info, shared.clone()).expect("a host state for the walk");
    let mut store = wasmtime::Store::new(&shared.engine, state);
    let defined: Vec<(String, String, wasmtime::Extern)> = linker
        .iter(&mut store)
        .map(|(module, name, item)| (module.to_owned(), name.to_owned(), item))
        .collect();
    let mut hosts: Vec<HostFunction> = defined
        .into_iter()
        .filter_map(|(module, name, item)| {
            let ty = item.into_func()?.ty(&store);
            Some(HostFunction {
                module,
                name,
                params: ty
                    .params()
                    .map(|p| encoder_type(&p))
                    .collect::<Option<_>>()?,
                results: ty
                    .results()
                    .map(|r| encoder_type(&r))
                    .collect::<Option<_>>()?,
            })
        })
        .collect();
    hosts.sort_by(|a, b| (&a.module, &a.name).cmp(&(&b.module, &b.name)));
    hosts
}

fn memory_at(offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

/// The plugin: imports `hosts`, interprets its configuration as calls to them.
pub fn plugin_module(hosts: &[HostFunction]) -> Vec<u8> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    for (index, host) in hosts.iter().enumerate() {
        types
            .ty()
            .function(host.params.iter().copied(), host.results.iter().copied());
        imports.import(
            &host.module,
            &host.name,
            wasm_encoder::EntityType::Function(index as u32),
        );
    }
    let imported = hosts.len() as u32;
    let mut next_type = imported;
    let mut type_of = |types: &mut TypeSection, params: &[ValType], results: &[ValType]| {
        types
            .ty()
            .function(params.iter().copied(), results.iter().copied());
        next_type += 1;
        next_type - 1
    };
    let get_buffer_bytes = hosts
        .iter()
        .position(|h| h.name == "proxy_get_buffer_bytes")
        .expect("the host defines proxy_get_buffer_bytes") as u32;

    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut exports = ExportSection::new();
    let mut defined = imported;
    let mut define = |types: &mut TypeSection,
                      functions: &mut FunctionSection,
                      code: &mut CodeSection,
                      params: &[ValType],
                      results: &[ValType],
                      body: Function| {
        functions.function(type_of(types, params, results));
        code.function(&body);
        defined += 1;
        defined - 1
    };

    // arg32: the next integer argument, two bytes or four as the step's mode says.
    let mut body = Function::new([]);
    for instruction in [
        Instruction::GlobalGet(MODE),
        Instruction::I32Const(1),
        Instruction::I32And,
        Instruction::If(BlockType::Result(ValType::I32)),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Load(memory_at(0, 0)),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Const(4),
        Instruction::I32Add,
        Instruction::GlobalSet(CURSOR),
        Instruction::Else,
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Load16U(memory_at(0, 0)),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Const(2),
        Instruction::I32Add,
        Instruction::GlobalSet(CURSOR),
        Instruction::End,
        Instruction::End,
    ] {
        body.instruction(&instruction);
    }
    let arg32 = define(
        &mut types,
        &mut functions,
        &mut code,
        &[],
        &[ValType::I32],
        body,
    );

    // arg64, and the two float kinds for completeness.
    let mut wide = |load: Instruction<'static>, size: i32, result: ValType| {
        let mut body = Function::new([]);
        for instruction in [
            Instruction::GlobalGet(CURSOR),
            load,
            Instruction::GlobalGet(CURSOR),
            Instruction::I32Const(size),
            Instruction::I32Add,
            Instruction::GlobalSet(CURSOR),
            Instruction::End,
        ] {
            body.instruction(&instruction);
        }
        define(&mut types, &mut functions, &mut code, &[], &[result], body)
    };
    let arg64 = wide(Instruction::I64Load(memory_at(0, 0)), 8, ValType::I64);
    let argf32 = wide(Instruction::F32Load(memory_at(0, 0)), 4, ValType::F32);
    let argf64 = wide(Instruction::F64Load(memory_at(0, 0)), 8, ValType::F64);

    // run: the steps up to the end of this callback's part. Local 0: the host function chosen.
    let mut body = Function::new([(1, ValType::I32)]);
    let count = hosts.len() as u32;
    body.instruction(&Instruction::Block(BlockType::Empty)); // done
    body.instruction(&Instruction::Loop(BlockType::Empty)); // step
    for instruction in [
        Instruction::GlobalGet(CURSOR),
        Instruction::GlobalGet(END),
        Instruction::I32GeU,
        Instruction::BrIf(1),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Load8U(memory_at(0, 0)),
        Instruction::I32Const(i32::from(END_OF_PART)),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Const(1),
        Instruction::I32Add,
        Instruction::GlobalSet(CURSOR),
        Instruction::Br(2),
        Instruction::End,
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Load8U(memory_at(1, 0)),
        Instruction::GlobalSet(MODE),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Load8U(memory_at(0, 0)),
        Instruction::I32Const(count as i32),
        Instruction::I32RemU,
        Instruction::LocalSet(0),
        Instruction::GlobalGet(CURSOR),
        Instruction::I32Const(2),
        Instruction::I32Add,
        Instruction::GlobalSet(CURSOR),
    ] {
        body.instruction(&instruction);
    }
    // One block per host function around a br_table; the call for function i follows the end of
    // block i, then goes round again.
    for _ in 0..count {
        body.instruction(&Instruction::Block(BlockType::Empty));
    }
    let targets: Vec<u32> = (0..count).collect();
    body.instruction(&Instruction::LocalGet(0));
    body.instruction(&Instruction::BrTable(targets.into(), count - 1));
    for (index, host) in hosts.iter().enumerate() {
        body.instruction(&Instruction::End);
        for param in &host.params {
            let read = match param {
                ValType::I64 => arg64,
                ValType::F32 => argf32,
                ValType::F64 => argf64,
                _ => arg32,
            };
            body.instruction(&Instruction::Call(read));
        }
        body.instruction(&Instruction::Call(index as u32));
        for _ in &host.results {
            body.instruction(&Instruction::Drop);
        }
        // From inside the remaining blocks: past them to the loop.
        body.instruction(&Instruction::Br(count - 1 - index as u32));
    }
    body.instruction(&Instruction::End); // loop
    body.instruction(&Instruction::End); // done
    body.instruction(&Instruction::End);
    let run = define(&mut types, &mut functions, &mut code, &[], &[], body);

    // load_program: the configuration, in hex, decoded to PROGRAM_AT; the cursor to its start.
    // Locals: 0 address, 1 end, 2 byte, 3 value, 4 high nibble (or -1), 5 out.
    let mut body = Function::new([(6, ValType::I32)]);
    for instruction in [
        Instruction::I32Const(PLUGIN_CONFIGURATION),
        Instruction::I32Const(0),
        Instruction::I32Const(PROGRAM_MOST * 2),
        Instruction::I32Const(RETURNED_AT),
        Instruction::I32Const(RETURNED_AT + 4),
        Instruction::Call(get_buffer_bytes),
        Instruction::Drop,
        Instruction::I32Const(RETURNED_AT),
        Instruction::I32Load(memory_at(0, 2)),
        Instruction::LocalTee(0),
        Instruction::I32Const(RETURNED_AT),
        Instruction::I32Load(memory_at(4, 2)),
        Instruction::I32Add,
        Instruction::LocalSet(1),
        Instruction::I32Const(-1),
        Instruction::LocalSet(4),
        Instruction::I32Const(PROGRAM_AT),
        Instruction::LocalSet(5),
        Instruction::Block(BlockType::Empty),
        Instruction::Loop(BlockType::Empty),
        // Stop at the end of the text, or when the program area is full.
        Instruction::LocalGet(0),
        Instruction::LocalGet(1),
        Instruction::I32GeU,
        Instruction::BrIf(1),
        Instruction::LocalGet(5),
        Instruction::I32Const(PROGRAM_AT + PROGRAM_MOST),
        Instruction::I32GeU,
        Instruction::BrIf(1),
        Instruction::LocalGet(0),
        Instruction::I32Load8U(memory_at(0, 0)),
        Instruction::LocalSet(2),
        Instruction::LocalGet(0),
        Instruction::I32Const(1),
        Instruction::I32Add,
        Instruction::LocalSet(0),
        // '0'..='9' -> 0..9, 'a'..='f' -> 10..15, anything else is passed over.
        Instruction::LocalGet(2),
        Instruction::I32Const(i32::from(b'0')),
        Instruction::I32Sub,
        Instruction::LocalTee(3),
        Instruction::I32Const(10),
        Instruction::I32GeU,
        Instruction::If(BlockType::Empty),
        Instruction::LocalGet(2),
        Instruction::I32Const(i32::from(b'a') - 10),
        Instruction::I32Sub,
        Instruction::LocalSet(3),
        Instruction::LocalGet(3),
        Instruction::I32Const(10),
        Instruction::I32LtU,
        Instruction::LocalGet(3),
        Instruction::I32Const(15),
        Instruction::I32GtU,
        Instruction::I32Or,
        Instruction::BrIf(1),
        Instruction::End,
        Instruction::LocalGet(4),
        Instruction::I32Const(0),
        Instruction::I32LtS,
        Instruction::If(BlockType::Empty),
        Instruction::LocalGet(3),
        Instruction::LocalSet(4),
        Instruction::Else,
        Instruction::LocalGet(5),
        Instruction::LocalGet(4),
        Instruction::I32Const(4),
        Instruction::I32Shl,
        Instruction::LocalGet(3),
        Instruction::I32Or,
        Instruction::I32Store8(memory_at(0, 0)),
        Instruction::LocalGet(5),
        Instruction::I32Const(1),
        Instruction::I32Add,
        Instruction::LocalSet(5),
        Instruction::I32Const(-1),
        Instruction::LocalSet(4),
        Instruction::End,
        Instruction::Br(0),
        Instruction::End,
        Instruction::End,
        Instruction::I32Const(PROGRAM_AT),
        Instruction::GlobalSet(CURSOR),
        Instruction::LocalGet(5),
        Instruction::GlobalSet(END),
        Instruction::End,
    ] {
        body.instruction(&instruction);
    }
    let load_program = define(&mut types, &mut functions, &mut code, &[], &[], body);

    // proxy_on_memory_allocate: a bump allocator growing the memory as needed (0 when it
    // cannot: the host must cope).
    let mut body = Function::new([(2, ValType::I32)]);
    for instruction in [
        Instruction::GlobalGet(HEAP),
        Instruction::LocalTee(1),
        Instruction::LocalGet(0),
        Instruction::I32Add,
        Instruction::I32Const(7),
        Instruction::I32Add,
        Instruction::I32Const(-8),
        Instruction::I32And,
        Instruction::LocalTee(2),
        Instruction::MemorySize(0),
        Instruction::I32Const(16),
        Instruction::I32Shl,
        Instruction::I32GtU,
        Instruction::If(BlockType::Empty),
        Instruction::LocalGet(2),
        Instruction::MemorySize(0),
        Instruction::I32Const(16),
        Instruction::I32Shl,
        Instruction::I32Sub,
        Instruction::I32Const(0xffff),
        Instruction::I32Add,
        Instruction::I32Const(16),
        Instruction::I32ShrU,
        Instruction::MemoryGrow(0),
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::I32Const(0),
        Instruction::Return,
        Instruction::End,
        Instruction::End,
        Instruction::LocalGet(2),
        Instruction::GlobalSet(HEAP),
        Instruction::LocalGet(1),
        Instruction::End,
    ] {
        body.instruction(&instruction);
    }
    let allocate = define(
        &mut types,
        &mut functions,
        &mut code,
        &[ValType::I32],
        &[ValType::I32],
        body,
    );
    exports.export("proxy_on_memory_allocate", ExportKind::Func, allocate);

    // The callbacks: each runs its part of the program and answers what lets the request go
    // on (a paused request would only wait for its deadline).
    let callbacks: [(&str, usize, Option<i32>, bool); 14] = [
        ("proxy_on_context_create", 2, None, false),
        ("proxy_on_vm_start", 2, Some(1), false),
        ("proxy_on_configure", 2, Some(1), true),
        ("proxy_on_request_headers", 3, Some(0), false),
        ("proxy_on_request_body", 3, Some(0), false),
        ("proxy_on_response_headers", 3, Some(0), false),
        ("proxy_on_response_body", 3, Some(0), false),
        ("proxy_on_response_trailers", 2, Some(0), false),
        ("proxy_on_log", 1, None, false),
        ("proxy_on_done", 1, Some(1), false),
        ("proxy_on_delete", 1, None, false),
        ("proxy_on_tick", 1, None, false),
        ("proxy_on_queue_ready", 2, None, false),
        ("proxy_on_http_call_response", 5, None, false),
    ];
    for (name, params, answer, loads) in callbacks {
        let mut body = Function::new([]);
        if loads {
            body.instruction(&Instruction::Call(load_program));
        }
        body.instruction(&Instruction::Call(run));
        if let Some(answer) = answer {
            body.instruction(&Instruction::I32Const(answer));
        }
        body.instruction(&Instruction::End);
        let results: &[ValType] = if answer.is_some() {
            &[ValType::I32]
        } else {
            &[]
        };
        let index = define(
            &mut types,
            &mut functions,
            &mut code,
            &vec![ValType::I32; params],
            results,
            body,
        );
        exports.export(name, ExportKind::Func, index);
    }

    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 2,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    exports.export("memory", ExportKind::Memory, 0);
    let mut globals = GlobalSection::new();
    for initial in [PROGRAM_AT, PROGRAM_AT, 0, HEAP_AT] {
        globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const(initial),
        );
    }

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&functions)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code);
    module.finish()
}

/// The loader, the module's file and a runtime, made once per process.
struct Harness {
    shared: Arc<Shared>,
    loader: Mutex<Loader>,
    module: PathBuf,
    runtime: tokio::runtime::Runtime,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let engine = crate::wasm::runtime::engine(None).expect("a wasm engine");
        let shared = Shared::new(
            engine,
            &prometheus::Registry::new(),
            Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            crate::upstream::Resolver::from_system().expect("a resolver"),
        )
        .expect("the wasm runtime");
        // Named by its content, so that runs (and runs at once) share one file.
        let bytes = plugin_module(&host_functions(&shared));
        let dir = std::env::temp_dir().join("gantry-fuzz-wasm-host");
        std::fs::create_dir_all(&dir).expect("a folder for the module");
        let name = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        let module = dir.join(format!("calls-everything-{name}.wasm"));
        let partial = dir.join(format!("{name}.{}.partial", std::process::id()));
        std::fs::write(&partial, &bytes).expect("write the module");
        std::fs::rename(&partial, &module).expect("put the module in place");
        let loader = Loader::new(shared.clone(), &dir).expect("a plugin loader");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Harness {
            shared,
            loader: Mutex::new(loader),
            module,
            runtime,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the plugin with `program` as its configuration: the plugin, or why it did not load.
fn load(harness: &Harness, program: &[u8]) -> Result<Arc<crate::wasm::Plugin>, String> {
    let key = NamespacedName::new("fuzz", "calls-everything");
    let wanted = WantedPlugin {
        key: key.clone(),
        spec: WasmPluginSpec {
            module: harness.module.display().to_string(),
            plugin_type: Default::default(),
            sha256: None,
            config: Some(serde_json::Value::String(hex(program))),
            vm_config: None,
            root_id: String::new(),
            vm_id: String::new(),
            failure_policy: FailurePolicy::FailClosed,
            phase: Phase::Unspecified,
            priority: 0,
            timeout: Some("1s".to_owned()),
            memory_limit: Some("16Mi".to_owned()),
            targets: None,
        },
        file: None,
        object: ObjectRef::new(Kind::WasmPlugin, &key),
        field: None,
        problem: None,
    };
    let mut loader = harness
        .loader
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (plugins, problems, _) = loader.load(std::slice::from_ref(&wanted));
    match plugins.get(&key) {
        Some(PluginLoad::Ready(plugin)) => Ok(plugin.clone()),
        _ => Err(problems
            .iter()
            .map(|p| p.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// One request with a body and its response with a body through `plugin`; what the client
/// would be told, in short.
async fn exchange(shared: &Arc<Shared>, plugin: &Arc<crate::wasm::Plugin>) -> String {
    let Ok(mut request) = RequestHeader::build("POST", b"/fuzz?x=1", None) else {
        return "no request".to_owned();
    };
    for (name, value) in [
        ("host", "fuzz.test"),
        ("content-length", "4"),
        ("x-one", "1"),
    ] {
        let _ = request.insert_header(name, value);
    }
    let mut filters = Filters::new(
        shared.clone(),
        std::slice::from_ref(plugin),
        RequestInfo::new(Arc::from("fuzz")),
    );
    let mut outcome = HashMap::new();
    let verdict = filters.request_headers(&mut request, false).await;
    outcome.insert("request headers", format!("{verdict:?}"));
    if matches!(verdict, Verdict::Continue) {
        let mut body = Some(Bytes::from_static(b"body"));
        let verdict = filters.request_body(&mut request, &mut body, true).await;
        outcome.insert("request body", format!("{verdict:?}"));
        if let Ok(mut response) = ResponseHeader::build(200, None) {
            let _ = response.insert_header("content-length", "2");
            let verdict = filters
                .response_headers(&mut request, &mut response, false)
                .await;
            outcome.insert("response headers", format!("{verdict:?}"));
            let mut body = Some(Bytes::from_static(b"ok"));
            let verdict = filters.response_body(&mut request, &mut body, true);
            outcome.insert("response body", format!("{verdict:?}"));
        }
    }
    filters.finish(&mut request);
    format!("{outcome:?}")
}

/// The fuzz target: `program` run by the plugin across one exchange. Then a plugin with no
/// program must load and pass a request untouched: nothing the first did broke the host.
pub fn wasm_host(program: &[u8]) {
    let harness = harness();
    if let Ok(plugin) = load(harness, program) {
        harness.runtime.block_on(exchange(&harness.shared, &plugin));
    }
    let plain = load(harness, &[]).unwrap_or_else(|problem| {
        panic!("a plugin doing nothing did not load after the last: {problem}")
    });
    let said = harness.runtime.block_on(exchange(&harness.shared, &plain));
    assert!(
        !said.contains("Fail") && !said.contains("Respond") && !said.contains("Close"),
        "a plugin doing nothing did not let the exchange through: {said}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step calling host function `index` with every argument zero, or all ones.
    fn step(hosts: &[HostFunction], index: usize, ones: bool) -> Vec<u8> {
        let mut step = vec![index as u8, 1];
        for param in &hosts[index].params {
            let width = match param {
                ValType::I64 | ValType::F64 => 8,
                _ => 4,
            };
            step.extend(std::iter::repeat_n(if ones { 0xff } else { 0 }, width));
        }
        step
    }

    /// The module alone, its imports answering nothing but the configuration: the program is
    /// decoded from hex to where the callbacks read it.
    #[test]
    fn the_plugin_decodes_its_program_from_the_configuration() {
        let hosts = host_functions(&harness().shared);
        let bytes = plugin_module(&hosts);
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &bytes).expect("the module compiles");
        let mut linker = wasmtime::Linker::<()>::new(&engine);
        linker
            .func_wrap(
                "env",
                "proxy_get_buffer_bytes",
                |mut caller: wasmtime::Caller<'_, ()>,
                 _: u32,
                 _: u32,
                 _: u32,
                 ret_ptr: u32,
                 ret_len: u32|
                 -> u32 {
                    let text = b"0aff-x 1B2";
                    let memory = caller
                        .get_export("memory")
                        .and_then(wasmtime::Extern::into_memory)
                        .expect("memory");
                    let at = 0x8000_u32;
                    memory.write(&mut caller, at as usize, text).expect("write");
                    memory
                        .write(&mut caller, ret_ptr as usize, &at.to_le_bytes())
                        .expect("write");
                    memory
                        .write(
                            &mut caller,
                            ret_len as usize,
                            &(text.len() as u32).to_le_bytes(),
                        )
                        .expect("write");
                    0
                },
            )
            .expect("define");
        let mut store = wasmtime::Store::new(&engine, ());
        linker
            .define_unknown_imports_as_default_values(&mut store, &module)
            .expect("the rest");
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("instantiate");
        let configure = instance
            .get_typed_func::<(u32, u32), u32>(&mut store, "proxy_on_configure")
            .expect("proxy_on_configure");
        assert_eq!(configure.call(&mut store, (1, 10)).expect("runs"), 1);
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        let program = &memory.data(&store)[PROGRAM_AT as usize..PROGRAM_AT as usize + 3];
        // "0a", "ff", then "1" and "2" (the rest is not lower-case hex).
        assert_eq!(program, [0x0a, 0xff, 0x12]);
    }

    #[test]
    fn a_plugin_calling_every_host_function_in_every_phase_is_contained() {
        let hosts = host_functions(&harness().shared);
        assert!(
            hosts.len() > 60 && hosts.len() < 255,
            "{} host functions: a step's first byte chooses one",
            hosts.len()
        );
        for ones in [false, true] {
            let mut program = Vec::new();
            for _phase in 0..4 {
                for index in 0..hosts.len() {
                    program.extend(step(&hosts, index, ones));
                }
                program.push(END_OF_PART);
            }
            wasm_host(&program);
        }

        // The program does reach the host: shared data set from the configure callback, its key
        // and value the two bytes at the step's own first argument.
        let set = hosts
            .iter()
            .position(|h| h.name == "proxy_set_shared_data")
            .expect("proxy_set_shared_data");
        let at = (PROGRAM_AT + 2) as u32;
        let mut program = vec![set as u8, 1];
        for argument in [at, 2, at, 2, 0] {
            program.extend(argument.to_le_bytes());
        }
        wasm_host(&program);
        // And one reading past the plugin's memory does not load, naming the host call.
        let mut bad = vec![set as u8, 1];
        for argument in [0xffff_fff0_u32, 2, at, 2, 0] {
            bad.extend(argument.to_le_bytes());
        }
        let refused = load(harness(), &bad).err().unwrap_or_default();
        assert!(
            refused.contains("proxy_set_shared_data") && refused.contains("outside"),
            "{refused}"
        );
        let key: String = at.to_le_bytes()[..2]
            .iter()
            .map(|b| char::from(*b))
            .collect();
        assert!(harness().shared.data.get("", &key).is_some());
    }
}
