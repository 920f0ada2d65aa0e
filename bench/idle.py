#!/usr/bin/env python3
"""What an idle keep-alive connection costs: Gantry against nginx and HAProxy, in one run.

Run: ./bench/idle.py                      (3 rounds, 10,000 clients, plain and TLS)
     ./bench/idle.py --rounds 1 --clients 2000 --no-build   (a quick look)

The proxies are set up as in bench/run.py (one worker each, pinned to CPU 0; the upstream and the
clients on CPU 1). For each proxy in turn, in an order that rotates each round, and for plain
HTTP/1.1 and HTTP/1.1 over TLS: N clients connect, each sends one request and reads the answer,
and then all stay connected and silent. The proxy's RSS before, while the N clients are idle,
and after they close (polled for up to a minute) gives the memory per idle connection and how
much of it is given back. Clients send their requests at most 50 at a time, so the proxies keep
few upstream connections and the figure is the downstream connection's own.
"""

import argparse
import asyncio
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the proxies' set-up)

RETURN_WAIT = 60.0


async def hold(port, clients, tls):
    """The client side (its own process): connects, asks once on each connection, reports
    `idle`, then closes everything when told on stdin and reports `closed`."""
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
    request = f"GET / HTTP/1.1\r\nHost: {run.HOST}\r\n\r\n".encode()
    gate = asyncio.Semaphore(50)
    writers = []

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=run.HOST if tls else None)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"answered {head[:40]!r}")
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(clients)))
    print("idle", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in writers:
        writer.close()
    print("closed", flush=True)


def idle_round(pid, port, clients, tls):
    """Returns (KiB per idle connection, KiB per connection still held a minute after they
    closed, seconds until the RSS stopped falling)."""
    before = run.rss_kib(pid)
    client = subprocess.Popen(
        ["taskset", "-c", run.LOAD_CPU, sys.executable, __file__, "--hold", str(port),
         "--clients", str(clients)] + (["--tls"] if tls else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if client.stdout.readline().strip() != "idle":
        raise SystemExit(f"the clients of port {port} did not all get an answer")
    time.sleep(1.0)  # the last answers' buffers settle
    idle = run.rss_kib(pid)
    client.stdin.write("close\n")
    client.stdin.flush()
    client.stdout.readline()
    client.wait()
    closed_at, last, last_change = time.time(), idle, time.time()
    while time.time() - closed_at < RETURN_WAIT:
        time.sleep(1.0)
        now = run.rss_kib(pid)
        if now < last:
            last, last_change = now, time.time()
        if last - before < (idle - before) * 0.05:
            break
    return (idle - before) / clients, (last - before) / clients, last_change - closed_at


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--no-build", action="store_true",
                        help="use target/release/gantry as it is")
    parser.add_argument("--gantry", type=Path, help="the Gantry binary to measure (no build)")
    parser.add_argument("--proxies", default="nginx,haproxy,gantry",
                        help="which to measure, comma-separated")
    parser.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.hold:
        asyncio.run(hold(args.hold, args.clients, args.tls))
        return

    run.ensure_tools()
    if args.gantry:
        gantry_bin = args.gantry.resolve()
    elif args.no_build:
        gantry_bin = run.ROOT / "target/release/gantry"
    else:
        gantry_bin = run.build_gantry()
    names = [n for n in run.PORTS if n in args.proxies.split(",")]
    results = {(n, m): {"idle": [], "kept": [], "settled": []} for n in names
               for m in ("plain", "tls")}
    with tempfile.TemporaryDirectory(prefix="gantry-idle-") as tmp:
        setup = run.Setup(Path(tmp), gantry_bin)
        folder = setup.work / "gantry-config"
        setup.gantry_config(folder)
        starters = {
            "nginx": setup.start_nginx,
            "haproxy": setup.start_haproxy,
            "gantry": lambda: setup.start_gantry(folder, setup.work / "gantry-state"),
        }
        try:
            setup.start_upstream()
            for round_index in range(args.rounds):
                shift = round_index % len(names)
                order = names[shift:] + names[:shift]
                run.say(f"round {round_index + 1} of {args.rounds}: {', '.join(order)}")
                for name in order:
                    # A fresh process each time: what one measurement leaves is not the next's.
                    pid = starters[name]().pid
                    http, https = run.PORTS[name]
                    run.wait_http(f"http://127.0.0.1:{http}/")
                    run.wait_http(f"https://127.0.0.1:{https}/", insecure=True)
                    for mode, port in (("plain", http), ("tls", https)):
                        idle, kept, settled = idle_round(pid, port, args.clients, mode == "tls")
                        r = results[(name, mode)]
                        r["idle"].append(idle)
                        r["kept"].append(kept)
                        r["settled"].append(settled)
                        print(f"    {name:8} {mode:5} {idle:7.2f} KiB per idle connection; "
                              f"{kept:7.2f} KiB each still held after they closed "
                              f"(RSS last fell {settled:4.1f} s after)", flush=True)
                    setup.stop(name)
        finally:
            setup.stop()

    med = {key: {k: statistics.median(v) for k, v in r.items()} for key, r in results.items()}
    lines = [f"Idle keep-alive connections: {args.clients} clients, one request each, then "
             f"silent; medians of {args.rounds} rounds.", ""]
    lines.append(f"{'':44}" + "".join(f" {n:>10}" for n in names)
                 + ("" if "gantry" not in names else
                    "".join(f" {'G/' + n:>10}" for n in names if n != "gantry")))
    for mode, title in (("plain", "HTTP/1.1"), ("tls", "HTTP/1.1 over TLS")):
        for key, what in (("idle", f"{title}: KiB per idle connection"),
                          ("kept", "  KiB each still held after they close")):
            values = {name: med[(name, mode)][key] for name in names}
            row = f"{what:44}" + "".join(f" {values[n]:>10.2f}" for n in names)
            if "gantry" in names:
                for n in names:
                    if n != "gantry":
                        ratio = values["gantry"] / values[n] if values[n] > 0.05 else None
                        row += f" {ratio:>10.2f}" if ratio is not None else f" {'-':>10}"
            lines.append(row)
    run.publish(lines, "idle")


if __name__ == "__main__":
    main()
