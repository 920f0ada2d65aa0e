#!/usr/bin/env python3
"""Gantry against nginx and HAProxy, in one run on this machine.

Run: ./bench/run.py            (all of it, ~6 minutes)
     ./bench/run.py --rounds 1 --duration 5   (a quick look)
     ./bench/run.py --only scale              (just the scale runs: 10,000 Ingresses, HTTPRoutes)
     ./bench/run.py --baseline PATH   (also another gantry binary, e.g. an earlier commit's
                                      release build, in the same rounds, as "before")

One upstream (nginx, one worker, answering a small fixed body) and, in front of it, three proxies
with one worker each and equivalent settings (upstream keep-alive, X-Forwarded-* and a request id
added, no access log, TLS with the same ECDSA P-256 certificate, HTTP/2 on TLS):
nginx, HAProxy and Gantry. With two cores, the proxy under test is pinned to CPU 0 and the load
generator and upstream to CPU 1.

Each round runs every proxy through the same three loads, in an order that rotates from round to
round:
  - wrk: HTTP/1.1 keep-alive, 50 connections (requests/s, p99 latency, RSS afterwards);
  - h2load: HTTP/2 over TLS, 50 connections x 10 streams (requests/s, mean latency);
  - h2load with one request per connection and as many connections as requests: new TLS
    handshakes per second (no session can be resumed: each client connects once).
Medians over the rounds are printed with the ratios Gantry/nginx and Gantry/HAProxy.

The scale run starts Gantry on a small folder, writes 10,000 Ingresses (one host and two paths
each, one file each) and measures the time from the first write to the last new route answering,
and Gantry's RSS then; then the same with 10,000 HTTPRoutes (one hostname and two matches each)
on a fresh Gantry.

Needs (installed when missing): nginx, haproxy, wrk, h2load (nghttp2-client), openssl, curl.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_PORT = 18000
PORTS = {  # proxy: (http, https)
    "nginx": (18081, 18441),
    "haproxy": (18082, 18442),
    "gantry": (18083, 18443),
}
GANTRY_ADMIN = 18903
GANTRY_DNS = 18953
HOST = "bench.test"
BODY = "hello from the upstream: a small fixed body, the same for every request.\n"
PROXY_CPU = "0"
LOAD_CPU = "1"


def say(text):
    print(f"==> {text}", flush=True)


def ensure_tools():
    wanted = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk",
              "h2load": "nghttp2-client", "openssl": "openssl", "curl": "curl",
              "taskset": "util-linux", "cmake": "cmake"}
    missing = sorted({pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None})
    if missing:
        say(f"installing {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def build_gantry():
    say("building gantry (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "gantry"], cwd=ROOT, check=True)
    return ROOT / "target/release/gantry"


def wait_http(url, host=HOST, deadline=30.0, insecure=False):
    end = time.time() + deadline
    while time.time() < end:
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}", url]
        if insecure:
            cmd.insert(1, "-k")
        code = subprocess.run(cmd, capture_output=True, text=True).stdout
        if code == "200":
            return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer 200 within {deadline}s")


def rss_kib(pid):
    """RSS of a process and its children (nginx's master and worker), in KiB."""
    total = 0
    pids = [str(pid)]
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in pids + children:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid):
    """User + system CPU time of a process and its children (nginx's master and worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [str(pid)] + children:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / ticks


def measured(pid, load):
    """Runs `load` and returns (its result, wall seconds, the proxy's CPU seconds)."""
    cpu, wall = cpu_seconds(pid), time.time()
    result = load()
    return result, time.time() - wall, cpu_seconds(pid) - cpu


# Service `up` in namespace `bench`, whose one endpoint is the upstream every benchmark uses.
UPSTREAM_SERVICE = f"""apiVersion: v1
kind: Service
metadata: {{name: up, namespace: bench}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: up-1
  namespace: bench
  labels: {{kubernetes.io/service-name: up}}
addressType: IPv4
ports: [{{name: http, port: {UPSTREAM_PORT}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
"""


class Setup:
    def __init__(self, work, gantry_bin):
        self.work = work
        self.gantry_bin = gantry_bin
        self.procs = {}
        self.cert = work / "bench.crt"
        self.key = work / "bench.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", f"/CN={HOST}",
                        "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(self.key),
                        "-out", str(self.cert)], check=True, capture_output=True)
        (work / "bench.pem").write_text(self.cert.read_text() + self.key.read_text())

    def start(self, name, cmd, cpu):
        log = open(self.work / f"{name}.log", "w")
        proc = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, *names):
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def nginx_conf(self, name, body):
        conf = self.work / f"{name}.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
