#!/usr/bin/env python3
"""kload's registry hand-off (`--via`) against direct loads, on host containerd nodes.

For each node count (default 3, 10 and 30): a first load of a 256 MiB image and a dev
reload (only its top 8 MiB layer changed), once directly (kload streams each node what
it lacks) and once through a real registry (Debian's docker-registry on loopback:
kload pushes what the registry lacks, then every node pulls what it lacks). Each
method starts from fresh nodes, a fresh cache and, for --via, an empty registry.

Measured per load: wall time, the bytes that left this machine (direct: the sum of
every node's stream, from kload's --json report; --via: what the push uploaded, from
the same report) and the bytes the nodes received (direct: the same streams; --via:
the blob and manifest bytes the registry served, from its own access log).

Rewrites the part of bench/RESULTS.md between its via markers (bench/e2e.py keeps
that part when it rewrites the rest). Needs root (the lab's nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import ROOT, VIA_BEGIN, VIA_END, BenchError, Labs, Runner, fmt_bytes, fmt_s, mkimage, via_part  # noqa: E402

BASE = [("big-a", 120), ("big-b", 64), ("big-c", 32), ("big-d", 16), ("big-e", 8), ("big-f", 8)]
TOP, DEV_TOP, TOP_MIB = "big-top", "big-top-dev", 8
# One response line of the registry's access log (combined log format).
ACCESS = re.compile(r'^(\S+) \S+ \S+ \[[^]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')


def log(msg: str) -> None:
    print(f"via: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """One docker-registry process with its own storage, stopped by its PID."""

    def __init__(self, work: Path):
        self.dir = work
        self.port = free_port()
        (work / "storage").mkdir(parents=True)
        (work / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: kload-bench\n")
        self.log = open(work / "registry.log", "w+b")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.025)
        self.stop()
        raise BenchError(f"docker-registry did not listen on 127.0.0.1:{self.port}: "
                         f"{(work / 'registry.log').read_text()[-400:]}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def served(self) -> int:
        """Bytes of the blobs and manifests the registry has served so far (GET, 200)."""
        total = 0
        for line in (self.dir / "registry.log").read_text(errors="replace").splitlines():
            m = ACCESS.match(line)
            if m and m.group(2) == "GET" and m.group(4) == "200" and m.group(5) != "-" and \
                    ("/blobs/" in m.group(3) or "/manifests/" in m.group(3)):
                total += int(m.group(5))
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()


@dataclass
class Load:
    wall: float
    left: int       # bytes that left this machine
    received: int   # bytes the nodes received, all nodes together
    report: dict


@dataclass
class Row:
    nodes: int
    scenario: str
    direct: Load
    via: Load


class ViaBench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.runner = Runner(work)
        self.labs = Labs(self.runner, work)
        self.rows: list[Row] = []
        self.serial = 0

    def inputs(self) -> tuple[Path, Path]:
        first, dev = self.work / "app.tar", self.work / "app-dev.tar"
        mkimage(self.runner, self.args.kload, first, [("bench/app:v1", BASE + [(TOP, TOP_MIB)])])
        mkimage(self.runner, self.args.kload, dev, [("bench/app:v1", BASE + [(DEV_TOP, TOP_MIB)])])
        return first, dev

    def kload(self, archive: Path, uris: list[str], cache: Path, via: Registry | None) -> dict:
        argv = [self.args.kload, "image-archive", str(archive), "--json", "--cache", str(cache),
                "--jobs", str(min(len(uris), 16))]
        for uri in uris:
            argv += ["--node", uri]
        if via:
            argv += ["--via", via.address, "--plain-http"]
        p = self.runner.run(argv, timeout=1800)
        report = json.loads(p.out)
        report["_wall"] = p.wall
        return report

    def method(self, n: int, archives: tuple[Path, Path], via: bool) -> list[Load]:
        self.serial += 1
        uris = self.labs.up(f"{n}-{self.serial}", n)
        cache = self.work / f"cache-{self.serial}"
        registry = Registry(self.work / f"registry-{self.serial}") if via else None
        loads = []
        try:
            for archive in archives:
                served_before = registry.served() if registry else 0
                r = self.kload(archive, uris, cache, registry)
                streamed = sum(node["wireBytes"] for node in r["nodes"])
                if registry:
                    loads.append(Load(r["_wall"], r["via"]["bytesUploaded"], registry.served() - served_before, r))
                else:
                    loads.append(Load(r["_wall"], streamed, streamed, r))
        finally:
            if registry:
                registry.stop()
            self.labs.down_all()
            self.labs.dirs.clear()
        return loads

    def run(self) -> None:
        archives = self.inputs()
        for n in self.args.nodes:
            log(f"{n} nodes: direct")
            direct = self.method(n, archives, via=False)
            log(f"{n} nodes: --via")
            via = self.method(n, archives, via=True)
            for scenario, d, v in zip(["first load", "dev reload"], direct, via):
                self.rows.append(Row(n, scenario, d, v))
                log(f"{n} nodes, {scenario}: direct {d.wall:.2f} s, via {v.wall:.2f} s")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def section(bench: ViaBench, cmdline: str, minutes: float, loads: tuple[str, str]) -> str:
    out = [VIA_BEGIN, "", "## Past one machine's uplink: `--via REGISTRY` against direct loads", "",
           f"Command: `{cmdline}` ({minutes:.1f} min; load average {loads[0]} at the start, {loads[1]} at the "
           f"end, on {os.cpu_count()} cores). Host containerd nodes (`tools/lab up N`), Debian's "
           "docker-registry on loopback, everything on this one machine; one run per row. Image: 256 MiB in "
           f"7 layers (tools/mkimage, `--compressible 0.5`); the dev reload changes only its top {TOP_MIB} MiB "
           "layer. Left this machine: direct, every node's stream (kload's `wireBytes`); --via, what the push "
           "uploaded. Nodes received: direct, the same streams; --via, the blob and manifest bytes the "
           "registry served (its access log).", "",
           "| Nodes | Load | direct (s) | --via (s) | direct / --via | left this machine: direct, --via | "
           "nodes received: direct, --via |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for r in bench.rows:
        out.append(f"| {r.nodes} | {r.scenario} | {fmt_s(r.direct.wall)} | {fmt_s(r.via.wall)} | "
                   f"{r.direct.wall / r.via.wall:.2f}x | {fmt_bytes(r.direct.left)}, {fmt_bytes(r.via.left)} | "
                   f"{fmt_bytes(r.direct.received)}, {fmt_bytes(r.via.received)} |")
    out += ["", *model(bench), "", VIA_END]
    return "\n".join(out) + "\n"


def model(bench: ViaBench) -> list[str]:
    """Where --via wins on a real network, with this run's hand-off cost plugged in."""
    devs = [r for r in bench.rows if r.scenario == "dev reload"]
    wins = [r.nodes for r in bench.rows if r.via.wall < r.direct.wall]
    here = (f"On this machine --via was faster at {', '.join(str(n) for n in sorted(set(wins)))} node(s)."
            if wins else "On this machine --via was never faster: source, registry and nodes share one "
            "loopback and two cores, so the hand-off only adds a second copy and the registry's work; "
            "the source's upload, the one thing it saves, costs nothing here.")
    # On loopback the transfer itself costs next to nothing, so what --via adds to a
    # dev reload here is the hand-off's own cost.
    c = min((r.via.wall - r.direct.wall for r in devs), default=0.0)
    return [
        "**Model.** With a source uplink of B bytes/s, N nodes that each lack D bytes, a registry whose "
        "egress R is much larger than B (in the cluster's network, or fronted by a peer-to-peer mirror), "
        "a direct load takes about N·D/B (every node's delta leaves the source), a --via load about "
        "D/B + N·D/R + c, where c is the hand-off's own cost (the push's requests and every node's pull "
        "round trip). --via wins when N·D/B > D/B + c, that is when N > 1 + c·B/D.",
        "",
        f"{here} The smallest hand-off cost in this run, taken as what --via added to a dev reload's "
        f"wall time here, where moving bytes costs next to nothing, is c = {c:.2f} s. With c = {max(c, 0.0):.2f} s, a 100 Mbit/s uplink "
        f"(B = 12.5 MB/s) and D = 8 MiB, --via wins from N > {1 + max(c, 0.0) * 12.5e6 / (8 << 20):.1f} nodes; "
        f"with D = 256 MiB, from N > {1 + max(c, 0.0) * 12.5e6 / (256 << 20):.2f}, i.e. from 2 nodes.",
    ]


