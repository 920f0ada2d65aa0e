#!/usr/bin/env python3
"""Gantry's authoritative DNS against BIND, Knot and NSD, in one run on this machine.

Run: ./bench/dns.py                    (3 rounds of 10 s per server, ~3 minutes plus the build)
     ./bench/dns.py --rounds 1 --duration 5   (a quick look)
     ./bench/dns.py --baseline PATH   (an A/B: another gantry binary, e.g. an earlier commit's
                                      release build, measured in the same rounds as "before")

Every server serves the same zone, example.test: an SOA, two NS, and 1,000 A records
(host0..host999). Gantry gets it as a DNSZone and a DNSRecord; the others as a zone file. Each
server runs with one worker thread and is pinned to CPU 0; dnsperf (10 clients, UDP) runs on
CPU 1 and asks a mix of 90% names that exist and 10% that do not (NXDOMAIN with the SOA). Rounds
rotate the order of the servers; the medians of queries per second are reported with ratios
against each other server, and the server's CPU time per query. NSD's and Gantry's response rate
limiting are turned off (`rrl-ratelimit: 0`, `--dns-rate-limit 0`: one client asks here at
tens of thousands of queries a second), BIND's and Knot's are off by default.

Needs (installed when missing): dnsperf, bind9, knot, nsd.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared setup of bench/run.py)

SERVER_CPU = "0"
LOAD_CPU = "1"
PORTS = {"gantry": 15301, "bind": 15302, "knot": 15303, "nsd": 15304}
HOSTS = 1000
ORIGIN = "example.test."


def ensure_tools():
    wanted = {"dnsperf": "dnsperf", "named": "bind9", "knotd": "knot", "nsd": "nsd",
              "taskset": "util-linux", "cmake": "cmake"}
    missing = sorted({pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None})
    if missing:
        run.say(f"installing {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    # Debian starts the packages' own services; they would compete for the CPU.
    for service in ["named", "knot", "nsd"]:
        subprocess.run(["pkill", "-x", {"named": "named", "knot": "knotd", "nsd": "nsd"}[service]],
                       capture_output=True)


def address(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def zone_file(path):
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300",
             "@ IN SOA ns1 hostmaster 1 3600 600 1209600 300",
             "@ IN NS ns1", "@ IN NS ns2", "ns1 IN A 192.0.2.53", "ns2 IN A 192.0.2.54"]
    lines += [f"host{i} IN A {address(i)}" for i in range(HOSTS)]
    path.write_text("\n".join(lines) + "\n")


def gantry_config(folder):
    folder.mkdir(parents=True, exist_ok=True)
    endpoints = "\n".join(f"    - {{dnsName: host{i}.example.test, recordType: A, targets: [{address(i)}]}}"
                          for i in range(HOSTS))
    (folder / "zone.yaml").write_text(f"""apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {{name: example}}
spec:
  zone: example.test
  ttl: 300
  nameServers:
    - {{name: ns1.example.test, addresses: [192.0.2.53]}}
    - {{name: ns2.example.test, addresses: [192.0.2.54]}}
  soa: {{negativeTtl: 300}}