master_process on;
pid {self.work}/{name}.pid;
error_log {self.work}/{name}.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 15000; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path {self.work}/{name}-body;
  proxy_temp_path {self.work}/{name}-proxy;
  fastcgi_temp_path {self.work}/{name}-fastcgi;
  uwsgi_temp_path {self.work}/{name}-uwsgi;
  scgi_temp_path {self.work}/{name}-scgi;
  {body}
}}
""")
        return ["nginx", "-c", str(conf), "-p", str(self.work)]

    def start_upstream(self):
        body = BODY.replace('"', '\\"').replace("\n", "\\n")
        cmd = self.nginx_conf("upstream", f"""
  server {{
    listen 127.0.0.1:{UPSTREAM_PORT} backlog=4096;
    default_type text/plain;
    location / {{ return 200 "{body}"; }}
  }}""")
        self.start("upstream", cmd, LOAD_CPU)
        wait_http(f"http://127.0.0.1:{UPSTREAM_PORT}/")

    def start_nginx(self):
        http, https = PORTS["nginx"]
        cmd = self.nginx_conf("nginx", f"""
  upstream up {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{http} backlog=4096;
    listen 127.0.0.1:{https} ssl http2 backlog=4096;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 128;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id;
    }}
  }}""")
        return self.start("nginx", cmd, PROXY_CPU)

    def start_haproxy(self):
        http, https = PORTS["haproxy"]
        conf = self.work / "haproxy.cfg"
        conf.write_text(f"""
global
  nbthread 1
  maxconn 9900
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{http} backlog 4096
  bind 127.0.0.1:{https} ssl crt {self.work}/bench.pem alpn h2,http/1.1 backlog 4096
  option forwardfor
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  http-request set-header X-Request-Id %[unique-id]
  default_backend be
backend be
  server up 127.0.0.1:{UPSTREAM_PORT}
""")
        return self.start("haproxy", ["haproxy", "-f", str(conf), "-db"], PROXY_CPU)

    def gantry_config(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        indent = lambda pem: "".join(f"    {line}\n" for line in pem.read_text().splitlines())
        (folder / "bench.yaml").write_text(UPSTREAM_SERVICE + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: bench-tls, namespace: bench}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{indent(self.cert)}  tls.key: |
{indent(self.key)}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: bench
  annotations: {{gantry.dev/ssl-redirect: "false"}}
spec:
  tls: [{{hosts: [{HOST}], secretName: bench-tls}}]
  rules:
    - host: {HOST}
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: up, port: {{name: http}}}}}}}}
""")

    def start_gantry(self, folder, state, binary=None, name="gantry", offset=0):
        """Starts Gantry (`binary`, else the one built); `offset` moves its ports, so that a
        second Gantry can run beside it."""
        http, https = PORTS["gantry"]
        cmd = [str(binary or self.gantry_bin), "run", "--config", str(folder),
               "--http-addr", f"127.0.0.1:{http + offset}",
               "--https-addr", f"127.0.0.1:{https + offset}",
               "--admin-addr", f"127.0.0.1:{GANTRY_ADMIN + offset}", "--state-dir", str(state),
               "--dns-addr", f"127.0.0.1:{GANTRY_DNS + offset}",
               "--threads", "1", "--access-log", "false", "--log", "warn"]
        return self.start(name, cmd, PROXY_CPU)