def write(path: Path, text: str) -> None:
    """Replaces the via part of the results file, or appends it."""
    old = path.read_text() if path.exists() else ""
    kept = via_part(old)
    new = old.replace(kept, text) if kept else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/via.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="3,10,30", help="comma-separated node counts (default 3,10,30)")
    ap.add_argument("--kload", default=str(ROOT / "build" / "kload"), help="the kload binary (default build/kload)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="the results file to update")
    args = ap.parse_args()
    args.nodes = [int(n) for n in args.nodes.split(",")]
    args.kload = str(Path(args.kload).resolve())
    if os.geteuid() != 0:
        print("via: the lab's containerd nodes need root", file=sys.stderr)
        return 2
    if not shutil.which("docker-registry"):
        print("via: no docker-registry on PATH (Debian package docker-registry; tools/dev deps)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="kload-via."))
    os.environ["KLOAD_CACHE"] = str(work / "cache-default")
    started = time.time()
    load_start = loadavg()
    bench = ViaBench(args, work)
    try:
        bench.run()
        cmdline = "bench/via.py" + (f" --nodes {','.join(map(str, args.nodes))}" if args.nodes != [3, 10, 30] else "")
        write(Path(args.out), section(bench, cmdline, (time.time() - started) / 60, (load_start, loadavg())))
        log(f"wrote {args.out}")
        return 0
    except BenchError as e:
        print(f"via: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("via: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.runner.kill_all()
        bench.labs.down_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
