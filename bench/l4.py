#!/usr/bin/env python3
"""TCP forwarding: Gantry's L4Service against HAProxy in TCP mode and nginx's stream module,
one worker each pinned to CPU 0, in the same run: bytes a second (keep-alive HTTP fetches of a
1 MiB body through the forwarded port) and connections a second (a new connection for each
small request: `Connection: close`), with the proxy's CPU per GiB and per 1,000 connections.

Run: ./bench/l4.py                   (3 rounds x 10 s per load and proxy, ~4 minutes)
     ./bench/l4.py --rounds 1 --duration 5   (a quick look)

The upstream is nginx (HTTP, on CPU 1, as is wrk); each proxy forwards bytes to it without
reading them. Rounds rotate the proxies' order; medians are reported with ratios.

Needs (installed when missing): nginx with its stream module, haproxy, wrk.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared setup of bench/run.py)

PORTS = {"nginx": 18181, "haproxy": 18182, "gantry": 18183}
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
BIG = 1 << 20
LOADS = {
    # name -> (wrk connections, extra wrk arguments, path)
    "bytes": (10, [], "/big"),
    "connections": (50, ["-H", "Connection: close"], "/"),
}


def ensure_stream_module():
    if not STREAM_MODULE.exists():
        run.say("installing libnginx-mod-stream")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "libnginx-mod-stream"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def start_upstream(setup):
    site = setup.work / "site"
    site.mkdir()
    (site / "big").write_bytes(b"x" * BIG)
    # nginx's workers run as another user: the body must be readable by anyone.
    for path in (setup.work, site):
        path.chmod(0o755)
    (site / "big").chmod(0o644)
    cmd = setup.nginx_conf("upstream", f"""
  server {{
    listen 127.0.0.1:{run.UPSTREAM_PORT} backlog=4096;
    default_type text/plain;
    location = / {{ return 200 "{run.BODY.strip()}"; }}
    location = /big {{ root {site}; }}
  }}""")
    setup.start("upstream", cmd, run.LOAD_CPU)
    run.wait_http(f"http://127.0.0.1:{run.UPSTREAM_PORT}/")


def start_stream(setup, body):
    """nginx's stream module with `body` (its `server` blocks and maps), one worker on CPU 0."""
    conf = setup.work / "stream.conf"
    conf.write_text(f"""
load_module {STREAM_MODULE};
worker_processes 1;
daemon off;
pid {setup.work}/stream.pid;
error_log {setup.work}/stream.error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 15000; multi_accept on; }}
stream {{
{body}
}}
""")
    return setup.start("nginx", ["nginx", "-c", str(conf), "-p", str(setup.work)], run.PROXY_CPU)


def start_nginx(setup):
    return start_stream(setup, f"""  server {{
    listen 127.0.0.1:{PORTS['nginx']} backlog=4096;
    proxy_pass 127.0.0.1:{run.UPSTREAM_PORT};
  }}""")


def start_haproxy_tcp(setup, port, upstream_port, rules=""):
    """HAProxy in TCP mode, one thread on CPU 0: `port` forwarded to `upstream_port`, its
    frontend's `rules` choosing the backend (else it is the default)."""
    choose = rules or "  default_backend be"
    conf = setup.work / "tcp.cfg"
    conf.write_text(f"""
global
  nbthread 1
  maxconn 9900
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{port} backlog 4096
{choose}
backend be
  server up 127.0.0.1:{upstream_port}
""")
    return setup.start("haproxy", ["haproxy", "-f", str(conf), "-db"], run.PROXY_CPU)


def start_haproxy(setup):
    return start_haproxy_tcp(setup, PORTS["haproxy"], run.UPSTREAM_PORT)


def start_gantry(setup):
    folder = setup.work / "config"
    folder.mkdir()
    (folder / "l4.yaml").write_text(run.UPSTREAM_SERVICE + f"""---
apiVersion: gantry.dev/v1alpha1
kind: L4Service
metadata: {{name: up, namespace: bench}}
spec:
  port: {PORTS['gantry']}
  backend: {{name: up, port: 80}}
""")
    return setup.start_gantry(folder, setup.work / "state")


def wrk(port, load, duration):
    connections, extra, path = LOADS[load]
    out = run.run_load(["wrk", "-t1", f"-c{connections}", f"-d{duration}s"] + extra
                       + [f"http://127.0.0.1:{port}{path}"])
    rps = float(run.re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if run.re.search(r"Non-2xx or 3xx responses|Socket errors", out):
        raise SystemExit(f"wrk saw errors through port {port}:\n{out}")
    return rps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    run.ensure_tools()
    ensure_stream_module()
    gantry_bin = run.ROOT / "target/release/gantry" if args.no_build else run.build_gantry()
    proxies = list(PORTS)
    samples = {(p, l): {"rate": [], "cpu": []} for p in proxies for l in LOADS}
    with tempfile.TemporaryDirectory(prefix="gantry-l4-") as tmp:
        setup = run.Setup(Path(tmp), gantry_bin)
        try:
            start_upstream(setup)
            pids = {"nginx": start_nginx(setup).pid, "haproxy": start_haproxy(setup).pid,
                    "gantry": start_gantry(setup).pid}
            for proxy in proxies:
                run.wait_http(f"http://127.0.0.1:{PORTS[proxy]}/")
                for load in LOADS:
                    wrk(PORTS[proxy], load, 1)
            for r in range(args.rounds):
                order = proxies[r % 3:] + proxies[:r % 3]
                for load in LOADS:
                    for proxy in order:
                        rps, wall, cpu = run.measured(
                            pids[proxy], lambda: wrk(PORTS[proxy], load, args.duration))
                        s = samples[(proxy, load)]
                        if load == "bytes":
                            s["rate"].append(rps * BIG / 2**20)  # MiB/s
                            s["cpu"].append(cpu / (rps * wall * BIG / 2**30))  # CPU s per GiB
                        else:
                            s["rate"].append(rps)  # connections/s
                            s["cpu"].append(cpu / (rps * wall) * 1000)  # CPU s per 1,000
                        run.say(f"round {r + 1}: {load} through {proxy}: {s['rate'][-1]:,.0f}, "
                                f"CPU {s['cpu'][-1]:.3f}")
        finally:
            setup.stop()
    med = {k: {m: statistics.median(v) for m, v in s.items()} for k, s in samples.items()}
    units = {"bytes": ("MiB/s", "CPU s/GiB"), "connections": ("conn/s", "CPU s/1k conn")}
    lines = [f"TCP forwarding ({args.rounds} rounds x {args.duration} s; proxies on CPU 0, "
             "wrk and the nginx upstream on CPU 1), medians:"]
    for load in LOADS:
        rate_unit, cpu_unit = units[load]
        g = med[("gantry", load)]
        for proxy in proxies:
            m = med[(proxy, load)]
            lines.append(f"  {load:<12} {proxy:<8} {m['rate']:>10,.1f} {rate_unit} "
                         f"({g['rate'] / m['rate']:.2f}x: Gantry's over this), "
                         f"{m['cpu']:.3f} {cpu_unit} (Gantry uses {g['cpu'] / m['cpu']:.2f}x)")
    run.publish(lines, "l4")


if __name__ == "__main__":
    main()