def publish(lines, name):
    """Prints a benchmark's report and keeps it in target/bench-NAME.txt."""
    text = "\n".join(lines)
    print("\n" + text)
    out = ROOT / f"target/bench-{name}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    say(f"also written to {out}")


def run_load(cmd):
    out = subprocess.run(["taskset", "-c", LOAD_CPU] + cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, duration):
    out = run_load(["wrk", "-t1", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {HOST}",
                    f"http://127.0.0.1:{port}/"])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return rps, to_ms(p99.group(1), p99.group(2))


def h2load_h2(port, duration):
    out = run_load(["h2load", "-t1", "-c50", "-m10", "-D", str(duration), "--warm-up-time=1",
                    "-H", f":authority: {HOST}", f"https://127.0.0.1:{port}/"])
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    failed = int(re.search(r"(\d+) failed", out).group(1))
    if failed:
        raise SystemExit(f"h2load saw {failed} failed requests:\n{out}")
    return rps, to_ms(mean.group(1), mean.group(2))


def handshakes(port, connections):
    out = run_load(["h2load", "-t1", f"-c{connections}", f"-n{connections}",
                    "-H", f":authority: {HOST}", f"https://127.0.0.1:{port}/"])
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    succeeded = int(re.search(r"(\d+) succeeded", out).group(1))
    if succeeded != connections:
        raise SystemExit(f"only {succeeded} of {connections} TLS connections succeeded:\n{out}")
    return rps


