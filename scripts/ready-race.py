#!/usr/bin/env python3
"""How often a freshly started Gantry answers /readyz 200 while its HTTP or DNS port still refuses.

Starts BINARY COUNT times, each with a new state dir, on a folder holding one DNS zone, asks /readyz as fast as it answers,
and at the first 200 connects to the HTTP port once and sends one DNS query over UDP; prints how
many of each were taken (answered) and how many refused. A load balancer sends traffic at that
same moment, so anything but 0 refused is a failed request in a rolling restart (the test
lifecycle::at_the_first_ready_answer_every_port_takes_connections checks the same in the suite,
for the L4 and Gateway ports too). Run it on a busy machine, e.g. beside `yes > /dev/null`
loops, to widen any window:

    scripts/ready-race.py target/debug/gantry 100
"""
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ZONE = """apiVersion: gantry.dev/v1alpha1
kind: DNSZone
metadata: {name: example}
spec:
  zone: example.test
  nameServers: [{name: ns1.example.test, addresses: [192.0.2.53]}]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(admin):
    try:
        with socket.create_connection(("127.0.0.1", admin), timeout=2) as s:
            s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
            return s.recv(64)[8:12] == b" 200"
    except OSError:
        return False


def dns_answers(port):
    """One query for `ready.invalid A` over UDP; refused if the port is not bound yet."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x05ready\x07invalid\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        try:
            s.send(query)
            return s.recv(1500)[:2] == b"\xab\xcd"
        except OSError:
            return False


def main():
    binary, count = sys.argv[1], int(sys.argv[2])
    config = tempfile.mkdtemp()
    with open(f"{config}/zone.yaml", "w") as zone:
        zone.write(ZONE)
    taken = refused = answered = unanswered = 0
    for _ in range(count):
        state = tempfile.mkdtemp()
        http, https, admin, dns = (free_port() for _ in range(4))
        gantry = subprocess.Popen(
            [binary, "run", "--config", config, "--state-dir", state,
             "--http-addr", f"127.0.0.1:{http}", "--https-addr", f"127.0.0.1:{https}",
             "--admin-addr", f"127.0.0.1:{admin}", "--dns-addr", f"127.0.0.1:{dns}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not ready(admin):
            if time.monotonic() > deadline or gantry.poll() is not None:
                sys.exit("gantry did not become ready")
        try:
            socket.create_connection(("127.0.0.1", http), timeout=2).close()
            taken += 1
        except OSError:
            refused += 1
        if dns_answers(dns):
            answered += 1
        else:
            unanswered += 1
        gantry.terminate()
        gantry.wait()
        shutil.rmtree(state)
    shutil.rmtree(config)
    print(f"at the first ready answer, the HTTP port: {taken} taken, {refused} refused; "
          f"DNS over UDP: {answered} answered, {unanswered} refused")


if __name__ == "__main__":
    main()