---
apiVersion: gantry.dev/v1alpha1
kind: DNSRecord
metadata: {{name: hosts, namespace: default}}
spec:
  endpoints:
{endpoints}
""")


def queries(path):
    lines = []
    for i in range(10_000):
        if i % 10 == 9:
            lines.append(f"missing{i}.example.test A")
        else:
            lines.append(f"host{(i * 7919) % HOSTS}.example.test A")
    path.write_text("\n".join(lines) + "\n")


class Servers(run.Setup):
    """The four servers, started and stopped one at a time (run.Setup's process handling)."""

    def __init__(self, work, gantry_bin, baseline=None):
        super().__init__(work, gantry_bin)
        self.baseline = baseline
        zone_file(work / "example.test.zone")

    def start_server(self, name):
        work = self.work
        port = PORTS[name]
        if name in ("gantry", "before"):
            gantry_config(work / "gantry-config")
            binary = self.gantry_bin if name == "gantry" else self.baseline
            cmd = [str(binary), "run", "--config", str(work / "gantry-config"),
                   "--http-addr", "127.0.0.1:15380", "--https-addr", "127.0.0.1:15443",
                   "--admin-addr", "127.0.0.1:15390", "--dns-addr", f"127.0.0.1:{port}",
                   "--state-dir", str(work / f"{name}-state"), "--threads", "1",
                   "--log", "warn", "--access-log", "false"]
            # Response-rate limiting off, as NSD's; builds before it have no such flag and no
            # limit.
            flags = subprocess.run([str(binary), "run", "--help"], capture_output=True,
                                   text=True).stdout
            if "--dns-rate-limit" in flags:
                cmd += ["--dns-rate-limit", "0"]
        elif name == "bind":
            (work / "bind").mkdir(exist_ok=True)
            (work / "named.conf").write_text(f"""options {{
  directory "{work}/bind";
  pid-file "{work}/bind/named.pid";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  minimal-responses yes;
}};
controls {{ }};
zone "example.test" {{ type primary; file "{work}/example.test.zone"; }};
""")
            cmd = ["named", "-g", "-n", "1", "-U", "1", "-c", str(work / "named.conf")]
        elif name == "knot":
            (work / "knot").mkdir(exist_ok=True)
            (work / "knot.conf").write_text(f"""server:
  rundir: "{work}/knot"
  listen: 127.0.0.1@{port}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "{work}/knot"
zone:
  - domain: example.test
    file: "{work}/example.test.zone"
    storage: "{work}/knot"
log:
  - target: stderr
    any: warning
""")
            cmd = ["knotd", "-c", str(work / "knot.conf")]
        else:
            (work / "nsd").mkdir(exist_ok=True)
            (work / "nsd.conf").write_text(f"""server:
  ip-address: 127.0.0.1@{port}
  do-ip6: no
  server-count: 1
  username: ""
  zonesdir: "{work}"
  database: ""
  pidfile: "{work}/nsd/nsd.pid"
  xfrdfile: "{work}/nsd/xfrd.state"
  zonelistfile: "{work}/nsd/zone.list"
  logfile: "{work}/nsd/nsd.log"
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: example.test
  zonefile: "{work}/example.test.zone"
""")
            cmd = ["nsd", "-d", "-c", str(work / "nsd.conf")]
        proc = self.start(name, cmd, SERVER_CPU)
        self.wait_ready(name)
        return proc

    def wait_ready(self, name):
        end = time.time() + 30
        while time.time() < end:
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(PORTS[name]), "+time=1",
                                  "+tries=1", "host1.example.test", "A"],
                                 capture_output=True, text=True).stdout
            if "status: NOERROR" in out and "10.0.0.1" in out:
                return
            time.sleep(0.1)
        raise SystemExit(f"{name} did not answer: see {self.work / (name + '.log')}")


def descendants(pid):
    found = [str(pid)]
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                text=True).stdout.split():
        found += descendants(child)
    return found


def cpu_seconds(pid):
    """CPU time of a process and all its descendants (NSD's server processes are children)."""
    total = 0.0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total


def dnsperf(port, query_file, duration):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
                          "-d", str(query_file), "-l", str(duration), "-c", "10", "-T", "1",
                          "-q", "200"], capture_output=True, text=True, check=True).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    return qps, lost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--baseline", type=Path,
                        help="another gantry binary, measured in the same rounds as `before`")
    args = parser.parse_args()
    ensure_tools()
    gantry_bin = run.ROOT / "target/release/gantry" if args.no_build else run.build_gantry()
    if args.baseline:
        PORTS["before"] = 15305
    names = list(PORTS)
    samples = {n: {"qps": [], "cpu_us": [], "lost": []} for n in names}
    with tempfile.TemporaryDirectory(prefix="gantry-dns-") as tmp:
        work = Path(tmp)
        query_file = work / "queries.txt"
        queries(query_file)
        servers = Servers(work, gantry_bin, args.baseline)
        try:
            for name in names:
                proc = servers.start_server(name)
                dnsperf(PORTS[name], query_file, 2)  # warm up
                servers.stop(name)
            for r in range(args.rounds):
                shift = r % len(names)
                for name in names[shift:] + names[:shift]:
                    proc = servers.start_server(name)
                    before = cpu_seconds(proc.pid)
                    (qps, lost) = dnsperf(PORTS[name], query_file, args.duration)
                    cpu = cpu_seconds(proc.pid) - before
                    servers.stop(name)
                    samples[name]["qps"].append(qps)
                    samples[name]["lost"].append(lost)
                    samples[name]["cpu_us"].append(cpu / (qps * args.duration) * 1e6)
                    run.say(f"round {r + 1}: {name}: {qps:,.0f} queries/s, "
                            f"{samples[name]['cpu_us'][-1]:.1f} us CPU/query, {lost} lost")
        finally:
            servers.stop()
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    g = med["gantry"]
    lines = [f"Authoritative DNS, one worker each on CPU 0, dnsperf -c10 on CPU 1 ({args.rounds} "
             f"rounds x {args.duration} s; 90% existing names, 10% NXDOMAIN), medians:"]
    for n, m in med.items():
        ratio = "" if n == "gantry" else f"   Gantry/{n}: {g['qps'] / m['qps']:.2f}x"
        lines.append(f"  {n:<7} {m['qps']:>9,.0f} queries/s  {m['cpu_us']:5.1f} us CPU/query"
                     f"  {m['lost']:>6.0f} lost{ratio}")
    run.publish(lines, "dns")


if __name__ == "__main__":
    main()