def comparison(args, setup):
    setup.start_upstream()
    gantry_folder = setup.work / "gantry-config"
    setup.gantry_config(gantry_folder)
    starters = {
        "nginx": setup.start_nginx,
        "haproxy": setup.start_haproxy,
        "gantry": lambda: setup.start_gantry(gantry_folder, setup.work / "gantry-state"),
    }
    if args.baseline:
        # Another gantry binary on the next ports, measured in the same rounds.
        PORTS["before"] = tuple(port + 1 for port in PORTS["gantry"])
        starters["before"] = lambda: setup.start_gantry(
            gantry_folder, setup.work / "before-state", binary=args.baseline, name="before",
            offset=1)
    pids = {}
    for name, start in starters.items():
        pids[name] = start().pid
        http, https = PORTS[name]
        wait_http(f"http://127.0.0.1:{http}/")
        wait_http(f"https://127.0.0.1:{https}/", insecure=True)

    names = list(PORTS)
    keys = ["h1_rps", "h1_p99", "h1_cpu", "h1_per_cpu", "h2_rps", "h2_mean", "h2_cpu",
            "h2_per_cpu", "tls", "tls_cpu", "tls_per_cpu", "rss"]
    results = {name: {k: [] for k in keys} for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        say(f"round {round_index + 1} of {args.rounds}: {', '.join(order)}")
        for name in order:
            http, https = PORTS[name]
            pid = pids[name]
            (rps, p99), wall, cpu = measured(pid, lambda: wrk(http, args.duration))
            rss = rss_kib(pid)
            (h2_rps, h2_mean), h2_wall, h2_cpu = measured(pid, lambda: h2load_h2(https, args.duration))
            tls, tls_wall, tls_cpu = measured(pid, lambda: handshakes(https, args.handshakes))
            r = results[name]
            r["h1_rps"].append(rps)
            r["h1_p99"].append(p99)
            r["h1_cpu"].append(100 * cpu / wall)
            r["h1_per_cpu"].append(rps * wall / cpu)
            r["rss"].append(rss / 1024)
            r["h2_rps"].append(h2_rps)
            r["h2_mean"].append(h2_mean)
            r["h2_cpu"].append(100 * h2_cpu / h2_wall)
            # h2load's rate excludes its warm-up second; per CPU-second uses the run's requests.
            r["h2_per_cpu"].append(h2_rps * args.duration / h2_cpu)
            r["tls"].append(tls)
            r["tls_cpu"].append(100 * tls_cpu / tls_wall)
            r["tls_per_cpu"].append(args.handshakes / tls_cpu)
            print(f"    {name:8} h1 {rps:8.0f}/s p99 {p99:5.2f} ms cpu {100 * cpu / wall:3.0f}% | "
                  f"h2 {h2_rps:8.0f}/s mean {h2_mean:6.2f} ms cpu {100 * h2_cpu / h2_wall:3.0f}% | "
                  f"TLS {tls:6.0f}/s cpu {100 * tls_cpu / tls_wall:3.0f}% | RSS {rss / 1024:5.1f} MiB",
                  flush=True)
    setup.stop(*names)
    return results


def report(results, rounds):
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    rows = [
        ("HTTP/1.1 keep-alive req/s (wrk, 50 conns)", "h1_rps", "{:.0f}"),
        ("  p99 latency ms", "h1_p99", "{:.2f}"),
        ("  proxy CPU %", "h1_cpu", "{:.0f}"),
        ("  requests per proxy CPU-second", "h1_per_cpu", "{:.0f}"),
        ("HTTP/2 over TLS req/s (h2load, 50x10)", "h2_rps", "{:.0f}"),
        ("  mean latency ms", "h2_mean", "{:.2f}"),
        ("  proxy CPU %", "h2_cpu", "{:.0f}"),
        ("  requests per proxy CPU-second", "h2_per_cpu", "{:.0f}"),
        ("new TLS connections/s (1 request each)", "tls", "{:.0f}"),
        ("  proxy CPU %", "tls_cpu", "{:.0f}"),
        ("  handshakes per proxy CPU-second", "tls_per_cpu", "{:.0f}"),
        ("RSS after the HTTP/1.1 load MiB", "rss", "{:.1f}"),
    ]
    lines = [f"Medians of {rounds} alternating rounds; proxies on CPU {PROXY_CPU}, "
             f"load and upstream on CPU {LOAD_CPU}. Where the proxy's CPU is below 100%, the",
             "load side was the limit and 'per proxy CPU-second' is the fairer comparison.", ""]
    header = f"{'':44} {'nginx':>10} {'HAProxy':>10} {'Gantry':>10} {'G/nginx':>8} {'G/HAProxy':>9}"
    lines.append(header)
    if "before" in med:
        lines[-1] += f" {'before':>10} {'G/before':>9}"
    for title, key, fmt in rows:
        n, h, g = med["nginx"][key], med["haproxy"][key], med["gantry"][key]
        line = (f"{title:44} {fmt.format(n):>10} {fmt.format(h):>10} {fmt.format(g):>10} "
                f"{g / n:>8.2f} {g / h:>9.2f}")
        if "before" in med:
            b = med["before"][key]
            line += f" {fmt.format(b):>10} {g / b:>9.2f}"
        lines.append(line)
    return "\n".join(lines)


# The HTTPRoute scale run's Gateway: Gantry's class, one HTTP listener taking the namespace's
# routes.
GATEWAY = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, port: 80, protocol: HTTP}]
"""

TEMPLATES = {
    "Ingresses": """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app-{i}-{set}
  namespace: bench
spec:
  rules:
    - host: app-{i}.{set}.scale.test
      http:
        paths:
          - {{path: /api, pathType: Prefix, backend: {{service: {{name: up, port: {{name: http}}}}}}}}
          - {{path: /static, pathType: Prefix, backend: {{service: {{name: up, port: {{number: 80}}}}}}}}
""",
    # One hostname and two matches each, as the Ingresses have one host and two paths.
    "HTTPRoutes": """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app-{i}-{set}, namespace: bench}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: [app-{i}.{set}.scale.test]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      backendRefs: [{{name: up, port: 80}}]
    - matches: [{{path: {{type: PathPrefix, value: /static}}}}]
      backendRefs: [{{name: up, port: 80}}]
