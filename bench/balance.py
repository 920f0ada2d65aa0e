#!/usr/bin/env python3
"""What load balancing does and costs: least request and peak EWMA against round robin when one
of three endpoints is about 10x slower than the others (throughput and p99), and the CPU cost
of consistent hashing and of cookie affinity against round robin over three equal endpoints.

Run: ./bench/balance.py                  (3 rounds x 10 s per load, ~4 minutes)
     ./bench/balance.py --rounds 1 --duration 5   (a quick look)

One Gantry (one worker, pinned to CPU 0) serves one host per policy; wrk (HTTP/1.1 keep-alive,
50 connections) and the upstreams share CPU 1. The upstreams are nginx: three equal endpoints
answering a 2,000-byte body, and for the mixed Service two of them plus a small asyncio server
(below, on the same CPU) that answers the same body 2 ms after each request, where nginx takes
well under 0.2 ms. Hosts:
  - mixed Service: round robin, `load-balance: least_request`, `load-balance: ewma`;
  - equal Service: round robin, `upstream-hash-by: $request_uri` (wrk asks a random path each
    time), `affinity: cookie` with the cookie sent (a sticky session) and without it (a new
    session, and a Set-Cookie, every request).
Rounds rotate the order; medians are reported with ratios against round robin in the same run.

Needs (installed when missing): nginx, wrk.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared setup of bench/run.py)

BODY = "x" * 2000
FAST = [18011, 18012, 18013]
SLOW = 18014

# label -> (host, Service, annotations, wrk extras)
LOADS = {
    "mixed rr": ("mixed-rr.test", "mixed", {}, []),
    "mixed least": ("mixed-least.test", "mixed", {"load-balance": "least_request"}, []),
    "mixed ewma": ("mixed-ewma.test", "mixed", {"load-balance": "ewma"}, []),
    "equal rr": ("equal-rr.test", "equal", {}, []),
    "equal hash": ("equal-hash.test", "equal", {"upstream-hash-by": "$request_uri"}, ["random-path"]),
    "cookie sticky": ("cookie-sticky.test", "equal", {"affinity": "cookie"},
                      ["-H", "Cookie: INGRESSCOOKIE=0123456789abcdef"]),
    "cookie new": ("cookie-new.test", "equal", {"affinity": "cookie"}, []),
}


# An HTTP/1.1 keep-alive server that answers every request 2 ms late (a timer per request, no
# task), for the slow endpoint: nginx cannot delay an answer without third-party modules.
SLOW_SERVER = """
import asyncio, sys
BODY = b"x" * 2000
ANSWER = b"HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(BODY) + BODY
class Slow(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        loop = asyncio.get_running_loop()
        while (end := self.buf.find(b"\\r\\n\\r\\n")) >= 0:
            self.buf = self.buf[end + 4:]
            loop.call_later(0.002, self.answer)
    def answer(self):
        if not self.transport.is_closing():
            self.transport.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(Slow, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
"""


def start_upstreams(setup):
    for port in FAST:
        cmd = setup.nginx_conf(f"fast-{port}", f"""
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type text/plain;
    location / {{ return 200 "{BODY}"; }}
  }}""")
        setup.start(f"fast-{port}", cmd, run.LOAD_CPU)
    script = setup.work / "slow.py"
    script.write_text(SLOW_SERVER)
    setup.start("slow", [sys.executable, str(script), str(SLOW)], run.LOAD_CPU)
    for port in FAST + [SLOW]:
        run.wait_http(f"http://127.0.0.1:{port}/")


def service(name, ports):
    slices = []
    for i, port in enumerate(ports):
        slices.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: bench
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
""")
    return [f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: bench}}
spec:
  ports: [{{name: http, port: 80}}]
"""] + slices


def config(folder):
    folder.mkdir(parents=True, exist_ok=True)
    yaml = service("mixed", FAST[:2] + [SLOW]) + service("equal", FAST)
    for i, (host, svc, annotations, _) in enumerate(LOADS.values()):
        meta = "".join(f'\n    nginx.ingress.kubernetes.io/{k}: "{v}"' for k, v in annotations.items())
        if meta:
            meta = "\n  annotations:" + meta
        yaml.append(f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: balance-{i}
  namespace: bench{meta}
spec:
  rules:
    - host: {host}
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{name: http}}}}}}}}
""")
    (folder / "bench.yaml").write_text("---\n".join(yaml))


def wrk(host, extras, duration, port, work):
    cmd = ["wrk", "-t1", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {host}"]
    if "random-path" in extras:
        script = work / "random-path.lua"
        script.write_text('request = function() return wrk.format(nil, "/" .. math.random(1, 1000000)) end\n')
        cmd += ["-s", str(script)]
    cmd += [e for e in extras if e != "random-path"]
    out = run.run_load(cmd + [f"http://127.0.0.1:{port}/"])
    rps = float(run.re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = run.re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if run.re.search(r"Non-2xx or 3xx responses", out):
        raise SystemExit(f"wrk saw error responses:\n{out}")
    return rps, run.to_ms(p99.group(1), p99.group(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    run.ensure_tools()
    gantry_bin = run.ROOT / "target/release/gantry" if args.no_build else run.build_gantry()
    samples = {n: {"rps": [], "p99": [], "cpu_us": []} for n in LOADS}
    with tempfile.TemporaryDirectory(prefix="gantry-balance-") as tmp:
        work = Path(tmp)
        setup = run.Setup(work, gantry_bin)
        try:
            start_upstreams(setup)
            folder = work / "config"
            config(folder)
            proc = setup.start_gantry(folder, work / "state")
            port = run.PORTS["gantry"][0]
            for host, _, _, extras in LOADS.values():
                run.wait_http(f"http://127.0.0.1:{port}/", host=host)
                wrk(host, extras, 2, port, work)
            order = list(LOADS)
            for r in range(args.rounds):
                shift = r % len(order)
                for name in order[shift:] + order[:shift]:
                    host, _, _, extras = LOADS[name]
                    (rps, p99), _, cpu = run.measured(
                        proc.pid, lambda: wrk(host, extras, args.duration, port, work))
                    s = samples[name]
                    s["rps"].append(rps)
                    s["p99"].append(p99)
                    s["cpu_us"].append(cpu / (rps * args.duration) * 1e6)
                    run.say(f"round {r + 1}: {name}: {rps:,.0f} req/s, p99 {p99:.2f} ms, "
                            f"{s['cpu_us'][-1]:.1f} us CPU/request")
        finally:
            setup.stop()
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    lines = [f"Load balancing ({args.rounds} rounds x {args.duration} s, wrk -c50, Gantry on CPU 0, "
             "load + upstreams on CPU 1), medians:"]
    for name, m in med.items():
        base = med["mixed rr"] if name.startswith("mixed") else med["equal rr"]
        lines.append(f"  {name:<14} {m['rps']:>8,.0f} req/s ({m['rps'] / base['rps']:.2f}x round robin), "
                     f"p99 {m['p99']:.2f} ms ({m['p99'] / base['p99']:.2f}x), "
                     f"{m['cpu_us']:.1f} us CPU/request ({m['cpu_us'] / base['cpu_us']:.2f}x)")
    run.publish(lines, "balance")


if __name__ == "__main__":
    main()
