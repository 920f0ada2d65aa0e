#!/usr/bin/env python3
"""TLS passthrough by SNI: Gantry's L4Service (`protocol: TLS`) against HAProxy (`mode tcp`,
`req.ssl_sni`) and nginx's stream module (`ssl_preread`), one worker each pinned to CPU 0, in
the same run: new TLS connections a second through each to an nginx HTTPS backend that
terminates them (one HTTP/2 request each, h2load on CPU 1 naming the host by SNI), and the
proxy's CPU per 1,000 connections. The proxy reads each ClientHello for its server name and
then only copies bytes; the handshakes' cost is the backend's and the client's.

Run: ./bench/passthrough.py --no-build --rounds 3 --connections 2000   (about a minute)

Needs (installed when missing): nginx with its stream module, haproxy, h2load.
"""

import argparse
import statistics
import sys
import time
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import l4  # noqa: E402  (the stream module and HAProxy set up as for TCP forwarding)
import run  # noqa: E402  (the shared setup of bench/run.py)

PORTS = {"nginx": 18281, "haproxy": 18282, "gantry": 18283}
BACKEND_PORT = 18290
NAME = run.HOST


def start_backend(setup):
    cmd = setup.nginx_conf("backend", f"""
  server {{
    listen 127.0.0.1:{BACKEND_PORT} ssl http2 backlog=4096;
    ssl_certificate {setup.cert};
    ssl_certificate_key {setup.key};
    default_type text/plain;
    location / {{ return 200 "{run.BODY.strip()}"; }}
  }}""")
    setup.start("backend", cmd, run.LOAD_CPU)


def start_nginx(setup):
    return l4.start_stream(setup, f"""  map $ssl_preread_server_name $backend {{
    {NAME} 127.0.0.1:{BACKEND_PORT};
    default 127.0.0.1:1;
  }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} backlog=4096;
    ssl_preread on;
    proxy_pass $backend;
  }}""")


def start_haproxy(setup):
    return l4.start_haproxy_tcp(setup, PORTS["haproxy"], BACKEND_PORT, f"""  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req_ssl_hello_type 1 }}
  use_backend be if {{ req.ssl_sni -i {NAME} }}""")


def start_gantry(setup):
    folder = setup.work / "config"
    folder.mkdir()
    service = run.UPSTREAM_SERVICE.replace(f"port: {run.UPSTREAM_PORT}", f"port: {BACKEND_PORT}")
    (folder / "passthrough.yaml").write_text(service + f"""---
apiVersion: gantry.dev/v1alpha1
kind: L4Service
metadata: {{name: tls, namespace: bench}}
spec:
  port: {PORTS['gantry']}
  protocol: TLS
  hostnames: [{NAME}]
  backend: {{name: up, port: 80}}
""")
    return setup.start_gantry(folder, setup.work / "state")


def connections(port, count):
    """New TLS connections through `port`, one request each: connections a second."""
    out = run.run_load(["h2load", "-t1", f"-c{count}", f"-n{count}",
                        f"--connect-to=127.0.0.1:{port}", f"https://{NAME}/"])
    rate = float(run.re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    succeeded = int(run.re.search(r"(\d+) succeeded", out).group(1))
    if succeeded != count:
        raise SystemExit(f"only {succeeded} of {count} connections through {port}:\n{out}")
    return rate


def listening(port, count=20):
    """Waits until a passthrough port answers."""
    for _ in range(100):
        try:
            connections(port, count)
            return
        except SystemExit:
            time.sleep(0.1)
    raise SystemExit(f"nothing passed through port {port}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2000,
                        help="TLS connections per measurement")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    run.ensure_tools()
    l4.ensure_stream_module()
    gantry_bin = run.ROOT / "target/release/gantry" if args.no_build else run.build_gantry()
    proxies = list(PORTS)
    samples = {p: {"rate": [], "cpu": []} for p in proxies}
    with tempfile.TemporaryDirectory(prefix="gantry-passthrough-") as tmp:
        setup = run.Setup(Path(tmp), gantry_bin)
        try:
            start_backend(setup)
            pids = {"nginx": start_nginx(setup).pid, "haproxy": start_haproxy(setup).pid,
                    "gantry": start_gantry(setup).pid}
            for proxy in proxies:
                listening(PORTS[proxy])
            for r in range(args.rounds):
                for proxy in proxies[r % 3:] + proxies[:r % 3]:
                    rate, wall, cpu = run.measured(
                        pids[proxy], lambda: connections(PORTS[proxy], args.connections))
                    samples[proxy]["rate"].append(rate)
                    samples[proxy]["cpu"].append(cpu / (rate * wall) * 1000)
                    run.say(f"round {r + 1}: {proxy}: {rate:,.0f} conn/s, "
                            f"CPU {samples[proxy]['cpu'][-1]:.3f} s per 1,000")
        finally:
            setup.stop()
    med = {p: {m: statistics.median(v) for m, v in s.items()} for p, s in samples.items()}
    g = med["gantry"]
    lines = [f"TLS passthrough by SNI ({args.rounds} rounds x {args.connections} connections; "
             "proxies on CPU 0, h2load and the nginx HTTPS backend on CPU 1), medians:"]
    for proxy in proxies:
        m = med[proxy]
        lines.append(f"  {proxy:<8} {m['rate']:>10,.0f} conn/s ({g['rate'] / m['rate']:.2f}x: "
                     f"Gantry's over this), {m['cpu']:.3f} CPU s/1k conn "
                     f"(Gantry uses {g['cpu'] / m['cpu']:.2f}x)")
    run.publish(lines, "passthrough")


if __name__ == "__main__":
    main()