""",
}


def scale(args, setup, kind="Ingresses"):
    say(f"scale run: {args.ingresses} {kind} written into a running Gantry's folder")
    folder = setup.work / f"scale-config-{kind}"
    setup.gantry_config(folder)
    if kind == "HTTPRoutes":
        (folder / "gateway.yaml").write_text(GATEWAY)
    proc = setup.start_gantry(folder, setup.work / f"scale-state-{kind}")
    if "upstream" not in setup.procs:
        setup.start_upstream()
    http, _ = PORTS["gantry"]
    wait_http(f"http://127.0.0.1:{http}/")
    rss_before = rss_kib(proc.pid) / 1024
    template = TEMPLATES[kind]
    # 1. One file at a time into the watched folder, as a script or `kubectl cp` would.
    one_by_one = folder / "one-by-one"
    one_by_one.mkdir()
    start = time.time()
    for i in range(args.ingresses):
        (one_by_one / f"app-{i}.yaml").write_text(template.format(i=i, set="a"))
    written = time.time()
    wait_http(f"http://127.0.0.1:{http}/static/x", host=f"app-{args.ingresses - 1}.a.scale.test",
              deadline=120)
    served = time.time()
    wait_http(f"http://127.0.0.1:{http}/api", host="app-0.a.scale.test")
    rss_one = rss_kib(proc.pid) / 1024

    # 2. All files prepared aside and moved in with one rename, as a ConfigMap volume changes.
    staging = setup.work / f"staging-{kind}"
    staging.mkdir()
    for i in range(args.ingresses):
        (staging / f"app-{i}.yaml").write_text(template.format(i=i, set="b"))
    moved = time.time()
    staging.rename(folder / "moved-in")
    wait_http(f"http://127.0.0.1:{http}/static/x", host=f"app-{args.ingresses - 1}.b.scale.test",
              deadline=120)
    moved_served = time.time()
    rss_after = rss_kib(proc.pid) / 1024
    config = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{GANTRY_ADMIN}/config").read())
    routes = len(config["routes"])
    n = args.ingresses
    what = "one host, two paths" if kind == "Ingresses" else "one hostname, two matches"
    lines = [
        f"Scale run: {n} {kind} ({what} each, one file each) added to the watched",
        "folder of a running Gantry (1 worker thread), twice:",
        f"  1. written one by one:    writing took {written - start:5.2f} s; last route served "
        f"{served - written:5.2f} s after the last write ({served - start:5.2f} s after the first)",
        f"  2. moved in at once:      last route served {moved_served - moved:5.2f} s after the rename",
        f"  RSS: {rss_before:.1f} MiB before, {rss_one:.1f} MiB with {n} {kind}, "
        f"{rss_after:.1f} MiB with {2 * n}; {routes} routes serving",
    ]
    setup.stop("gantry")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk/h2load run")
    parser.add_argument("--handshakes", type=int, default=1000,
                        help="TLS connections per handshake measurement")
    parser.add_argument("--ingresses", type=int, default=10000,
                        help="how many resources the scale run writes (of each kind)")
    parser.add_argument("--scale-kinds", default="Ingresses,HTTPRoutes",
                        help="what the scale run writes: Ingresses, HTTPRoutes or both")
    parser.add_argument("--only", choices=["compare", "scale"])
    parser.add_argument("--no-build", action="store_true",
                        help="use target/release/gantry as it is")
    parser.add_argument("--baseline", type=Path,
                        help="another gantry binary (an earlier build), measured beside the others"
                             " in the same rounds as `before`")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPUs: one for the proxy, one for the load and the upstream")

    ensure_tools()
    gantry_bin = ROOT / "target/release/gantry" if args.no_build else build_gantry()
    # Thousands of connections at once: raise the open-files limit as far as allowed.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = []
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        setup = Setup(Path(tmp), gantry_bin)
        try:
            if args.only != "scale":
                out.append(report(comparison(args, setup), args.rounds))
            if args.only != "compare":
                for kind in args.scale_kinds.split(","):
                    out.append(scale(args, setup, kind))
        finally:
            setup.stop()
    text = "\n\n".join(out)
    print("\n" + text)
    results = ROOT / "target/bench-results.txt"
    results.parent.mkdir(exist_ok=True)
    results.write_text(text + "\n")
    say(f"also written to {results}")


if __name__ == "__main__":
    main()
