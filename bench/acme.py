#!/usr/bin/env python3
"""Issuing 100 certificates from Pebble (Let's Encrypt's test CA), validation delays off.

Run: ./bench/acme.py              (3 rounds, ~1 minute after the build)
     ./bench/acme.py --rounds 1 --certificates 20

Each round starts a fresh Gantry (release build, its own state dir) on a folder with a DNSZone
for example.test and N Ingresses, each with one host and a `spec.tls` entry annotated with a
ClusterIssuer (as cert-manager's ingress-shim reads them), so N certificates, each proved by
HTTP-01; and a fresh Pebble resolving through Gantry's DNS listener and validating against
Gantry's HTTP port. The ClusterIssuer is written last: the clock runs from that write until
Gantry's /status/certificates shows all N Ready. Reported per round: that time, Gantry's peak RSS
(VmHWM, the whole process life) and its RSS before the issuer was written; then how the
renewal times spread (they all fall a third of the lifetime before expiry, moved earlier by a
per-certificate jitter of up to a tenth of that margin).

There is no second implementation to run beside it here: cert-manager needs a Kubernetes API
server, which cannot be installed on this machine. The figure is Gantry's alone.

Needs (installed when missing): pebble, taskset.
"""

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (process handling and the release build)

HTTP, HTTPS, ADMIN, DNS = 18084, 18444, 18904, 18953
PEBBLE, PEBBLE_MANAGEMENT = 18140, 18150
LIMIT = 600


def ensure_pebble():
    if shutil.which("pebble") is None:
        run.say("installing pebble")
        subprocess.run(["apt-get", "install", "-y", "-qq", "pebble"], check=True)


def pebble_tls(work):
    """A CA and, signed by it, the certificate of Pebble's own HTTPS; the CA's base64 for caBundle."""
    ca_cert, ca_key = work / "pebble-ca.crt", work / "pebble-ca.key"
    cert, key, csr = work / "pebble.crt", work / "pebble.key", work / "pebble.csr"
    openssl = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=bench CA", "-keyout", str(ca_key), "-out", str(ca_cert))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    extensions = work / "pebble.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert))
    import base64
    return cert, key, base64.b64encode(ca_cert.read_bytes()).decode()


def write_folder(folder, count):
    folder.mkdir()
    (folder / "base.yaml").write_text(f"""apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gantry
  annotations: {{ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {{controller: gantry.dev/ingress-controller}}
---
apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {{name: example}}
spec:
  zone: example.test
  nameServers: [{{name: ns1.example.test, addresses: [127.0.0.1]}}]
  ingressAddresses: [127.0.0.1]
""")
    for i in range(count):
        host = f"site-{i}.example.test"
        (folder / f"site-{i}.yaml").write_text(f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: site-{i}
  namespace: default
  annotations: {{cert-manager.io/cluster-issuer: pebble}}
spec:
  tls: [{{hosts: [{host}], secretName: site-{i}-tls}}]
  rules:
    - host: {host}
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: up, port: {{number: 80}}}}}}}}
""")


def statuses():
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/status/certificates", timeout=5) as r:
        return json.load(r)


def vm(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_round(setup, work, count, ca_bundle, cert, key):
    folder, state = work / "config", work / "state"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    write_folder(folder, count)
    (work / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{PEBBLE}",
        "managementListenAddress": f"127.0.0.1:{PEBBLE_MANAGEMENT}",
        "certificate": str(cert), "privateKey": str(key),
        "httpPort": HTTP, "tlsPort": HTTPS, "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}))
    gantry = setup.start("gantry", [str(setup.gantry_bin), "run", "--config", str(folder),
                                    "--http-addr", f"127.0.0.1:{HTTP}",
                                    "--https-addr", f"127.0.0.1:{HTTPS}",
                                    "--admin-addr", f"127.0.0.1:{ADMIN}",
                                    "--dns-addr", f"127.0.0.1:{DNS}",
                                    "--state-dir", str(state), "--threads", "1",
                                    "--log", "warn"], run.PROXY_CPU)
    pebble = setup.start("pebble", ["env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
                                    "pebble", "-config", str(work / "pebble.json"),
                                    "-dnsserver", f"127.0.0.1:{DNS}"], run.LOAD_CPU)
    end = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > end:
            raise SystemExit("gantry did not become ready")
        time.sleep(0.05)
    end = time.time() + 30
    while True:  # Pebble makes its CA first, then listens
        try:
            ssl_context = __import__("ssl")._create_unverified_context()
            with urllib.request.urlopen(f"https://127.0.0.1:{PEBBLE}/dir", timeout=5,
                                        context=ssl_context) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > end:
            raise SystemExit("pebble did not answer")
        time.sleep(0.05)
    rss_before = vm(gantry.pid, "VmRSS")
    (folder / "issuer.yaml").write_text(f"""apiVersion: gantry.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: https://127.0.0.1:{PEBBLE}/dir
    caBundle: {ca_bundle}
    solvers: [{{http01: {{}}}}]
