#!/usr/bin/env python3
"""What proxy-wasm plugins cost: one route through Gantry with no plugin, with 1 and 3 header-only
plugins built with the upstream SDK, with each built-in plugin alone, with the three built-in
plugins chained, and with the same three built to wasm32 and run as modules.

Run: ./bench/plugins.py                 (3 rounds of 10 s per load, ~5 minutes)
     ./bench/plugins.py --rounds 1 --duration 5   (a quick look)
     ./bench/plugins.py --baseline PATH   (an A/B: another gantry binary, e.g. an earlier
                                           commit's release build, measured in the same rounds)

One Gantry (one worker, pinned to CPU 0) serves one host per chain; the hosts differ only in
their plugins:
  - none;
  - 1 and 3 instances of the test corpus's `rewrite` plugin (proxy/tests/plugins, upstream
    proxy-wasm SDK): it reads `:path`, adds, replaces and removes request headers, then reads
    every response header and adds two;
  - builtin:ratelimit (a per-client limit high enough never to refuse, RateLimit fields on every
    answer), builtin:acl (one allow rule by CIDR), builtin:headers (a request header set, a
    response header added, CORS configured), and the three chained; the built-ins are compiled
    into Gantry;
  - the same three chained, built to wasm32 (`plugins/`) and loaded as modules, as any other
    proxy-wasm host runs them.
The upstream is nginx answering a small fixed body; wrk (HTTP/1.1 keep-alive, 50 connections) and
the upstream share CPU 1. Rounds rotate the order of the hosts; medians are reported with ratios
against no plugin, and the proxy's CPU time per request, from which the cost of one callback
follows: a plugin built with the upstream SDK gets 7 callbacks per request (context create,
request headers, response headers, response body, log, done, delete); a gantry-sdk module tells
the host it needs no body, log or done callbacks, and gets 4; a compiled-in built-in gets its 2
hooks.

Needs (installed when missing): nginx, wrk, the wasm32-wasip1 Rust target.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared setup of bench/run.py)

def callbacks(plugin):
    if plugin.startswith("rewrite"):
        return 7
    return 4 if plugin.startswith("wasm-") else 2


# Host label -> the WasmPlugins on its route.
CHAINS = {
    "none": [],
    "1 rewrite": ["rewrite-a"],
    "3 rewrite": ["rewrite-a", "rewrite-b", "rewrite-c"],
    "ratelimit": ["builtin-ratelimit"],
    "acl": ["builtin-acl"],
    "headers": ["builtin-headers"],
    "3 built-in": ["builtin-headers", "builtin-ratelimit", "builtin-acl"],
    "3 as wasm": ["wasm-headers", "wasm-ratelimit", "wasm-acl"],
}
BUILTINS = {
    "builtin-ratelimit": ("ratelimit", "{limits: [{requests: 100000000, per: second}]}"),
    "builtin-acl": ("acl", "{rules: [{action: allow, clients: [127.0.0.0/8]}], defaultAction: deny}"),
    "builtin-headers": ("headers", "{request: {set: {x-env: production}}, response: {add: {x-served-by: gantry}}, "
                                   "cors: {allowOrigins: [\"https://app.example.test\"]}}"),
}


def host(label):
    return label.replace(" ", "-") + ".test"


def build_plugins():
    """The test corpus's `rewrite` module, and the folder of the built-ins' wasm32 modules."""
    run.say("building the test plugins and the built-ins to wasm32-wasip1")
    installed = subprocess.run(["rustup", "target", "list", "--installed"],
                               capture_output=True, text=True).stdout.split()
    if "wasm32-wasip1" not in installed:
        subprocess.run(["rustup", "target", "add", "wasm32-wasip1"], check=True)
    built = []
    for manifest, target in [("proxy/tests/plugins/Cargo.toml", "target/test-plugins"),
                             ("plugins/Cargo.toml", "target/builtin-plugins")]:
        subprocess.run(["cargo", "build", "--release", "--locked", "--target", "wasm32-wasip1",
                        "--manifest-path", str(run.ROOT / manifest), "--target-dir",
                        str(run.ROOT / target)], check=True)
        built.append(run.ROOT / target / "wasm32-wasip1/release")
    return built[0] / "test_rewrite.wasm", built[1]


def config(folder, module, builtins_wasm):
    folder.mkdir(parents=True, exist_ok=True)
    yaml = [run.UPSTREAM_SERVICE]
    for tag in "abc":
        yaml.append(f"""apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {{name: rewrite-{tag}, namespace: bench}}
spec:
  module: {module}
  config: {{tag: {tag}}}
""")
    for name, (builtin, plugin_config) in BUILTINS.items():
        yaml.append(f"""apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {{name: {name}, namespace: bench}}
spec:
  module: builtin:{builtin}
  config: {plugin_config}
""")
        yaml.append(f"""apiVersion: gantry.dev/v1alpha1
kind: WasmPlugin
metadata: {{name: wasm-{builtin}, namespace: bench}}
spec:
  module: {builtins_wasm / f"gantry_plugin_{builtin}.wasm"}
  config: {plugin_config}
