// Test plugin built with the AssemblyScript proxy-wasm SDK (@solo-io/proxy-runtime), to show that
// modules from an SDK other than Rust's run unchanged: it imports `wasi_unstable.proc_exit`, finds
// its root context by `plugin_root_id` (`as_filter`), adds `x-assemblyscript: CONFIG` to requests
// and responses, and answers `/as-deny` itself with 403.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  send_local_response, GrpcStatusValues, HeaderPair,
} from "@solo-io/proxy-runtime";

class FilterRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Filter(context_id, this);
  }
}

class Filter extends Context {
  constructor(context_id: u32, root_context: FilterRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get(":path") == "/as-deny") {
      send_local_response(403, "denied_by_assemblyscript",
        String.UTF8.encode("denied by assemblyscript"), new Array<HeaderPair>(),
        GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-assemblyscript", this.root_context.getConfiguration());
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-assemblyscript", this.root_context.getConfiguration());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new FilterRoot(context_id); }, "as_filter");