""")
    start = time.time()
    cpu_gantry, cpu_pebble = run.cpu_seconds(gantry.pid), run.cpu_seconds(pebble.pid)
    while True:
        try:
            now = statuses()
        except OSError:
            now = []
        ready = [s for s in now if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in s["conditions"])]
        if len(ready) == count:
            break
        if time.time() - start > LIMIT:
            print((work / "gantry.log").read_text()[-4000:])
            print((work / "pebble.log").read_text()[-4000:])
            raise SystemExit(f"only {len(ready)} of {count} ready after {LIMIT} s")
        time.sleep(0.05)
    seconds = time.time() - start
    cpu_gantry = run.cpu_seconds(gantry.pid) - cpu_gantry
    cpu_pebble = run.cpu_seconds(pebble.pid) - cpu_pebble
    print(f"    CPU during issuance: Gantry {cpu_gantry:.2f} s, Pebble {cpu_pebble:.2f} s")
    peak = vm(gantry.pid, "VmHWM")
    failures = sum(s["failedIssuanceAttempts"] for s in now)
    setup.stop("gantry", "pebble")
    del pebble
    return seconds, peak, rss_before, failures, now


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--certificates", type=int, default=100)
    args = parser.parse_args()
    ensure_pebble()
    gantry_bin = run.build_gantry()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        setup = run.Setup(work, gantry_bin)
        cert, key, ca_bundle = pebble_tls(work)
        rounds = []
        try:
            for i in range(args.rounds):
                run.say(f"round {i + 1}: {args.certificates} certificates")
                result = one_round(setup, work, args.certificates, ca_bundle, cert, key)
                rounds.append(result)
                print(f"    {result[0]:.2f} s, peak RSS {result[1] / 1024:.1f} MiB "
                      f"(before: {result[2] / 1024:.1f} MiB), failed attempts {result[3]}")
        finally:
            setup.stop()
    times = [r[0] for r in rounds]
    peaks = [r[1] / 1024 for r in rounds]
    print(f"\n{args.certificates} certificates from Pebble: median {statistics.median(times):.2f} s "
          f"({args.certificates / statistics.median(times):.1f} certificates/s), "
          f"peak RSS median {statistics.median(peaks):.1f} MiB, over {len(rounds)} rounds")
    last = rounds[-1][4]
    margins = []
    for s in last:
        not_before, not_after = parse_time(s["notBefore"]), parse_time(s["notAfter"])
        renewal = parse_time(s["renewalTime"])
        third = (not_after - not_before) / 3
        margins.append(((not_after - renewal) - third) / third)
    renewals = sorted(parse_time(s["renewalTime"]) for s in last)
    print(f"renewal times (last round): {len(set(renewals))} distinct of {len(renewals)}, "
          f"spread over {(renewals[-1] - renewals[0]) / 3600:.1f} h; each falls "
          f"{min(margins) * 100:.1f}% to {max(margins) * 100:.1f}% of the one-third margin "
          f"earlier than the margin itself")


if __name__ == "__main__":
    main()