""")
    for i, (label, names) in enumerate(CHAINS.items()):
        plugins = ", ".join(names)
        yaml.append(f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plugins-{i}
  namespace: bench
  annotations: {{gantry.dev/plugins: "{plugins}"}}
spec:
  rules:
    - host: {host(label)}
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: up, port: {{name: http}}}}}}}}
""")
    (folder / "bench.yaml").write_text("---\n".join(yaml))


def wrk(host, duration, port):
    out = run.run_load(["wrk", "-t1", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {host}",
                        f"http://127.0.0.1:{port}/"])
    rps = float(run.re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = run.re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if run.re.search(r"Non-2xx or 3xx responses", out):
        raise SystemExit(f"wrk saw error responses:\n{out}")
    return rps, run.to_ms(p99.group(1), p99.group(2))


def report(title, samples, rounds, duration):
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    base = med["none"]
    lines = [f"{title}Plugins on one route ({rounds} rounds x {duration} s, wrk -c50, "
             "Gantry on CPU 0, load + upstream on CPU 1), medians:"]
    for n, m in med.items():
        line = (f"  {n:<11} {m['rps']:>8,.0f} req/s ({m['rps'] / base['rps']:.2f}x of none), "
                f"p99 {m['p99']:.2f} ms ({m['p99'] / base['p99']:.2f}x), "
                f"{m['cpu_us']:.1f} us CPU/request")
        if CHAINS[n]:
            per = (m["cpu_us"] - base["cpu_us"]) / sum(callbacks(p) for p in CHAINS[n])
            line += f", {per:.2f} us per callback"
        lines.append(line)
    return lines, med


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--baseline", type=Path,
                        help="another gantry binary, measured in the same rounds for an A/B")
    parser.add_argument("--chains", help="only these chains, comma-separated (`none` for no plugin)")
    args = parser.parse_args()
    if args.chains:
        wanted = args.chains.split(",")
        unknown = sorted(set(wanted) - set(CHAINS))
        if unknown or "none" not in wanted:
            raise SystemExit(f"--chains: unknown {unknown}, or no `none` (every ratio needs it)")
        for name in list(CHAINS):
            if name not in wanted:
                del CHAINS[name]
    run.ensure_tools()
    gantry_bin = run.ROOT / "target/release/gantry" if args.no_build else run.build_gantry()
    module, builtins_wasm = build_plugins()
    # Each Gantry under test, with the port offset it listens on; they take turns in every round.
    binaries = {"gantry": (gantry_bin, 0)}
    if args.baseline:
        binaries["baseline"] = (args.baseline.resolve(), 1)
    samples = {b: {n: {"rps": [], "p99": [], "cpu_us": []} for n in CHAINS} for b in binaries}
    with tempfile.TemporaryDirectory(prefix="gantry-plugins-") as tmp:
        setup = run.Setup(Path(tmp), gantry_bin)
        try:
            setup.start_upstream()
            folder = Path(tmp) / "config"
            config(folder, module, builtins_wasm)
            procs = {}
            for b, (binary, offset) in binaries.items():
                procs[b] = setup.start_gantry(folder, Path(tmp) / f"state-{b}", binary, b, offset)
            for b, (_, offset) in binaries.items():
                port = run.PORTS["gantry"][0] + offset
                for n in CHAINS:
                    run.wait_http(f"http://127.0.0.1:{port}/", host=host(n))
                    wrk(host(n), 2, port)  # warm up: instances, pools
            order = list(CHAINS)
            for r in range(args.rounds):
                shift = r % len(order)
                turns = list(binaries) if r % 2 == 0 else list(reversed(binaries))
                for n in order[shift:] + order[:shift]:
                    for b in turns:
                        port = run.PORTS["gantry"][0] + binaries[b][1]
                        (rps, p99), wall, cpu = run.measured(
                            procs[b].pid, lambda: wrk(host(n), args.duration, port))
                        s = samples[b][n]
                        s["rps"].append(rps)
                        s["p99"].append(p99)
                        s["cpu_us"].append(cpu / (rps * wall) * 1e6)
                        run.say(f"round {r + 1}: {b}: {n}: {rps:,.0f} req/s, p99 {p99:.2f} ms, "
                                f"{s['cpu_us'][-1]:.1f} us CPU/request")
        finally:
            setup.stop()
    lines, med = report("", samples["gantry"], args.rounds, args.duration)
    if args.baseline:
        base_lines, base_med = report(f"Baseline {args.baseline}: ", samples["baseline"],
                                      args.rounds, args.duration)
        lines += [""] + base_lines + ["", "This build against the baseline (same rounds):"]
        for n in CHAINS:
            new, old = med[n], base_med[n]
            lines.append(f"  {n:<11} req/s {new['rps'] / old['rps']:.2f}x, "
                         f"CPU per request {new['cpu_us'] / old['cpu_us']:.2f}x")
    run.publish(lines, "plugins")


if __name__ == "__main__":
    main()
