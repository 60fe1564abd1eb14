#!/usr/bin/env python3
"""End-to-end comparison of kload with kind's own loading method, on real containerd.

Runs, on this machine and in this run, kload and the baseline on identical inputs
(written by tools/mkimage) and fresh nodes (tools/lab), and writes bench/RESULTS.md:
machine facts, the exact commands, the table, and a reading of it.

The baseline is exactly what `kind load image-archive` does: the whole archive fed to
`ctr -n k8s.io images import --all-platforms --digests --snapshotter S -` on every
node at once, each node re-reading the file, no presence check; several archives one
after another. The floor is what a perfect loader would cost: one `ctr images import`
per node, all at once, of only the bytes that node had to receive (the thin archive
kload itself sends, captured once by a `ctr` wrapper that tees the stream).

Standard library only. Numbers are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MKIMAGE = ROOT / "tools" / "mkimage"
LAB = ROOT / "tools" / "lab"
MiB = 1 << 20
NAMESPACE = "k8s.io"
SNAPSHOTTER = "overlayfs"
CONNECT_TIMEOUT = "5s"
COMMAND_TIMEOUT = 1800  # seconds; a hung node must not hang the harness
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Sizes in MiB. Layer seeds are shared between images on purpose: the same SEED:SIZE
# gives the same blob in every archive (tools/mkimage), so v1 and v2 share their base.
PROFILES = {
    "full": {
        "runs": 3,
        "app_base": [("app-a", 400), ("app-b", 256), ("app-c", 160), ("app-d", 96), ("app-e", 48),
                     ("app-f", 32), ("app-g", 16)],
        "app_top": 16,
        "set_base": [("base-a", 200), ("base-b", 150), ("base-c", 100), ("base-d", 100), ("base-e", 50)],
        "set_top": 8,
        "set_images": 10,
        "small": [("small-a", 16), ("small-b", 8), ("small-c", 8)],
        "scale": [1, 3, 10, 30],
    },
    "quick": {
        "runs": 1,
        "app_base": [("app-a", 8), ("app-b", 6), ("app-c", 4), ("app-d", 4), ("app-e", 4), ("app-f", 2),
                     ("app-g", 2)],
        "app_top": 2,
        "set_base": [("base-a", 8), ("base-b", 4), ("base-c", 4)],
        "set_top": 1,
        "set_images": 10,
        "small": [("small-a", 2), ("small-b", 1), ("small-c", 1)],
        "scale": [1, 3, 10],
    },
}

# The wrapper put first in PATH for the one traced kload run per scenario: it logs
# every ctr call (start, end, exit code, socket, words) and tees the import stream of
# one node to a file, which becomes that scenario's floor archive.
CTR_SHIM = r"""#!/usr/bin/env bash
real=@REAL@
start=$EPOCHREALTIME
sock="" prev="" import=0
for a in "$@"; do
  [[ $prev == -a ]] && sock=$a
  [[ $a == import ]] && import=1
  prev=$a
done
# Only the first import (the one carrying the layers) is the floor's stream; the
# tiny second import that commits the names is not captured.
if [[ $import == 1 && -n ${KLOAD_BENCH_CAPTURE:-} && $sock == "${KLOAD_BENCH_CAPTURE_SOCK:-}" &&
      ! -e $KLOAD_BENCH_CAPTURE ]]; then
  tee "$KLOAD_BENCH_CAPTURE" | "$real" "$@"
  rc=${PIPESTATUS[1]}
else
  "$real" "$@"
  rc=$?
fi
printf '%s\t%s\t%s\t%s\t%s\n' "$start" "$EPOCHREALTIME" "$rc" "$sock" "$*" >> "$KLOAD_BENCH_TRACE"
exit $rc
"""


def log(msg: str) -> None:
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


# bench/via.py owns the part of RESULTS.md between these markers; rewriting the rest
# keeps it.
VIA_BEGIN = "<!-- via:begin (bench/via.py writes this part) -->"
VIA_END = "<!-- via:end -->"


def via_part(text: str) -> str:
    """The via part of a results file, markers included, or ""."""
    if VIA_BEGIN in text and VIA_END in text:
        return text[text.index(VIA_BEGIN):text.index(VIA_END) + len(VIA_END)] + "\n"
    return ""


def write_keeping_via(path: Path, text: str) -> None:
    """Writes a results file, keeping the via part of the one it replaces at its end."""
    kept = via_part(path.read_text()) if path.exists() else ""
    path.write_text(text + ("\n" + kept if kept else ""))


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    """A finished child: wall time, its own CPU and that of its reaped children."""
    argv: list[str]
    rc: int
    start: float  # time.time() just before spawning
    wall: float
    cpu_own: float  # utime+stime of the process itself (all its threads)
    cpu_total: float  # the same plus every child it reaped (ctr clients)
    rchar: int  # bytes it and its reaped children read through read()/pread()
    out: str
    err: str
    report: dict | None = None  # kload's --json report, for kload runs


class Runner:
    """Spawns children with stdout/stderr in files and reaps them with waitid(WNOWAIT)
    first, so /proc/PID/stat still holds the finished process's own CPU time (wait4's
    rusage alone would mix in the ctr clients kload runs)."""

    def __init__(self, work: Path):
        self.work = work
        self.live: set[int] = set()
        self.lock = threading.Lock()
        self.serial = 0

    def spawn(self, argv: list[str], stdin: Path | None = None, env: dict | None = None):
        with self.lock:
            self.serial += 1
            n = self.serial
        out = open(self.work / f"proc-{n}.out", "w+b")
        err = open(self.work / f"proc-{n}.err", "w+b")
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        start = time.time()
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=fin, stdout=out, stderr=err, env=env, start_new_session=True)
        if stdin:
            fin.close()
        with self.lock:
            self.live.add(p.pid)
        return (p, argv, out, err, start, t0)

    def reap(self, handle, timeout: float = COMMAND_TIMEOUT) -> Proc:
        p, argv, out, err, start, t0 = handle
        timer = threading.Timer(timeout, lambda: self._kill(p.pid))
        timer.start()
        try:
            while True:
                try:
                    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
                    break
                except InterruptedError:
                    continue
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        cpu_own, rchar = 0.0, 0
        try:
            stat = Path(f"/proc/{p.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cpu_own = (int(fields[11]) + int(fields[12])) / CLK_TCK
            for line in Path(f"/proc/{p.pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    rchar = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        with self.lock:
            self.live.discard(p.pid)
        out.seek(0)
        err.seek(0)
        proc = Proc(argv, p.returncode, start, wall, cpu_own, usage.ru_utime + usage.ru_stime, rchar,
                    out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        out.close()
        err.close()
        return proc

    def run(self, argv, stdin=None, env=None, check=True, timeout=COMMAND_TIMEOUT) -> Proc:
        proc = self.reap(self.spawn(argv, stdin, env), timeout)
        if check and proc.rc != 0:
            raise BenchError(f"{' '.join(argv[:6])}... exited {proc.rc}: {proc.err.strip()[-800:]}")
        return proc

    def group(self, jobs: list[tuple[list[str], Path | None]], check=True) -> tuple[float, list[Proc]]:
        """Starts every job at once and waits for all; returns the wall time of the group."""
        t0 = time.perf_counter()
        handles = [self.spawn(argv, stdin) for argv, stdin in jobs]
        procs = [self.reap(h) for h in handles]
        wall = time.perf_counter() - t0
        if check:
            for p in procs:
                if p.rc != 0:
                    raise BenchError(f"{' '.join(p.argv[:8])}... exited {p.rc}: {p.err.strip()[-800:]}")
        return wall, procs

    def _kill(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def kill_all(self) -> None:
        with self.lock:
            pids = list(self.live)
        for pid in pids:
            self._kill(pid)


# ---------------------------------------------------------------- nodes


def sock_of(uri: str) -> str:
    return uri[len("containerd://"):].split("?")[0]


def ctr(sock: str, *args: str) -> list[str]:
    return ["ctr", "-a", sock, "--connect-timeout", CONNECT_TIMEOUT, "-n", NAMESPACE, *args]


class Labs:
    """Lab directories under the work dir; every one ever started is downed at the end."""

    def __init__(self, runner: Runner, work: Path):
        self.runner = runner
        self.work = work
        self.dirs: set[Path] = set()

    def up(self, name: str, n: int) -> list[str]:
        d = self.work / f"lab-{name}"
        self.dirs.add(d)
        p = self.runner.run([str(LAB), "up", str(n), str(d), "--snapshotter", SNAPSHOTTER], timeout=300)
        uris = [line.strip() for line in p.out.splitlines() if line.startswith("containerd://")]
        if len(uris) != n:
            raise BenchError(f"lab up {n} printed {len(uris)} node URIs")
        os.sync()  # start every timed run without the previous run's dirty pages
        return uris

    def down_all(self) -> None:
        for d in sorted(self.dirs):
            if d.exists():
                subprocess.run([str(LAB), "down", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=300, check=False)


@dataclass
class NodeState:
    names: set[str]
    content: set[str]
    snapshots: int


def node_state(runner: Runner, sock: str) -> NodeState:
    names = set(runner.run(ctr(sock, "images", "ls", "-q")).out.split())
    content = set(runner.run(ctr(sock, "content", "ls", "-q")).out.split())
    snaps = runner.run(ctr(sock, "snapshots", "--snapshotter", SNAPSHOTTER, "ls")).out.strip().splitlines()
    return NodeState(names, content, max(0, len(snaps) - 1))


def collect_garbage(runner: Runner, sock: str) -> None:
    """Runs containerd's GC now (it runs after a deletion): an import leaves unreferenced
    blobs that the first later deletion would collect, which would make a restored
    node differ from the state before the run."""
    names = runner.run(ctr(sock, "images", "ls", "-q")).out.split()
    if names:
        runner.run(ctr(sock, "images", "tag", "--force", names[0], "localhost/e2e-gc:trigger"))
        runner.run(ctr(sock, "images", "rm", "--sync", "localhost/e2e-gc:trigger"))


def restore(runner: Runner, socks: list[str], before: list[NodeState]) -> None:
    """Puts reload nodes back into their pre-run state: removes every image name the
    run added (synchronous GC then drops its blobs and snapshots) and checks."""
    for sock, state in zip(socks, before):
        names = set(runner.run(ctr(sock, "images", "ls", "-q")).out.split())
        extra = sorted(names - state.names)
        if extra:
            runner.run(ctr(sock, "images", "rm", "--sync", *extra))
        now = node_state(runner, sock)
        if now.content != state.content:
            # An import that added no name (so no deletion, so no GC) can leave garbage.
            collect_garbage(runner, sock)
            now = node_state(runner, sock)
        if now.names != state.names or now.content != state.content or now.snapshots != state.snapshots:
            raise BenchError(f"{sock}: could not restore the node: {len(now.content)} blobs / {now.snapshots} "
                             f"snapshots, expected {len(state.content)} / {state.snapshots}")


# ---------------------------------------------------------------- inputs


@dataclass
class Archive:
    path: Path
    size: int
    images: list[dict]  # kload inspect --json "images"
    mkimage_args: list[str]


def mkimage(runner: Runner, kload: str, out: Path, images: list[tuple[str, list[tuple[str, int]]]]) -> Archive:
    args = []
    for name, layers in images:
        args += ["--image", name + "=" + ",".join(f"{seed}:{size}M" for seed, size in layers)]
    args += ["--compressible", "0.5"]
    runner.run([sys.executable, str(MKIMAGE), *args, str(out)], timeout=600)
    info = json.loads(runner.run([kload, "inspect", "--json", str(out)]).out)
    return Archive(out, out.stat().st_size, info["images"], args)


def unique_bytes(archives: list[Archive]) -> int:
    """Layer, manifest and config bytes of a set of archives, each blob once."""
    blobs = {}
    for a in archives:
        for image in a.images:
            for d in [image["manifest"], image["config"], *image["layers"]]:
                blobs[d["digest"]] = d["size"]
    return sum(blobs.values())


# ---------------------------------------------------------------- measurements


@dataclass
class Row:
    scenario: str
    method: str  # baseline | kload | kload -j N | floor
    nodes: int
    walls: list[float] = field(default_factory=list)
    cpu_own: list[float] = field(default_factory=list)
    cpu_total: list[float] = field(default_factory=list)
    bytes_sent: int = 0
    layer_bytes: int | None = None
    input_passes: float | None = None
    reports: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_own) if self.cpu_own else float("nan")

    @property
    def cpu_all(self) -> float:
        return statistics.median(self.cpu_total) if self.cpu_total else float("nan")


@dataclass
class Trace:
    label: str  # which kload method was traced
    nodes: int
    wall: float
    report: dict
    calls: list[dict]
    start: float
    capture: Path | None
    capture_size: int
    node1: str  # node 1's socket, for its call sequence


# How kload finds its inventory cache in a run: none (--no-cache, or a kload without a
# cache), cold (a fresh, empty cache directory: a first load), warm (a copy of the
# cache as kload left it after loading the scenario's starting state).
NO_CACHE, COLD, WARM = "none", "cold", "warm"


@dataclass
class Method:
    label: str
    extra: list[str]
    cache: str


@dataclass
class Scenario:
    key: str
    title: str  # short, for the tables
    nodes: int
    about: str = ""  # one sentence, for the list above the tables
    rows: dict[str, Row] = field(default_factory=dict)
    traces: list[Trace] = field(default_factory=list)
    primary: str = "kload"  # the kload row the targets are read from
    expected_bytes: int | None = None  # what a perfect loader sends, all nodes
    input_bytes: int = 0
    reload: bool = False
    floor_zero: bool = False  # nothing needs to change on any node

    def row(self, method: str) -> Row:
        if method not in self.rows:
            self.rows[method] = Row(self.key, method, self.nodes)
        return self.rows[method]

    @property
    def trace(self) -> Trace | None:
        """The traced run of the primary method."""
        for t in self.traces:
            if t.label == self.primary:
                return t
        return self.traces[0] if self.traces else None


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.profile = PROFILES["quick" if args.quick else "full"]
        self.runs = args.runs or self.profile["runs"]
        self.kload = args.kload
        self.runner = Runner(work)
        self.labs = Labs(self.runner, work)
        self.scenarios: list[Scenario] = []
        help_text = subprocess.run([self.kload, "image-archive", "--help"], capture_output=True, text=True).stdout
        m = re.search(r"at once \(default (\d+)\)", help_text)
        self.kload_node_jobs = int(m.group(1)) if m else (os.cpu_count() or 1)
        self.has_cache = "--no-cache" in help_text
        self.cache_serial = 0
        self.warm_snapshot: Path | None = None
        self.real_ctr = shutil.which("ctr")
        if not self.real_ctr:
            raise BenchError("ctr is not installed (apt-get install containerd)")
        shim_dir = work / "shim"
        shim_dir.mkdir()
        (shim_dir / "ctr").write_text(CTR_SHIM.replace("@REAL@", self.real_ctr))
        (shim_dir / "ctr").chmod(0o755)
        self.shim_dir = shim_dir

    # ------------------------------------------------ one measurement of each kind

    def cache_args(self, mode: str) -> list[str]:
        """kload's cache arguments for `mode`; never the user's own cache."""
        if not self.has_cache:
            return []
        if mode == NO_CACHE:
            return ["--no-cache"]
        self.cache_serial += 1
        d = self.work / f"cache-{self.cache_serial}"
        if mode == WARM:
            if self.warm_snapshot is None:
                raise BenchError("no warm cache to start from")
            shutil.copytree(self.warm_snapshot, d)
        return ["--cache", str(d)]

    def kload_run(self, archives: list[Archive], uris: list[str], method: Method, env=None) -> Proc:
        argv = [self.kload, "image-archive", *[str(a.path) for a in archives], "--json", *method.extra,
                *self.cache_args(method.cache)]
        for u in uris:
            argv += ["-n", u]
        p = self.runner.run(argv, env=env)
        report = json.loads(p.out)
        if not report.get("ok"):
            raise BenchError(f"kload reported a failure: {[n['error'] for n in report['nodes'] if not n['ok']]}")
        p.report = report
        return p

    def baseline_run(self, archives: list[Archive], socks: list[str]) -> tuple[float, float]:
        """kind's method: archives one after another, each into every node at once."""
        wall, cpu = 0.0, 0.0
        for a in archives:
            w, procs = self.runner.group([(ctr(s, "images", "import", "--all-platforms", "--digests",
                                               "--snapshotter", SNAPSHOTTER, "-"), a.path) for s in socks])
            wall += w
            cpu += sum(p.cpu_total for p in procs)
        return wall, cpu

    def floor_run(self, thin: Path, socks: list[str]) -> tuple[float, float]:
        wall, procs = self.runner.group([(ctr(s, "images", "import", "--snapshotter", SNAPSHOTTER, "-"), thin)
                                         for s in socks])
        return wall, sum(p.cpu_total for p in procs)

    def preload(self, archive: Archive, uris: list[str]) -> list[NodeState]:
        """Loads `archive` into every node as a user would have: with kload, into a
        fresh cache that becomes the warm cache of the scenario (a kload without a
        cache: plain ctr import). Then collects the garbage and returns each node's
        state, which every run starts from."""
        socks = [sock_of(u) for u in uris]
        if self.has_cache:
            self.cache_serial += 1
            cache = self.work / f"cache-{self.cache_serial}"
            argv = [self.kload, "image-archive", str(archive.path), "--cache", str(cache)]
            for u in uris:
                argv += ["-n", u]
            self.runner.run(argv)
            snapshot = self.work / f"cache-warm-{self.cache_serial}"
            shutil.copytree(cache, snapshot)
            self.warm_snapshot = snapshot
        else:
            self.runner.group([(ctr(s, "images", "import", "--snapshotter", SNAPSHOTTER, "-"), archive.path)
                               for s in socks])
        states = []
        for s in socks:
            collect_garbage(self.runner, s)
            states.append(node_state(self.runner, s))
        os.sync()
        return states

    def record_kload(self, sc: Scenario, method: str, p: Proc, input_bytes: int) -> None:
        row = sc.row(method)
        row.walls.append(p.wall)
        row.cpu_own.append(p.cpu_own)
        row.cpu_total.append(p.cpu_total)
        nodes = p.report["nodes"]
        row.bytes_sent = sum(n["bytesSent"] for n in nodes)
        row.layer_bytes = sum(n["layerBytesSent"] for n in nodes)
        # rchar counts kload's reads and those of the ctr clients it reaped; each ctr
        # import read exactly its stream (bytesSent) from its stdin.
        if input_bytes:
            row.input_passes = max(0, p.rchar - row.bytes_sent) / input_bytes
        row.reports.append(p.report)

    def first_load_methods(self, n: int) -> list[Method]:
        methods = [Method("kload", [], COLD)]
        if n > self.kload_node_jobs:
            methods.append(Method(f"kload -j {n}", ["-j", str(n)], COLD))
        return methods

    def reload_methods(self) -> list[Method]:
        if not self.has_cache:
            return [Method("kload", [], NO_CACHE)]
        return [Method("kload, warm cache", [], WARM), Method("kload --no-cache", [], NO_CACHE)]

    def traced(self, sc: Scenario, archives: list[Archive], uris: list[str], method: Method,
               capture: bool) -> Trace:
        """One extra kload run (not timed for the table) through the ctr wrapper: every
        ctr call it makes, with times, and node 1's import stream as the floor archive."""
        tag = f"{sc.key}-{len(sc.traces)}"
        trace_file = self.work / f"trace-{tag}.tsv"
        capture_file = self.work / f"floor-{tag}.tar"
        env = dict(os.environ)
        env["PATH"] = f"{self.shim_dir}:{env.get('PATH', '')}"
        env["KLOAD_BENCH_TRACE"] = str(trace_file)
        if capture:
            capture_file.unlink(missing_ok=True)
            env["KLOAD_BENCH_CAPTURE"] = str(capture_file)
            env["KLOAD_BENCH_CAPTURE_SOCK"] = sock_of(uris[0])
        p = self.kload_run(archives, uris, method, env=env)
        calls = []
        if trace_file.exists():
            for line in trace_file.read_text().splitlines():
                start, end, rc, sock, words = line.split("\t", 4)
                calls.append({"start": float(start), "end": float(end), "rc": int(rc), "sock": sock,
                              "kind": ctr_kind(words.split())})
        size = capture_file.stat().st_size if capture and capture_file.exists() else 0
        sent = p.report["nodes"][0]["bytesSent"]
        if size and size != sent:
            log(f"{sc.key}: captured {size} bytes, kload reported {sent} for node 1")
        t = Trace(method.label, sc.nodes, p.wall, p.report, calls, p.start, capture_file if size else None, size,
                  sock_of(uris[0]))
        sc.traces.append(t)
        return t

    # ------------------------------------------------ scenarios

    def first_load(self, sc: Scenario, archives: list[Archive]) -> None:
        """Fresh nodes for every run. The traced run comes first, so that its captured
        stream lets the floor take turns with the other methods run by run: slow drift
        in the machine's other load then hits every method alike."""
        n = sc.nodes
        sc.input_bytes = sum(a.size for a in archives)
        methods = self.first_load_methods(n)
        trace = self.traced(sc, archives, self.labs.up(sc.key, n), methods[0], capture=True)
        if trace.capture is None:
            raise BenchError(f"{sc.key}: the traced run captured no import stream")
        for r in range(self.runs):
            for what in rotated(["baseline", *methods, "floor"], r):
                uris = self.labs.up(sc.key, n)
                socks = [sock_of(u) for u in uris]
                if what == "baseline":
                    wall, cpu = self.baseline_run(archives, socks)
                    self.record_other(sc, "baseline", wall, cpu, sc.input_bytes * n)
                elif what == "floor":
                    wall, cpu = self.floor_run(trace.capture, socks)
                    self.record_other(sc, "floor", wall, cpu, trace.capture_size * n)
                else:
                    p = self.kload_run(archives, uris, what)
                    self.record_kload(sc, what.label, p, sc.input_bytes)
                    wall = p.wall
                log(f"{sc.key}: {getattr(what, 'label', what)} run {r + 1}: {wall:.2f} s")
        trace.capture.unlink()

    def reload(self, sc: Scenario, before: Archive, after: Archive) -> None:
        """Nodes hold `before` (loaded by kload, whose cache is the warm cache); load
        `after` with each method in turn, putting the nodes back into the same state
        after every run, every warm run starting from the same cache."""
        n = sc.nodes
        sc.reload = True
        sc.input_bytes = after.size
        methods = self.reload_methods()
        sc.primary = methods[0].label
        uris = self.labs.up(sc.key, n)
        socks = [sock_of(u) for u in uris]
        states = self.preload(before, uris)
        for i, method in enumerate(methods):
            self.traced(sc, [after], uris, method, capture=i == 0)
            restore(self.runner, socks, states)
        trace = sc.trace
        if trace.capture is None:
            sc.floor_zero = True
            row = sc.row("floor")
            row.walls = [0.0]
            row.note = "nothing to import"
        for r in range(self.runs):
            for what in rotated(["baseline", *methods] + ([] if sc.floor_zero else ["floor"]), r):
                os.sync()
                if what == "baseline":
                    wall, cpu = self.baseline_run([after], socks)
                    self.record_other(sc, "baseline", wall, cpu, after.size * n)
                elif what == "floor":
                    wall, cpu = self.floor_run(trace.capture, socks)
                    self.record_other(sc, "floor", wall, cpu, trace.capture_size * n)
                else:
                    p = self.kload_run([after], uris, what)
                    self.record_kload(sc, what.label, p, sc.input_bytes)
                    wall = p.wall
                log(f"{sc.key}: {getattr(what, 'label', what)} run {r + 1}: {wall:.3f} s")
                restore(self.runner, socks, states)
        if trace.capture is not None:
            trace.capture.unlink()

    def record_other(self, sc: Scenario, method: str, wall: float, cpu: float, sent: int) -> None:
        row = sc.row(method)
        row.walls.append(wall)
        row.cpu_total.append(cpu)
        row.bytes_sent = sent


    # ------------------------------------------------ the whole run

    def run(self) -> None:
        p = self.profile
        w = self.work
        log(f"generating inputs in {w}")
        app_v1 = mkimage(self.runner, self.kload, w / "app-v1.tar",
                         [("app:v1", p["app_base"] + [("app-top-v1", p["app_top"])])])
        app_v2 = mkimage(self.runner, self.kload, w / "app-v2.tar",
                         [("app:v2", p["app_base"] + [("app-top-v2", p["app_top"])])])
        sets = [mkimage(self.runner, self.kload, w / f"set-{i}.tar",
                        [(f"svc{i}:v1", p["set_base"] + [(f"svc{i}-top", p["set_top"])])])
                for i in range(p["set_images"])]
        small = mkimage(self.runner, self.kload, w / "small.tar", [("small:v1", p["small"])])
        self.inputs = {"app-v1": app_v1, "app-v2": app_v2, "set": sets, "small": small}
        only = set(self.args.only.split(",")) if self.args.only else None

        def want(key):
            return only is None or key in only or key.split("-")[0] in only

        mib = lambda b: f"{b / MiB:.0f} MiB"
        if want("first"):
            sc = Scenario("first", "first load", 3, f"app v1 ({mib(app_v1.size)}, 8 layers) into 3 empty nodes.")
            sc.expected_bytes = unique_bytes([app_v1]) * sc.nodes
            self.scenarios.append(sc)
            self.first_load(sc, [app_v1])
        if want("unchanged"):
            sc = Scenario("unchanged", "unchanged reload", 3,
                          "app v1 again into 3 nodes that already hold it" +
                          (" (loaded there by kload, so its cache is warm)." if self.has_cache else
                           " (this kload has no cache: no warm-cache row)."))
            sc.expected_bytes = 0
            self.scenarios.append(sc)
            self.reload(sc, app_v1, app_v1)
        if want("dev"):
            sc = Scenario("dev", "dev reload", 3, f"app v2 into 3 nodes that hold v1; v2 differs only in its "
                                                  f"{p['app_top']} MiB top layer.")
            top = app_v2.images[0]["layers"][-1]["size"]
            sc.expected_bytes = (top + app_v2.images[0]["manifest"]["size"] + app_v2.images[0]["config"]["size"]) * 3
            self.scenarios.append(sc)
            self.reload(sc, app_v1, app_v2)
        if want("set"):
            base = sum(s for _, s in p["set_base"])
            sc = Scenario("set", "image set", 3, f"{len(sets)} archives, one image each, sharing a {base} MiB base "
                                                 f"with an own {p['set_top']} MiB top layer, into 3 empty nodes; "
                                                 "kload takes all archives in one run, the baseline loads them one "
                                                 "by one, as `kind load image-archive` does.")
            sc.expected_bytes = unique_bytes(sets) * sc.nodes
            self.scenarios.append(sc)
            self.first_load(sc, sets)
        for n in p["scale"]:
            if want(f"scale-{n}"):
                sc = Scenario(f"scale-{n}", f"scaling, {n} node{'s' if n > 1 else ''}", n,
                              f"a small image ({mib(small.size)}, 3 layers) into {n} empty node(s).")
                sc.expected_bytes = unique_bytes([small]) * n
                self.scenarios.append(sc)
                self.first_load(sc, [small])


def rotated(items: list, r: int) -> list:
    """`items` starting at position r (mod len): run r's order of the methods."""
    k = r % len(items)
    return items[k:] + items[:k]


def ctr_kind(words: list[str]) -> str:
    """'images import' from 'ctr -a S --connect-timeout 5s -n k8s.io images import ... -'."""
    rest = []
    i = 0
    while i < len(words):
        if words[i] in ("-a", "--address", "--connect-timeout", "-n", "--namespace"):
            i += 2
            continue
        rest.append(words[i])
        i += 1
    if not rest:
        return "?"
    if rest[0] in ("images", "image", "content", "snapshots", "snapshot", "plugins", "plugin", "leases"):
        return " ".join(rest[:2])
    return rest[0]


# ---------------------------------------------------------------- the report


def fmt_s(x: float) -> str:
    if x != x:  # nan
        return "-"
    if x == 0:
        return "0"
    if x < 1:
        return f"{x:.3f}"
    if x < 10:
        return f"{x:.2f}"
    return f"{x:.1f}"


def fmt_bytes(b: int | None) -> str:
    if b is None:
        return "-"
    if b == 0:
        return "0 B"
    if b >= 10 * (1 << 30):
        return f"{b / (1 << 30):.1f} GiB"
    if b >= MiB:
        return f"{b / MiB:.1f} MiB"
    if b >= 1024:
        return f"{b / 1024:.1f} KiB"
    return f"{b} B"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


@dataclass
class Phases:
    """Where one traced kload run spent its time, from the ctr wrapper's log."""
    label: str
    wall: float
    startup: float  # process start to the first ctr call: exec, read/index the input
    plan: float  # first ctr call to the end of the last planning call
    plan_calls: float  # ctr processes per node before the import
    plan_call_s: float  # their summed duration per node
    hash_gap: float  # planning done -> first import: verify_blobs
    import_mean: float
    import_max: float
    post_calls: float  # ctr processes per node after its import
    post_call_s: float
    after_last: float  # last ctr call done -> process exit
    ctr_per_node: float  # ctr processes per node, counted by the wrapper
    reported_calls: float  # ctrCalls per node, as kload reports them
    listings: float | None  # full listings per node, as kload reports them
    sequence: list[str]  # node 1's ctr calls, in order
    kinds: dict[str, tuple[int, float]]


def phases(t: Trace | None) -> Phases | None:
    if t is None or not t.calls:
        return None
    calls = sorted(t.calls, key=lambda c: c["start"])
    imports = [c for c in calls if c["kind"] == "images import"]
    first_import = min((c["start"] for c in imports), default=None)
    before = [c for c in calls if first_import is None or c["start"] < first_import]
    after = [c for c in calls if first_import is not None and c["start"] > first_import and c not in imports]
    plan_end = max(c["end"] for c in before) if before else calls[0]["start"]
    n = max(1, t.nodes)
    kinds: dict[str, tuple[int, float]] = {}
    for c in calls:
        k, s = kinds.get(c["kind"], (0, 0.0))
        kinds[c["kind"]] = (k + 1, s + c["end"] - c["start"])
    durations = [c["end"] - c["start"] for c in imports]
    nodes = t.report["nodes"]
    return Phases(
        label=t.label,
        wall=t.wall,
        startup=calls[0]["start"] - t.start,
        plan=plan_end - calls[0]["start"],
        plan_calls=len(before) / n,
        plan_call_s=sum(c["end"] - c["start"] for c in before) / n,
        hash_gap=(first_import - plan_end) if first_import is not None else 0.0,
        import_mean=statistics.mean(durations) if durations else 0.0,
        import_max=max(durations) if durations else 0.0,
        post_calls=len(after) / n,
        post_call_s=sum(c["end"] - c["start"] for c in after) / n,
        after_last=(t.start + t.wall) - max(c["end"] for c in calls),
        ctr_per_node=len(calls) / n,
        reported_calls=sum(x["ctrCalls"] for x in nodes) / n,
        listings=sum(x["listings"] for x in nodes) / n if all("listings" in x for x in nodes) else None,
        sequence=[c["kind"] for c in calls if c["sock"] == t.node1],
        kinds=kinds,
    )


def machine_facts(kload: str, note: str) -> list[tuple[str, str]]:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    cpu = "?"
    for line in out(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
    commit = out(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    if note:
        what = f" ({note})"
    elif Path(kload) == (ROOT / "build" / "kload").resolve():
        what = f" (build/kload of the source tree at {commit})"
    else:
        what = f" (a binary given with --kload; the source tree is at {commit})"
    return [
        ("cores (nproc)", out(["nproc"])),
        ("CPU", cpu + (" (SHA-NI)" if "sha_ni" in Path("/proc/cpuinfo").read_text() else "")),
        ("memory", mem),
        ("kernel", platform.release()),
        ("containerd", out(["containerd", "--version"])),
        ("ctr", out(["ctr", "--version"])),
        ("kload", out([kload, "--version"]) + what),
        ("python", platform.python_version()),
    ]


def kload_rows(sc: Scenario) -> list[str]:
    return [m for m in sc.rows if m.startswith("kload")]


def write_results(bench: "Report", path: Path) -> None:
    L: list[str] = []
    add = L.append
    mode = "quick (small sizes, 1 run; a smoke test, not the figures)" if bench.quick else \
        f"full ({bench.runs} runs per method)"
    add("# kload end-to-end benchmark results")
    add("")
    add("Written by `bench/e2e.py`; do not edit by hand (re-run `tools/dev bench` or `bench/e2e.py`). "
        "Every figure below was measured in the same run, on the same machine, on `tools/lab` "
        "containerd nodes (overlayfs snapshotter, CRI disabled).")
    add("")
    add(f"Mode: {mode}. Run took {bench.minutes:.1f} min; "
        f"load average {bench.load_start} at the start, {bench.load_end} at the end "
        "(other work on the machine shows up as noise; compare ratios within this run).")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for k, v in bench.facts:
        add(f"| {k} | {v} |")
    add("")

    # ---- the table
    add("## Results")
    add("")
    add("Scenarios:")
    add("")
    for sc in bench.scenarios:
        add(f"* **{sc.title}** (`{sc.key}`): {sc.about}")
    add("")
    cache_text = ("kload rows of first loads use a fresh, empty cache directory per run (cold: every input "
                  "byte that is sent gets hashed); `warm cache` rows start from a copy of the cache as kload "
                  "left it after loading the nodes' starting state; `--no-cache` rows ask every node afresh. "
                  if bench.has_cache else
                  "This kload has no inventory cache: there is no warm-cache row. ")
    add("Wall: median of the runs (each run listed). Sent: bytes written to the nodes' "
        "import streams, all nodes together (baseline: archive size x nodes; kload: "
        "`bytesSent` summed from its `--json` report, layer payload in brackets from "
        "`layerBytesSent`; floor: the thin archive x nodes). kload CPU: user+sys of the kload "
        "process itself (10 ms resolution). Client CPU: user+sys of everything the loading side ran "
        "(kload with its ctr children; for the baseline and the floor, the ctr clients). The "
        "containerd daemons' own CPU is in none of them. Ratio: baseline wall / this wall. Over "
        "floor: this wall minus the floor's. " + cache_text)
    add("")
    add("| Scenario | Method | Nodes | Wall (s) | Runs (s) | Sent | kload CPU (s) | Client CPU (s) | Ratio "
        "| Over floor |")
    add("|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for sc in bench.scenarios:
        base = sc.rows.get("baseline")
        floor = sc.rows.get("floor")
        for m in ["baseline"] + kload_rows(sc) + ["floor"]:
            row = sc.rows.get(m)
            if row is None:
                continue
            label = {"baseline": "baseline (kind)", "floor": "floor"}.get(m, m)
            if sc.reload and not bench.has_cache and m == "kload":
                label += " (without cache)"
            sent = fmt_bytes(row.bytes_sent)
            if row.layer_bytes is not None:
                sent += f" [{fmt_bytes(row.layer_bytes)}]"
            if row.note:
                sent = row.note
            runs = ", ".join(fmt_s(x) for x in row.walls)
            r = fmt_s(ratio(base.wall, row.wall)) + "x" if base and m != "baseline" and row.wall > 0 else "-"
            over = "-"
            if floor and m.startswith("kload"):
                d = row.wall - floor.wall
                over = f"+{fmt_s(d)} s" if floor.wall == 0 else f"{d:+.2f} s ({100 * d / floor.wall:+.0f}%)"
            cpu = fmt_s(row.cpu) if row.cpu_own else "-"
            cpu_all = fmt_s(row.cpu_all) if row.cpu_total else "-"
            add(f"| {sc.title} | {label} | {sc.nodes} | {fmt_s(row.wall)} | {runs} | {sent} | {cpu} | {cpu_all} "
                f"| {r} | {over} |")
    add("")

    # ---- scaling
    scale = [sc for sc in bench.scenarios if sc.key.startswith("scale-")]
    if scale:
        add("### Scaling: kload's own CPU per node")
        add("")
        add("| Nodes | kload wall (s) | kload -j N wall (s) | baseline wall (s) | floor (s) | kload CPU (s) "
            "| kload CPU/node (ms) | client CPU/node (ms) | baseline client CPU/node (ms) | ctr processes/node |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for sc in scale:
            k = sc.rows["kload"]
            kj = sc.rows.get(f"kload -j {sc.nodes}")
            b = sc.rows["baseline"]
            ph = phases(sc.trace)
            add(f"| {sc.nodes} | {fmt_s(k.wall)} | {fmt_s(kj.wall) if kj else '-'} | {fmt_s(b.wall)} "
                f"| {fmt_s(sc.rows['floor'].wall)} | {fmt_s(k.cpu)} | {1000 * k.cpu / sc.nodes:.0f} "
                f"| {1000 * k.cpu_all / sc.nodes:.0f} | {1000 * b.cpu_all / sc.nodes:.0f} "
                f"| {ph.ctr_per_node if ph else float('nan'):.1f} |")
        add("")

    # ---- phases
    add("### Where kload's time goes (traced runs)")
    add("")
    add("From one extra kload run per scenario and kload method (not in the table above), with a "
        "`ctr` wrapper first in PATH that logs every ctr process kload starts (and tees node 1's "
        "import stream in the first traced run: that is the floor archive). Start: process start "
        "to its first ctr call (exec, reading/indexing the archives). Plan: first ctr call until "
        "every node is planned (ctr processes and their summed seconds per node). Hash: planning "
        "done to the first import (`verify_blobs`). Import: `ctr images import` per node, "
        "mean/max. After: ctr processes per node after its import (check, tag, rm, confirm). Exit: "
        "last ctr call to process exit. ctr/node: processes counted by the wrapper, with kload's "
        "own `ctrCalls` and `listings` in brackets. The wrapper costs a few ms per call.")
    add("")
    add("| Scenario | Wall (s) | Start | Plan: s (ctr/node, s/node) | Hash | Import mean/max | "
        "After: ctr/node, s/node | Exit | ctr/node (reported, listings) |")
    add("|---|---:|---:|---|---:|---|---|---:|---|")
    sequences = []
    for sc in bench.scenarios:
        for t in sc.traces:
            ph = phases(t)
            if ph is None:
                continue
            name = sc.key if len(sc.traces) == 1 else f"{sc.key} ({t.label})"
            listings = "-" if ph.listings is None else f"{ph.listings:.0f}"
            add(f"| {name} | {fmt_s(ph.wall)} | {fmt_s(ph.startup)} | {fmt_s(ph.plan)} ({ph.plan_calls:.1f}, "
                f"{fmt_s(ph.plan_call_s)}) | {fmt_s(ph.hash_gap)} | {fmt_s(ph.import_mean)} / "
                f"{fmt_s(ph.import_max)} | {ph.post_calls:.1f}, {fmt_s(ph.post_call_s)} | {fmt_s(ph.after_last)} "
                f"| {ph.ctr_per_node:.1f} ({ph.reported_calls:.1f}, {listings}) |")
            sequences.append(f"* {name}: " + ", ".join(f"`{k}`" for k in compress(ph.sequence)))
    add("")
    add("Node 1's ctr calls, in order:")
    add("")
    L.extend(sequences)
    add("")
    kinds: dict[str, list] = {}
    for sc in bench.scenarios:
        for t in sc.traces:
            ph = phases(t)
            if ph:
                for k, (count, secs) in ph.kinds.items():
                    kinds.setdefault(k, [0, 0.0])
                    kinds[k][0] += count
                    kinds[k][1] += secs
    if kinds:
        add("ctr calls by kind over all traced runs: " + "; ".join(
            f"`{k}` x{c} (mean {1000 * s / c:.0f} ms)" for k, (c, s) in sorted(kinds.items(), key=lambda x: -x[1][0]))
            + ".")
        add("")

    # ---- targets
    add("## Targets (issue 5)")
    add("")
    L.extend(reading(bench))
    add("")

    # ---- method
    add("## Method and commands")
    add("")
    L.extend(method_text(bench, bench.cmdline))
    write_keeping_via(path, "\n".join(L) + "\n")


def compress(kinds: list[str]) -> list[str]:
    """Runs of the same call as one 'kind x N'."""
    out: list[str] = []
    for k in kinds:
        if out and out[-1].split(" x")[0] == k:
            head, _, count = out[-1].partition(" x")
            out[-1] = f"{head} x{int(count or 1) + 1}"
        else:
            out.append(k)
    return out


def reading(bench: "Report") -> list[str]:
    by = {sc.key: sc for sc in bench.scenarios}
    out = ["| Target | Measured | Met |", "|---|---|---|"]

    def met(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    def others(sc: Scenario) -> str:
        """The other kload rows of a scenario, for context."""
        b = sc.rows["baseline"]
        rest = [m for m in kload_rows(sc) if m != sc.primary]
        if not rest:
            return ""
        return "; " + "; ".join(f"{m}: {ratio(b.wall, sc.rows[m].wall):.1f}x ({fmt_s(sc.rows[m].wall)} s)"
                                for m in rest)

    if "dev" in by:
        sc = by["dev"]
        k, b = sc.rows[sc.primary], sc.rows["baseline"]
        r = ratio(b.wall, k.wall)
        dev_bytes = k.bytes_sent / sc.expected_bytes - 1 if sc.expected_bytes else float("nan")
        out.append(f"| dev reload >= 20x faster than the baseline | {sc.primary}: {r:.1f}x ({fmt_s(b.wall)} s vs "
                   f"{fmt_s(k.wall)} s){others(sc)} | {met(r >= 20)} |")
        out.append(f"| dev reload bytes within 5% of nodes x (top layer + manifest + config) = "
                   f"{fmt_bytes(sc.expected_bytes)} | {fmt_bytes(k.bytes_sent)} ({100 * dev_bytes:+.2f}%; layer "
                   f"payload {fmt_bytes(k.layer_bytes)}) | {met(abs(dev_bytes) <= 0.05)} |")
    if "unchanged" in by:
        sc = by["unchanged"]
        k, b = sc.rows[sc.primary], sc.rows["baseline"]
        if bench.has_cache:
            out.append(f"| unchanged reload < 0.1 s with a warm cache, no layer bytes | {fmt_s(k.wall)} s, layer "
                       f"bytes {fmt_bytes(k.layer_bytes)} (baseline {fmt_s(b.wall)} s){others(sc)} "
                       f"| {met(k.wall < 0.1 and k.layer_bytes == 0)} |")
        else:
            out.append(f"| unchanged reload < 0.1 s with a warm cache, no layer bytes | no cache in this kload; "
                       f"**without** a cache: {fmt_s(k.wall)} s, layer bytes {fmt_bytes(k.layer_bytes)}; baseline "
                       f"{fmt_s(b.wall)} s | n/a |")
    if "set" in by:
        sc = by["set"]
        k, b = sc.rows[sc.primary], sc.rows["baseline"]
        r = ratio(b.wall, k.wall)
        over = k.bytes_sent / sc.expected_bytes - 1 if sc.expected_bytes else float("nan")
        out.append(f"| image set: bytes = unique bytes x nodes ({fmt_bytes(sc.expected_bytes)}) | "
                   f"{fmt_bytes(k.bytes_sent)} ({100 * over:+.2f}%: tar framing, index.json) "
                   f"| {met(abs(over) <= 0.01)} |")
        out.append(f"| image set: >= 4x faster than the archives one by one the kind way | {r:.2f}x "
                   f"({fmt_s(b.wall)} s vs {fmt_s(k.wall)} s) | {met(r >= 4)} |")
    if "first" in by:
        sc = by["first"]
        k, b = sc.rows[sc.primary], sc.rows["baseline"]
        r = ratio(b.wall, k.wall)
        out.append(f"| first load: ratio >= 0.95 | {r:.3f} ({fmt_s(b.wall)} s vs {fmt_s(k.wall)} s) "
                   f"| {met(r >= 0.95)} |")
        if k.input_passes is not None:
            out.append(f"| first load: input read once whatever the node count | kload read {k.input_passes:.2f}x "
                       f"the input size through read()/pread(): in place, once to hash it, then once more per "
                       f"node's stream (from the page cache here) | {met(k.input_passes < 1.5)} |")
    floor_rows = []
    within = []
    for sc in bench.scenarios:
        f = sc.rows.get("floor")
        k = sc.rows.get(sc.primary)
        if not f or not k:
            continue
        if sc.floor_zero:
            floor_rows.append(f"{sc.key}: floor 0 (nothing to send), kload {fmt_s(k.wall)} s")
            continue
        within.append(k.wall <= 1.1 * f.wall)
        floor_rows.append(f"{sc.key}: {100 * (k.wall / f.wall - 1):+.0f}% ({k.wall - f.wall:+.2f} s)")
    out.append(f"| kload within 10% of the floor in every scenario | {'; '.join(floor_rows)} "
               f"| {met(all(within) if within else None)} |")
    scale = [sc for sc in bench.scenarios if sc.key.startswith("scale-")]
    if len(scale) >= 2:
        per = [sc.rows["kload"].cpu / sc.nodes for sc in scale]
        out.append("| scaling: kload's own CPU per node roughly constant | " +
                   ", ".join(f"{sc.nodes}: {p * 1000:.0f} ms" for sc, p in zip(scale, per)) +
                   " (with its ctr clients: " +
                   ", ".join(f"{sc.nodes}: {sc.rows['kload'].cpu_all / sc.nodes * 1000:.0f} ms" for sc in scale) +
                   f") | {met(max(per) <= 2 * min(per) + 0.02)} |")
    out.append("")
    out.extend(explain(bench))
    return out


def unchanged_cache_text(sc: Scenario) -> str:
    """What the cache does on an unchanged reload, from the two traced runs."""
    warm = phases(next((t for t in sc.traces if t.label == "kload, warm cache"), None))
    cold = phases(next((t for t in sc.traces if t.label == "kload --no-cache"), None))
    text = ("The cache is not what makes this fast: the name check comes first and already finds every name "
            "in place, so warm and no-cache runs make the same single ctr call. ")
    if warm and cold and "kload --no-cache" in sc.rows:
        text += (f"The warm run even costs more ({fmt_s(sc.rows[sc.primary].wall)} s against "
                 f"{fmt_s(sc.rows['kload --no-cache'].wall)} s without the cache): after its last ctr call it "
                 f"spent {fmt_s(warm.after_last)} s before exiting, against {fmt_s(cold.after_last)} s without "
                 f"the cache, which is the cache being opened and written (LMDB commits, each synced to disk) "
                 f"although nothing changed. "
                 if sc.rows[sc.primary].wall > sc.rows["kload --no-cache"].wall else "")
    return text


def small_call_mean(bench: "Report") -> float:
    """Mean duration of every ctr call but imports, over all traced runs."""
    d = [c["end"] - c["start"] for sc in bench.scenarios for t in sc.traces for c in t.calls
         if c["kind"] != "images import"]
    return statistics.mean(d) if d else float("nan")


def explain(bench: "Report") -> list[str]:
    """A short reading of the numbers, from the traced runs' phases."""
    by = {sc.key: sc for sc in bench.scenarios}
    out = ["### Reading", ""]
    ph = {k: phases(sc.trace) for k, sc in by.items()}

    def seq(p: Phases) -> str:
        return ", ".join(compress(p.sequence))

    if "dev" in by and ph.get("dev"):
        sc, p = by["dev"], ph["dev"]
        k, f = sc.rows[sc.primary], sc.rows["floor"]
        out.append(f"* **Dev reload** ({sc.primary}). kload sends only the changed layer, so the nodes' work "
                   f"drops from re-reading and re-ingesting the whole archive "
                   f"({fmt_s(sc.rows['baseline'].wall)} s) to one thin import ({fmt_s(p.import_mean)} s per node "
                   f"in the traced run). The floor ({fmt_s(f.wall)} s) is that import alone; kload is "
                   f"{fmt_s(k.wall - f.wall)} s above it. In the traced run that time went to "
                   f"{p.plan_calls:.0f} ctr processes per node before the import ({fmt_s(p.plan)} s of wall), "
                   f"hashing the changed blobs ({fmt_s(p.hash_gap)} s), {p.post_calls:.0f} ctr processes per node "
                   f"after it ({fmt_s(p.post_call_s)} s per node), and {fmt_s(p.startup)} s of start-up and "
                   f"indexing. Node 1's calls: {seq(p)}. Each ctr process is a Go program start plus one RPC "
                   f"(the non-import calls averaged {1000 * small_call_mean(bench):.0f} ms over all traced runs).")
        nc = sc.rows.get("kload --no-cache")
        pn = phases(next((t for t in sc.traces if t.label == "kload --no-cache"), None))
        if nc and nc is not k and pn:
            out.append(f"  Without the cache the same reload took {fmt_s(nc.wall)} s: each node is listed "
                       f"({pn.plan_calls:.0f} ctr processes before the import instead of {p.plan_calls:.0f}; "
                       f"planning took {fmt_s(pn.plan)} s of wall against {fmt_s(p.plan)} s with the cache in the "
                       f"traced runs). The cache's saving is that difference, "
                       f"{fmt_s(pn.plan - p.plan)} s, less what it costs itself (opening it and committing "
                       f"what the load changed: {fmt_s(p.after_last)} s from the last ctr call to exit, against "
                       f"{fmt_s(pn.after_last)} s without), which is "
                       + ("within the run-to-run spread here." if abs(nc.wall - k.wall) < 0.1 * k.wall else
                          f"{'a gain' if nc.wall > k.wall else 'a loss'} of {fmt_s(abs(nc.wall - k.wall))} s in "
                          f"the medians."))
    if "unchanged" in by and ph.get("unchanged"):
        sc, p = by["unchanged"], ph["unchanged"]
        k = sc.rows[sc.primary]
        out.append(f"* **Unchanged reload** ({sc.primary}). kload asks each node once (node 1: {seq(p)}; all "
                   f"nodes at once) and sends nothing: {fmt_s(k.wall)} s against "
                   f"{fmt_s(sc.rows['baseline'].wall)} s for the kind method, which re-imports the whole archive "
                   f"into every node. In the traced run {fmt_s(p.startup)} s went to process start and indexing "
                   f"the archive and {fmt_s(p.plan)} s to that ctr round trip. " +
                   (unchanged_cache_text(sc) if bench.has_cache else "") +
                   ("That is under 0.1 s, with about one ctr round trip of margin."
                    if k.wall < 0.1 else
                    "Getting under 0.1 s needs no node call at all when the cache is fresh enough (or a "
                    "cheaper query than a ctr process)."))
    if "first" in by and ph.get("first"):
        sc, p = by["first"], ph["first"]
        k, b, f = sc.rows[sc.primary], sc.rows["baseline"], sc.rows["floor"]
        out.append(f"* **First load.** Every node needs every byte, so all three methods are bound by containerd "
                   f"ingesting and unpacking {fmt_bytes(bench.inputs['app-v1'].size)} per node at once on "
                   f"{bench.cores} cores: imports took {fmt_s(p.import_mean)} s per node (max "
                   f"{fmt_s(p.import_max)} s) in the traced run. Floor {fmt_s(f.wall)} s, baseline "
                   f"{fmt_s(b.wall)} s, kload {fmt_s(k.wall)} s. kload adds hashing the input before anything is "
                   f"sent ({fmt_s(p.hash_gap)} s, while every node waits), {p.plan_calls + p.post_calls:.0f} ctr "
                   f"processes per node around the import ({fmt_s(p.plan + p.post_call_s)} s), and "
                   f"{fmt_s(k.cpu)} s of its own CPU (hashing and writing the streams) competing with "
                   f"containerd for the cores. It reads the archive in place: once to hash it, then once more "
                   f"per node as it streams ({k.input_passes:.1f}x the input in all), from the page cache here.")
    if "set" in by and ph.get("set"):
        sc, p = by["set"], ph["set"]
        k, b, f = sc.rows[sc.primary], sc.rows["baseline"], sc.rows["floor"]
        out.append(f"* **Image set.** The kind way imports the shared base once per archive into every node "
                   f"({len(bench.inputs['set'])} times); kload sends the base and each top layer once, in one "
                   f"import per node ({fmt_s(p.import_mean)} s per node traced). kload {fmt_s(k.wall)} s vs floor "
                   f"{fmt_s(f.wall)} s: the difference is hashing ({fmt_s(p.hash_gap)} s before the first byte is "
                   f"sent) and {p.plan_calls + p.post_calls:.0f} ctr processes per node, most of them after the "
                   f"import, one tag per image ({fmt_s(p.post_call_s)} s per node).")
    scale = [sc for sc in bench.scenarios if sc.key.startswith("scale-")]
    if scale:
        last = scale[-1]
        pl = ph.get(last.key)
        k = last.rows["kload"]
        b = last.rows["baseline"]
        msg = ("* **Scaling.** kload's own CPU per node: " +
               ", ".join(f"{sc.nodes} node(s) {1000 * sc.rows['kload'].cpu / sc.nodes:.0f} ms" for sc in scale) +
               "; with the ctr clients it starts: " +
               ", ".join(f"{1000 * sc.rows['kload'].cpu_all / sc.nodes:.0f} ms" for sc in scale) +
               f" (the baseline's ctr clients: {1000 * b.cpu_all / last.nodes:.0f} ms per node at {last.nodes}).")
        if pl:
            msg += (f" Each node costs {pl.ctr_per_node:.0f} ctr processes against the baseline's one, and with "
                    f"{last.nodes} nodes on {bench.cores} cores those processes, not kload itself, set the "
                    f"wall time: {fmt_s(k.wall)} s vs floor {fmt_s(last.rows['floor'].wall)} s (planning alone "
                    f"took {fmt_s(pl.plan)} s of wall in the traced run).")
        out.append(msg)
    over = [(sc, sc.rows[sc.primary].wall - sc.rows["floor"].wall, sc.rows["floor"].wall) for sc in bench.scenarios
            if "floor" in sc.rows and sc.primary in sc.rows and not sc.floor_zero]
    if over:
        small = [x for x in over if x[2] < 5]
        large = [x for x in over if x[2] >= 5]
        msg = ("* **Over the floor.** kload's wall minus the floor's: " +
               ", ".join(f"{sc.key} {d:+.2f} s ({100 * d / f:+.0f}%)" for sc, d, f in over) + ".")
        if small:
            msg += (f" Where the import itself is short ({', '.join(sc.key for sc, _, _ in small)}) the gap is a "
                    f"fixed cost: the ctr processes around the import (7 to 10 per node, "
                    f"{1000 * small_call_mean(bench):.0f} ms each on average here), which is a large share of a "
                    f"sub-second or few-second import.")
        if large:
            msg += (f" Where the import is long ({', '.join(sc.key for sc, _, _ in large)}) the gap is the hash "
                    f"pass before the first byte is sent and kload's own CPU (hashing and writing the streams) "
                    f"taken from the {bench.cores} cores containerd is using.")
        out.append(msg)
    out.append("")
    out.append("What would close the gaps, from the traces: fewer ctr processes per node (the planning "
               "listing is four processes; after the import come a check, one tag per image, an rm and "
               "a confirming check; batching these, or talking to containerd's API over its socket "
               "instead of starting ctr, removes most of the overhead above the floor); and hashing while "
               "streaming instead of before (the stream writes index.json last, so a digest mismatch can "
               "still abort it before containerd creates any image), which takes the hash pass off the "
               "critical path of first loads.")
    return out


def method_text(bench: "Report", cmdline: str) -> list[str]:
    inputs = bench.inputs
    W = "$WORK"

    def rel(p: Path) -> str:
        return f"{W}/{p.name}"

    out = [f"Harness: `{cmdline}` (`$WORK` is its private temporary directory, removed at the end).",
           "",
           "Inputs (docker-save layout, deterministic; `--compressible 0.5`: half of every MiB is repeated "
           "text, half pseudo-random):",
           "",
           "```"]
    for a in [inputs["app-v1"], inputs["app-v2"], inputs["set"][0], inputs["small"]]:
        out.append(f"tools/mkimage {' '.join(a.mkimage_args)} {rel(a.path)}")
    n = len(inputs["set"])
    if n > 1:
        out.append(f"# ... and likewise set-1.tar .. set-{n - 1}.tar (svcI:v1, seed svcI-top)")
    out.append("```")
    out += ["",
            f"Archive sizes: app v1 {fmt_bytes(inputs['app-v1'].size)}, app v2 {fmt_bytes(inputs['app-v2'].size)}, "
            f"each set archive {fmt_bytes(inputs['set'][0].size)} ({n} archives, "
            f"{fmt_bytes(unique_bytes(inputs['set']))} unique), small {fmt_bytes(inputs['small'].size)}. "
            "All inputs sit in the page cache (just written; 24 GiB RAM), for every method alike.",
            "",
            "Nodes: `tools/lab up N $WORK/lab-SCENARIO --snapshotter overlayfs`, re-created (fresh, empty) "
            "before every run of a first-load scenario; `sync` before every timed run. Order: per scenario "
            "the traced kload run(s) first (they capture the floor archive), then run 1 of every method "
            "(baseline, kload rows, floor), run 2 of every method, and so on, each round starting one "
            "method later, so that drift in the machine's other load falls on all methods alike.",
            "",
            "```",
            "# kload (stdout: the JSON report; the harness times the process and reads its CPU",
            "# from /proc/PID/stat before reaping it, and the ctr children's from wait4)",
            f"build/kload image-archive ARCHIVE... --json [-j N] "
            + (f"--cache {W}/cache-K|--no-cache " if bench.has_cache else "")
            + f"-n containerd://{W}/lab-S/node1/sock?snapshotter=overlayfs -n ... (one -n per node)",
            "",
            "# baseline, kind's method: per archive, on every node at once, each reading the file",
            f"ctr -a {W}/lab-S/nodeI/sock --connect-timeout 5s -n k8s.io images import --all-platforms --digests "
            "--snapshotter overlayfs - < ARCHIVE",
            "",
            "# floor: on every node at once, the thin archive kload sent node 1 in the traced run",
            f"ctr -a {W}/lab-S/nodeI/sock --connect-timeout 5s -n k8s.io images import --snapshotter overlayfs "
            f"- < {W}/floor-S.tar",
            "```",
            "",
            "Reload scenarios: nodes are loaded once with app v1 " +
            ("by kload, as a user would have (`kload image-archive app-v1.tar --cache $WORK/cache-P -n ...`); "
             "a copy of that cache is the warm cache every `warm cache` run starts from (copied afresh for each "
             "run). " if bench.has_cache else
             "with a plain `ctr images import` (this kload has no cache). ") +
            "Then containerd's GC is run (`images tag` + `images rm --sync` of a "
            "throw-away name) and each node's names, content and snapshot count are recorded. Every "
            "method then runs on those nodes; after each run that changed them, the names the run "
            "added are removed with `ctr images rm --sync` (synchronous GC drops their blobs and "
            "snapshots) and the state is checked to be exactly the recorded one.",
            "",
            "First loads: kload with a fresh, empty cache directory per run. "
            "kload runs with its defaults otherwise (it serves up to "
            f"{bench.kload_node_jobs} nodes at once); where a scenario has more nodes than that, a "
            "`kload -j N` row shows it serving all nodes at once. The floor for the unchanged reload is "
            "0: nothing has to change on any node.",
            "",
            "Bytes read by kload (`input read once`): `rchar` of the kload process after it exited "
            "(it includes the ctr clients it reaped) minus the bytes those clients read from their "
            "import streams, divided by the input size.",
            ""]
    return out


# ---------------------------------------------------------------- raw data


@dataclass
class Report:
    """Everything the report is written from: what a run measured, nothing live, so
    that RESULTS.md can be written again from a saved run (--save-raw, --render)."""
    quick: bool
    runs: int
    cores: int
    has_cache: bool
    kload_node_jobs: int
    facts: list
    minutes: float
    load_start: str
    load_end: str
    cmdline: str
    inputs: dict
    scenarios: list


def report_of(bench: Bench, started: float, load_start: str, load_end: str, cmdline: str) -> dict:
    """The run as plain JSON-able data."""
    def archive(a: Archive) -> dict:
        d = asdict(a)
        d["path"] = a.path.name
        return d

    scenarios = []
    for sc in bench.scenarios:
        d = asdict(sc)
        for t in d["traces"]:
            t["capture"] = None  # the floor archive is gone after the run
        scenarios.append(d)
    return {
        "schema": "kload.e2e/v1",
        "quick": bench.args.quick,
        "runs": bench.runs,
        "cores": os.cpu_count() or 1,
        "has_cache": bench.has_cache,
        "kload_node_jobs": bench.kload_node_jobs,
        "facts": machine_facts(bench.kload, bench.args.note),
        "minutes": (time.time() - started) / 60,
        "load_start": load_start,
        "load_end": load_end,
        "cmdline": cmdline,
        "inputs": {"app-v1": archive(bench.inputs["app-v1"]), "app-v2": archive(bench.inputs["app-v2"]),
                   "set": [archive(a) for a in bench.inputs["set"]], "small": archive(bench.inputs["small"])},
        "scenarios": scenarios,
    }


def report_from(raw: dict) -> Report:
    def archive(d: dict) -> Archive:
        return Archive(Path(d["path"]), d["size"], d["images"], d["mkimage_args"])

    scenarios = []
    for d in raw["scenarios"]:
        rows = {k: Row(**v) for k, v in d["rows"].items()}
        traces = [Trace(**t) for t in d["traces"]]
        scenarios.append(Scenario(**{**d, "rows": rows, "traces": traces}))
    i = raw["inputs"]
    inputs = {"app-v1": archive(i["app-v1"]), "app-v2": archive(i["app-v2"]), "set": [archive(a) for a in i["set"]],
              "small": archive(i["small"])}
    return Report(raw["quick"], raw["runs"], raw["cores"], raw["has_cache"], raw["kload_node_jobs"],
                  [tuple(f) for f in raw["facts"]], raw["minutes"], raw["load_start"], raw["load_end"],
                  raw["cmdline"], inputs, scenarios)


# ---------------------------------------------------------------- main


def host_main() -> int:
    """The host-node mode (--host): kind's method re-enacted with ctr on tools/lab host nodes."""
    ap = argparse.ArgumentParser(prog="e2e.py --host", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs, 1 run: a smoke test (< 2 min)")
    ap.add_argument("--runs", type=int, default=0, help="runs per method (default 3, quick 1)")
    ap.add_argument("--kload", default=str(ROOT / "build" / "kload"), help="the kload binary (default build/kload)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="where to write the results")
    ap.add_argument("--only", default="", help="comma-separated scenarios: first,unchanged,dev,set,scale[-N]")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (inputs, traces) for a look")
    ap.add_argument("--note", default="", help="what the kload binary is, for RESULTS.md (e.g. its commit)")
    ap.add_argument("--save-raw", metavar="FILE", default="", help="also save the measurements as JSON")
    ap.add_argument("--render", metavar="FILE", default="",
                    help="measure nothing: write --out from measurements saved with --save-raw")
    args = ap.parse_args()
    if args.render:
        write_results(report_from(json.loads(Path(args.render).read_text())), Path(args.out))
        log(f"wrote {args.out} from {args.render}")
        return 0
    args.kload = str(Path(args.kload).resolve())
    if not os.access(args.kload, os.X_OK):
        print(f"e2e: no kload binary at {args.kload} (build first: tools/dev build)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("e2e: the lab's containerd nodes need root", file=sys.stderr)
        return 2
    cmdline = "bench/e2e.py --host" + (" --quick" if args.quick else "") + (f" --runs {args.runs}" if args.runs else "") + \
        (f" --only {args.only}" if args.only else "")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="kload-e2e."))
    # Every kload run names its cache explicitly; this keeps anything else away from the
    # user's own cache too.
    os.environ["KLOAD_CACHE"] = str(work / "cache-default")
    started = time.time()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    bench = None
    try:
        bench = Bench(args, work)
        bench.run()
        load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        raw = report_of(bench, started, load_start, load_end, cmdline)
        if args.save_raw:
            Path(args.save_raw).write_text(json.dumps(raw, indent=1, default=str) + "\n")
        write_results(report_from(json.loads(json.dumps(raw, default=str))), Path(args.out))
        log(f"wrote {args.out} in {(time.time() - started) / 60:.1f} min")
        return 0
    except BenchError as e:
        print(f"e2e: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("e2e: interrupted", file=sys.stderr)
        return 130
    finally:
        if bench:
            bench.runner.kill_all()
            bench.labs.down_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# ================================================================ Docker mode (default)
#
# The real `kind load image-archive` against kind-shaped Docker nodes running
# containerd 2.x (tools/lab up --docker), kload on the same nodes, and the floor, all
# in one run and interleaved run by run, so the machine's other load hits them alike.

KIND_SHIM = ROOT / "tools" / "kind-shim"
THIRDPARTY = ROOT / "tools" / "thirdparty"

# Sizes in MiB, bottom layer first; the last layer is the one a dev reload changes.
# Layer seeds are shared on purpose: the same SEED:SIZE is the same blob everywhere.
IMAGES = {
    1: [("one-a", "768K"), ("one-top", "256K")],
    32: [("mid-a", "16M"), ("mid-b", "8M"), ("mid-c", "4M"), ("mid-top", "4M")],
    64: [("q-a", "32M"), ("q-b", "16M"), ("q-c", "8M"), ("q-d", "4M"), ("q-top", "4M")],
    256: [("big-a", "120M"), ("big-b", "64M"), ("big-c", "32M"), ("big-d", "16M"), ("big-e", "8M"), ("big-f", "8M"),
          ("big-top", "8M")],
    1024: [("gig-a", "512M"), ("gig-b", "256M"), ("gig-c", "128M"), ("gig-d", "64M"), ("gig-e", "32M"), ("gig-f", "22M"),
           ("gig-top", "10M")],
}

DOCKER_PROFILES = {
    # first loads: (image MiB, nodes), onto fresh nodes and onto nodes kload knows (they
    # hold an unrelated image it loaded); reloads: image MiB, on reload_nodes nodes; and
    # the dev reload of issue #12's own target, a 1 GiB image whose 10 MiB top changed
    "default": {"runs": 3, "first": [(1, 1), (1, 3), (32, 1), (32, 3), (32, 10), (256, 1), (256, 3)],
                "known": [(1, 3), (32, 3)], "reload": 256, "reload_nodes": 3, "dev_large": 1024},
    "quick": {"runs": 1, "first": [(1, 1), (1, 3), (32, 1), (32, 3), (64, 1), (64, 3)], "known": [(1, 3)],
              "reload": 64, "reload_nodes": 3},
}

# issue #12's targets
TARGET_FIRST_VS_KIND = 1.0
TARGET_INPUT_READS = 1.1  # the archive's bytes read by kload, per archive byte (its metadata and headers too)
TARGET_INPUT_READS_FROM_MIB = 32  # judged from this image size up
TARGET_FIRST_OVER_FLOOR = 1.05
TARGET_DEV_VS_KIND = 30.0
TARGET_DEV_OVER_FLOOR = 1.10
TARGET_UNCHANGED_WALL = 0.05
TARGET_CALLS_COLD = 3
TARGET_CALLS_UNCHANGED = 1

# First on PATH for the traced runs only (bash start-up would tax every timed call): logs
# every docker call (start, end, exit code, argv, newlines made spaces) and tees the
# stdin of the first `docker exec -i NODE ctr ... import` (or of a `sh -c` batch that
# imports) into KLOAD_BENCH_CAPTURE (the argv beside it, NUL separated), which becomes
# the floor's stream. It calls the real docker by path, so
# the kind shim, which looks for the next docker on PATH, finds this one and not itself.
DOCKER_SHIM = r"""#!/usr/bin/env bash
real=@REAL@
start=$EPOCHREALTIME
target="" import=0
if [[ ${1:-} == exec ]]; then
  i=0
  for a in "$@"; do
    i=$((i + 1))
    [[ $a == import || $a == *"'images' 'import'"* ]] && import=1
  done
  args=("$@")
  for ((j = 1; j < ${#args[@]}; j++)); do
    [[ ${args[j]} == -* ]] && continue
    target=${args[j]}
    break
  done
fi
if [[ $import == 1 && -n ${KLOAD_BENCH_CAPTURE:-} && $target == "${KLOAD_BENCH_CAPTURE_NODE:-}" &&
      ! -e $KLOAD_BENCH_CAPTURE ]]; then
  printf '%s\0' "$@" > "$KLOAD_BENCH_CAPTURE.argv"
  tee "$KLOAD_BENCH_CAPTURE" | "$real" "$@"
  rc=${PIPESTATUS[1]}
else
  "$real" "$@"
  rc=$?
fi
printf '%s\t%s\t%s\t%s\t%s\n' "$start" "$EPOCHREALTIME" "$rc" "$target" "${*//$'\n'/ }" >> "$KLOAD_BENCH_TRACE"
exit $rc
"""


@dataclass
class DRow:
    """One scenario: every method's runs, in the order they ran."""
    key: str
    title: str
    kind: str  # first | dev | unchanged | docker-dev
    nodes: int
    image_mib: int
    archive_bytes: int = 0
    walls: dict[str, list[float]] = field(default_factory=dict)  # method -> runs
    kload_cpu: list[float] = field(default_factory=list)  # kload's own user+sys per run
    kload_calls: list[list[int]] = field(default_factory=list)  # ctrCalls per node, per run
    kload_reads: list[float] = field(default_factory=list)  # the input's bytes kload read, per archive byte, per run
    kload_sent: int = 0
    thin_bytes: int = 0  # the floor's stream, one node
    kind_docker_calls: float | None = None  # docker processes per node in kind's traced run
    kload_docker_calls: float | None = None  # the same for kload, from the same wrapper
    load: str = ""  # 1-minute load average when the scenario started
    kload_timeline: list[dict] = field(default_factory=list)  # node 1's docker calls in kload's traced run
    kind_timeline: list[dict] = field(default_factory=list)  # the same for kind
    busy: str = ""  # other_work() when the scenario started

    def wall(self, method: str) -> float:
        w = self.walls.get(method)
        return statistics.median(w) if w else float("nan")


class DockerLab:
    """One lab directory and cluster name, (re)started as often as a scenario needs."""

    def __init__(self, runner: Runner, work: Path, cluster: str):
        self.runner = runner
        self.dir = work / "lab"
        self.cluster = cluster
        self.started = False
        self.nodes: list[str] = []

    def up(self, n: int) -> list[str]:
        self.started = True
        p = self.runner.run([str(LAB), "up", str(n), str(self.dir), "--docker", "--containerd", "2.x", "--name",
                             self.cluster], timeout=300)
        self.nodes = [line.strip()[len("docker://"):] for line in p.out.splitlines()
                      if line.startswith("docker://")]
        if len(self.nodes) != n:
            raise BenchError(f"lab up {n} --docker printed {len(self.nodes)} nodes")
        os.sync()
        return self.nodes

    def down(self) -> None:
        if self.started:
            subprocess.run([str(LAB), "down", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=300, check=False)


def dctr(node: str, *args: str) -> list[str]:
    return ["docker", "exec", "-i", node, "ctr", "--connect-timeout", CONNECT_TIMEOUT, "-n", NAMESPACE, *args]


def dnode_state(runner: Runner, node: str) -> NodeState:
    names = set(runner.run(dctr(node, "images", "ls", "-q")).out.split())
    content = set(runner.run(dctr(node, "content", "ls", "-q")).out.split())
    snaps = runner.run(dctr(node, "snapshots", "--snapshotter", SNAPSHOTTER, "ls")).out.strip().splitlines()
    return NodeState(names, content, max(0, len(snaps) - 1))


def dcollect_garbage(runner: Runner, node: str) -> None:
    names = runner.run(dctr(node, "images", "ls", "-q")).out.split()
    if names:
        runner.run(dctr(node, "images", "tag", "--force", names[0], "localhost/e2e-gc:trigger"))
        runner.run(dctr(node, "images", "rm", "--sync", "localhost/e2e-gc:trigger"))


def drestore(runner: Runner, nodes: list[str], before: list[NodeState]) -> None:
    """Removes every name a run added (kind's stray import-DATE@sha256 names, the CRI's
    sha256:ID names included; the synchronous GC drops blobs and snapshots) and checks
    each node is back in its recorded state. The CRI adds its ID name asynchronously
    after an import, hence the retries."""
    for node, state in zip(nodes, before):
        now = None
        for attempt in range(6):
            names = set(runner.run(dctr(node, "images", "ls", "-q")).out.split())
            extra = sorted(names - state.names)
            if extra:
                runner.run(dctr(node, "images", "rm", "--sync", *extra))
            now = dnode_state(runner, node)
            if now.content != state.content:
                dcollect_garbage(runner, node)
                now = dnode_state(runner, node)
            if now.names == state.names and now.content == state.content and now.snapshots == state.snapshots:
                break
            time.sleep(0.5)
        else:
            raise BenchError(f"{node}: could not restore the node: {len(now.content)} blobs / {now.snapshots} "
                             f"snapshots / {len(now.names)} names, expected {len(state.content)} / "
                             f"{state.snapshots} / {len(state.names)}")


class DockerBench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.profile = DOCKER_PROFILES[args.profile]
        self.runs = args.runs or self.profile["runs"]
        self.kload = args.kload
        self.runner = Runner(work)
        self.lab = DockerLab(self.runner, work, args.cluster or f"kload-e2e-{os.getpid()}")
        self.rows: list[DRow] = []
        self.cache_serial = 0
        real_docker = shutil.which("docker")
        if not real_docker:
            raise BenchError("docker is not installed")
        kind_dir = subprocess.run([str(THIRDPARTY), "dir", "kind"], capture_output=True, text=True).stdout.strip()
        if not kind_dir or not os.access(Path(kind_dir) / "kind", os.X_OK):
            raise BenchError("no kind binary (tools/thirdparty dir kind)")
        self.kind = str(Path(kind_dir) / "kind")
        self.kind_version = subprocess.run([self.kind, "version"], capture_output=True, text=True).stdout.strip()
        trace_dir = work / "docker-shim"
        trace_dir.mkdir()
        (trace_dir / "docker").write_text(DOCKER_SHIM.replace("@REAL@", real_docker))
        (trace_dir / "docker").chmod(0o755)
        self.trace_dir = trace_dir
        path = os.environ.get("PATH", "")
        self.kind_env = {**os.environ, "PATH": f"{KIND_SHIM}:{path}"}
        self.kind_env_traced = {**os.environ, "PATH": f"{KIND_SHIM}:{trace_dir}:{path}"}
        self.kload_env_traced = {**os.environ, "PATH": f"{trace_dir}:{path}"}
        self.archives: dict[str, Archive] = {}

    # ------------------------------------------------ one run of each method

    def new_cache(self, warm: Path | None = None) -> Path:
        self.cache_serial += 1
        d = self.work / f"cache-{self.cache_serial}"
        if warm:
            shutil.copytree(warm, d)
        return d

    def kind_run(self, archive: Archive, env=None, image: str | None = None) -> Proc:
        """`kind load image-archive ARCHIVE`, or `kind load docker-image IMAGE`."""
        what = ["docker-image", image] if image else ["image-archive", str(archive.path)]
        return self.runner.run([self.kind, "load", *what, "--name", self.lab.cluster], env=env or self.kind_env)

    def kload_run(self, archive: Archive, cache: Path | None, env=None, image: str | None = None) -> Proc:
        what = ["docker-image", image] if image else ["image-archive", str(archive.path)]
        argv = [self.kload, *what, "--name", self.lab.cluster, "--json"]
        argv += ["--cache", str(cache)] if cache else ["--no-cache"]
        p = self.runner.run(argv, env=env)
        report = json.loads(p.out)
        if not report.get("ok"):
            raise BenchError(f"kload reported a failure: {p.out[-800:]}")
        p.report = report
        return p

    def floor_run(self, thin: Path, argv: list[str]) -> float:
        """One import per node, all at once, of the captured stream with kload's own ctr words."""
        target = argv.index(self.lab.nodes[0])
        jobs = [(argv[:target] + [node] + argv[target + 1:], thin) for node in self.lab.nodes]
        wall, _ = self.runner.group(jobs)
        return wall

    def traced(self, row: DRow, archive: Archive, cache: Path | None) -> tuple[Path | None, list[str]]:
        """An untimed kload run through the docker wrapper: its docker calls, and node 1's
        import stream (the floor archive); then, on nodes put back as they were, an
        untimed kind run for its docker calls."""
        tag = f"{row.key}"
        trace = self.work / f"trace-kload-{tag}.tsv"
        capture = self.work / f"floor-{tag}.tar"
        env = {**self.kload_env_traced, "KLOAD_BENCH_TRACE": str(trace), "KLOAD_BENCH_CAPTURE": str(capture),
               "KLOAD_BENCH_CAPTURE_NODE": self.lab.nodes[0]}
        p = self.kload_run(archive, cache, env=env)
        row.kload_docker_calls = self.count_exec(trace) / row.nodes
        row.kload_timeline = self.timeline(trace, p)
        argv: list[str] = []
        if capture.exists():
            argv = import_argv(["docker", *Path(str(capture) + ".argv").read_bytes().decode().split("\0")[:-1]])
            row.thin_bytes = capture.stat().st_size
            sent = p.report["nodes"][0]["bytesSent"]
            if row.thin_bytes != sent:
                log(f"{row.key}: captured {row.thin_bytes} bytes, kload reported {sent} for node 1")
        return (capture if capture.exists() else None), argv

    def count_exec(self, trace: Path) -> int:
        """docker processes aimed at one of the lab's nodes (exec, cp, inspect...)."""
        if not trace.exists():
            return 0
        n = 0
        for line in trace.read_text().splitlines():
            words = line.split("\t", 4)[4].split()
            if any(w in self.lab.nodes for w in words):
                n += 1
        return n

    def timeline(self, trace: Path, p: Proc) -> list[dict]:
        """Node 1's docker calls in a traced run: start (from the tool's own start), duration, what."""
        calls = []
        if not trace.exists():
            return calls
        for line in trace.read_text().splitlines():
            start, end, rc, target, words = line.split("\t", 4)
            if target != self.lab.nodes[0]:
                continue
            calls.append({"at": float(start) - p.start, "took": float(end) - float(start), "rc": int(rc),
                          "what": call_summary(words.split())})
        return sorted(calls, key=lambda c: c["at"])

    def kind_traced(self, row: DRow, archive: Archive) -> None:
        trace = self.work / f"trace-kind-{row.key}.tsv"
        p = self.kind_run(archive, env={**self.kind_env_traced, "KLOAD_BENCH_TRACE": str(trace)})
        row.kind_docker_calls = self.count_exec(trace) / row.nodes
        row.kind_timeline = self.timeline(trace, p)

    def record_kload(self, row: DRow, p: Proc) -> None:
        row.walls.setdefault("kload", []).append(p.wall)
        row.kload_cpu.append(p.cpu_own)
        nodes = p.report["nodes"]
        row.kload_calls.append([n.get("ctrCalls", -1) for n in nodes])
        row.kload_sent = sum(n["bytesSent"] for n in nodes)
        # rchar counts kload's read()/pread() and those of the docker clients it reaped,
        # which read every node's stream from their stdin; splice (the shared body's
        # copies) counts in neither. What is left is kload's reading of the input.
        if row.archive_bytes:
            row.kload_reads.append(max(0, p.rchar - row.kload_sent) / row.archive_bytes)

    # ------------------------------------------------ scenarios

    def first_load(self, row: DRow, archive: Archive) -> None:
        """Fresh nodes (a new lab) before every run of every method."""
        n = row.nodes
        row.load, row.busy = Path("/proc/loadavg").read_text().split()[0], other_work()
        self.lab.up(n)
        thin, argv = self.traced(row, archive, self.new_cache())
        if thin is None:
            raise BenchError(f"{row.key}: the traced kload run captured no import stream")
        self.lab.up(n)
        self.kind_traced(row, archive)
        for r in range(self.runs):
            for what in rotated(["kind", "kload", "floor"], r):
                self.lab.up(n)
                if what == "kind":
                    wall = self.kind_run(archive).wall
                    row.walls.setdefault("kind", []).append(wall)
                elif what == "kload":
                    p = self.kload_run(archive, self.new_cache())
                    self.record_kload(row, p)
                    wall = p.wall
                else:
                    wall = self.floor_run(thin, argv)
                    row.walls.setdefault("floor", []).append(wall)
                log(f"{row.key}: {what} run {r + 1}: {wall:.3f} s")
        thin.unlink()

    def put_back(self, before: Archive) -> None:
        """After a run that moved a name of `before` to another image: `before` loaded
        again (kload, no cache), so that the name and its blobs are as they were."""
        self.runner.run([self.kload, "image-archive", str(before.path), "--name", self.lab.cluster, "--no-cache"])

    def reload(self, row: DRow, before: Archive, after: Archive, image: str | None = None) -> None:
        """Nodes hold `before`, loaded by kload into a cache that every kload run starts
        from (a fresh copy); each run loads `after` (from the engine as `image` when
        given: it must be there under that name), then the nodes are put back."""
        n = row.nodes
        row.load, row.busy = Path("/proc/loadavg").read_text().split()[0], other_work()
        nodes = self.lab.up(n)
        cache = self.new_cache()
        self.runner.run([self.kload, "image-archive", str(before.path), "--name", self.lab.cluster, "--cache",
                         str(cache)])
        moved = bool(names_of(before) & names_of(after))
        warm = self.work / f"warm-{row.key}"
        shutil.copytree(cache, warm)
        states = []
        for node in nodes:
            dcollect_garbage(self.runner, node)
            states.append(dnode_state(self.runner, node))
        def restore() -> None:
            if moved:
                self.put_back(before)
            drestore(self.runner, nodes, states)

        thin, argv = None, []
        if image is None:
            thin, argv = self.traced(row, after, self.new_cache(warm))
            restore()
            self.kind_traced(row, after)
            restore()
        methods = ["kind", "kload", "kload --no-cache"] + (["floor"] if thin else [])
        for r in range(self.runs):
            for what in rotated(methods, r):
                os.sync()
                if what == "kind":
                    wall = self.kind_run(after, image=image).wall
                    row.walls.setdefault("kind", []).append(wall)
                elif what == "kload":
                    p = self.kload_run(after, self.new_cache(warm), image=image)
                    self.record_kload(row, p)
                    wall = p.wall
                elif what == "kload --no-cache":
                    wall = self.kload_run(after, None, image=image).wall
                    row.walls.setdefault(what, []).append(wall)
                else:
                    wall = self.floor_run(thin, argv)
                    row.walls.setdefault("floor", []).append(wall)
                log(f"{row.key}: {what} run {r + 1}: {wall:.3f} s")
                restore()
        if thin:
            thin.unlink()

    def archive(self, name: str, mib: int, top: str | None = None, ref: str | None = None,
                prefix: str = "") -> Archive:
        """An image of `mib` MiB in WORK/NAME.tar, named `ref` (default NAME's
        "app256-v1" as "app256:v1"); `top` gives its top layer another seed, `prefix`
        every layer (an image that shares no layer with the others)."""
        layers = [(prefix + seed, size) for seed, size in IMAGES[mib]]
        if top:
            seed, size = layers[-1]
            layers[-1] = (seed + "-" + top, size)
        out = self.work / f"{name}.tar"
        ref = ref or f"{name.split('-')[0]}:{name.split('-', 1)[1]}"
        args = ["--image", f"{ref}=" +
                ",".join(f"{seed}:{size}" for seed, size in layers), "--compressible", "0.5"]
        self.runner.run([sys.executable, str(MKIMAGE), *args, str(out)], timeout=600)
        info = json.loads(self.runner.run([self.kload, "inspect", "--json", str(out)]).out)
        return Archive(out, out.stat().st_size, info["images"], args)

    def run(self) -> None:
        p = self.profile
        only = set(self.args.only.split(",")) if self.args.only else None
        for mib, n in p["first"]:
            key = f"first-{mib}M-{n}"
            if only and "first" not in only and key not in only:
                continue
            a = self.archive(f"img{mib}-v1", mib)
            row = DRow(key, f"first load, {mib} MiB", "first", n, mib, a.size)
            self.rows.append(row)
            self.first_load(row, a)
        for mib, n in p.get("known", []):
            key = f"known-{mib}M-{n}"
            if only and "known" not in only and key not in only:
                continue
            # The nodes hold an unrelated image that kload loaded: kload has met them.
            base = self.archive("known-base", 1, prefix="known-")
            a = self.archive(f"img{mib}-v1", mib)
            row = DRow(key, f"first load onto known nodes, {mib} MiB", "first", n, mib, a.size)
            self.rows.append(row)
            self.reload(row, base, a)
        mib, n = p["reload"], p["reload_nodes"]
        v1 = self.archive(f"app{mib}-v1", mib)
        if not only or "dev" in only:
            # A rebuild under the same tag, as a developer reloads: the name moves.
            v2 = self.archive(f"app{mib}-v2", mib, top="v2", ref=f"app{mib}:v1")
            row = DRow("dev", f"dev reload, {mib} MiB", "dev", n, mib, v2.size)
            self.rows.append(row)
            self.reload(row, v1, v2)
        large = p.get("dev_large")
        if large and (not only or "dev-large" in only):
            v1_large = self.archive(f"app{large}-v1", large)
            v2_large = self.archive(f"app{large}-v2", large, top="v2", ref=f"app{large}:v1")
            row = DRow("dev-large", f"dev reload, {large // 1024} GiB" if large % 1024 == 0 else f"dev reload, {large} MiB",
                       "dev", n, large, v2_large.size)
            self.rows.append(row)
            self.reload(row, v1_large, v2_large)
        if not only or "unchanged" in only:
            row = DRow("unchanged", f"unchanged reload, {mib} MiB", "unchanged", n, mib, v1.size)
            self.rows.append(row)
            self.reload(row, v1, v1)
        if not only or "docker-dev" in only:
            # The developer's loop itself: the rebuilt image is in the engine under the
            # tag the nodes hold, and both tools take it from there (docker save).
            v2 = self.archive(f"app{mib}-v2", mib, top="v2", ref=f"app{mib}:v1")
            row = DRow("docker-dev", f"docker-image dev reload, {mib} MiB", "docker-dev", n, mib, v2.size)
            self.rows.append(row)
            self.runner.run(["docker", "load", "-q", "-i", str(v2.path)], timeout=600)
            try:
                self.reload(row, v1, v2, image=f"app{mib}:v1")
            finally:
                self.runner.run(["docker", "rmi", f"app{mib}:v1"], check=False)


# ---------------------------------------------------------------- Docker-mode report


def names_of(archive: Archive) -> set[str]:
    return {name for image in archive.images for name in image.get("names", [])}


BATCH_STEP = re.compile(r"(?:^|\s)b; (.*?)(?: </dev/null)? ?; e(?: on)?(?=\s|$)")
# the one-by-one branch of a group of steps the script starts at the same time
BATCH_TOGETHER = re.compile(r'rm -rf "\$d"\s+else\s+(.*?)\s+fi(?=\s|$)', re.S)


def batch_groups(script: str) -> list[list[list[str]]]:
    """The steps of a kload node batch (`sh -c` script, see node/batch.h), in order,
    grouped: the steps of one group run at the same time; a lone step runs alone."""
    spans = [m.span(1) for m in BATCH_TOGETHER.finditer(script)]
    groups: list[list[list[str]]] = []
    last_span = None
    for m in BATCH_STEP.finditer(script):
        span = next((sp for sp in spans if sp[0] <= m.start(1) < sp[1]), None)
        words = shlex.split(m.group(1))
        if span is not None and span == last_span:
            groups[-1].append(words)
        else:
            groups.append([words])
        last_span = span
    return groups


def batch_steps(script: str) -> list[list[str]]:
    """The words of each step of a kload node batch, in order."""
    return [step for group in batch_groups(script) for step in group]


def import_argv(argv: list[str]) -> list[str]:
    """`docker exec -i NODE sh -c SCRIPT` -> `docker exec -i NODE` + the import step's
    own words: the floor runs only the import of the batch that sent the stream."""
    if "sh" not in argv or argv.index("sh") + 2 >= len(argv):
        return argv
    at = argv.index("sh")
    for words in batch_steps(argv[at + 2]):
        if "import" in words:
            return argv[:at] + words
    return argv


def call_summary(words: list[str]) -> str:
    """`docker exec -i NODE ctr --connect-timeout 5s -n k8s.io images import ... -` -> `ctr images import`."""
    with_value = {"-n", "--namespace", "-a", "--address", "--connect-timeout", "--snapshotter", "--platform",
                  "--index-name", "--label", "-e", "--env", "-u", "--user", "-w", "--workdir"}
    try:
        i = words.index("exec") + 1
    except ValueError:
        return " ".join(words[:2])
    # skip docker exec's own options and the container
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in with_value else 1
    i += 1
    if i + 1 < len(words) and words[i] == "sh" and words[i + 1] == "-c":
        # a batch: its steps, each summarised as one call would be
        def step_summary(step: list[str]) -> str:
            if step[:1] != ["sh"]:
                return call_summary(["exec", "NODE", *step])
            # kload's own sh steps: the gate runs `ctr images check` as separate words
            return "gate (ctr images check)" if "check" in step else "uuid check"

        parts = []
        for group in batch_groups(" ".join(words[i + 2:])):
            together = " & ".join(step_summary(step) for step in group)
            parts.append(f"({together})" if len(group) > 1 else together)
        return "batch: " + " + ".join(parts)
    out = []
    while i < len(words) and len(out) < 3:
        w = words[i]
        if w.startswith("-"):
            i += 2 if w in with_value and "=" not in w else 1
            continue
        out.append(w)
        i += 1
        if out[0] != "ctr" and len(out) == 2:
            break
    return " ".join(out)


def timeline_text(calls: list[dict]) -> str:
    return "; ".join(f"+{c['at']:.2f} s {c['what']} ({c['took']:.2f} s{'' if c['rc'] == 0 else ', rc ' + str(c['rc'])})"
                     for c in calls) or "-"


def docker_facts(bench: DockerBench) -> list[tuple[str, str]]:
    facts = [f for f in machine_facts(bench.kload, bench.args.note) if f[0] not in ("containerd", "ctr")]

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    node_ctrd = "?"
    if bench.lab.nodes:
        node_ctrd = out(["docker", "exec", bench.lab.nodes[0], "containerd", "--version"])
    facts += [("Docker engine", out(["docker", "version", "--format", "{{.Server.Version}}"])),
              ("node containerd", node_ctrd),
              ("node image", out(["docker", "inspect", "-f", "{{.Config.Image}}", bench.lab.nodes[0]])
               if bench.lab.nodes else "?"),
              ("kind", bench.kind_version)]
    return facts


def verdict(ok: bool, shortfall: str) -> str:
    return "met" if ok else f"**not met** ({shortfall})"


def targets_of(row: DRow) -> list[str]:
    """issue #12's targets for this row, each 'target: met' or with the shortfall."""
    kind, kload, floor = row.wall("kind"), row.wall("kload"), row.wall("floor")
    calls = max((max(c) for c in row.kload_calls), default=-1)
    out = []
    if row.kind == "first":
        r = kind / kload
        out.append(f">= {TARGET_FIRST_VS_KIND:.1f}x kind: " + verdict(r >= TARGET_FIRST_VS_KIND, f"{r:.2f}x"))
        f = kload / floor
        out.append(f"<= floor +5%: " + verdict(f <= TARGET_FIRST_OVER_FLOOR, f"+{(f - 1) * 100:.0f}%"))
        out.append(f"<= {TARGET_CALLS_COLD} calls/node: " + verdict(calls <= TARGET_CALLS_COLD, f"{calls}"))
        if row.kload_reads:
            reads = statistics.median(row.kload_reads)
            if row.image_mib >= TARGET_INPUT_READS_FROM_MIB:
                out.append(f"input read once ({reads:.2f}x): " + verdict(reads <= TARGET_INPUT_READS, f"{reads:.2f}x"))
            else:
                out.append(f"input read once: {reads:.2f}x, not judged under {TARGET_INPUT_READS_FROM_MIB} MiB "
                           "(reads that do not depend on the input, such as the docker clients' own, weigh in)")
    elif row.kind == "docker-dev":
        out.append("none set (kind's own loop, for comparison); "
                   f"<= {TARGET_CALLS_COLD} calls/node: " + verdict(calls <= TARGET_CALLS_COLD, f"{calls}"))
    elif row.kind == "dev":
        r = kind / kload
        out.append(f">= {TARGET_DEV_VS_KIND:.0f}x kind: " + verdict(r >= TARGET_DEV_VS_KIND, f"{r:.1f}x"))
        f = kload / floor
        out.append("<= floor +10%: " + verdict(f <= TARGET_DEV_OVER_FLOOR, f"+{(f - 1) * 100:.0f}%"))
        out.append(f"<= {TARGET_CALLS_COLD} calls/node: " + verdict(calls <= TARGET_CALLS_COLD, f"{calls}"))
    else:
        out.append(f"< {TARGET_UNCHANGED_WALL} s: " + verdict(kload < TARGET_UNCHANGED_WALL, f"{kload:.3f} s"))
        out.append(f"{TARGET_CALLS_UNCHANGED} call/node: " + verdict(calls <= TARGET_CALLS_UNCHANGED, f"{calls}"))
    return out


def write_docker_results(bench: DockerBench, path: Path, minutes: float, load_start: str, load_end: str,
                         others: str, cmdline: str) -> None:
    L = []
    a = L.append
    a("# kload end-to-end benchmark results")
    a("")
    a("Written by `bench/e2e.py`; do not edit by hand. Every figure below was measured in the same run, on the "
      "same machine, against kind-shaped Docker nodes running containerd 2.x (`tools/lab up N DIR --docker "
      "--containerd 2.x --name CLUSTER`: kind's node names and labels, kind's containerd configuration, CRI on).")
    a("")
    a(f"Command: `{cmdline}`. Profile {bench.args.profile}, {bench.runs} run(s) per method; the run took "
      f"{minutes:.1f} min. Load average {load_start} at the start, {load_end} at the end (the machine has "
      f"{os.cpu_count()} cores).")
    a("")
    if others:
        a(f"Other work ran on the machine at the same time: {others} Absolute times are noisy; the ratios "
          "compare methods that took turns within the same minutes.")
        a("")
    a("## Machine")
    a("")
    a("| | |")
    a("|---|---|")
    for k, v in docker_facts(bench):
        a(f"| {k} | {v} |")
    a("")
    a("## Methods")
    a("")
    a(f"* **kind**: the real `kind load image-archive ARCHIVE --name CLUSTER` ({bench.kind_version}), with "
      "`tools/kind-shim` first on PATH (it drops `--privileged` from `docker exec`, which this engine refuses; "
      "nothing else changes). kind asks each node for its snapshotter, then pipes the whole archive into "
      "`ctr images import --all-platforms --digests` on every node at once.")
    a("* **kload**: `build/kload image-archive ARCHIVE --name CLUSTER --json --cache DIR`, its defaults "
      "otherwise; first loads start from a fresh, empty cache directory each run; reloads from a fresh copy of "
      "the cache kload left when it loaded the nodes' starting state (`kload --no-cache` asks every node afresh).")
    a("* **floor**: one `docker exec -i NODE ctr ... images import ...` per node, all nodes at once, of exactly "
      "the thin archive kload sent, with kload's own ctr words: the stream is captured by a `docker` wrapper "
      "first on PATH during one untimed kload run per scenario (the same wrapper counts kind's and kload's "
      "docker processes per node in untimed runs).")
    a("* **docker-image dev reload**: the rebuilt image is in the engine (`docker load`, untimed) under the tag the "
      "nodes hold, and each tool takes it from there: `kind load docker-image IMAGE --name CLUSTER` (which runs "
      "`docker save` to a file, then imports all of it) against `kload docker-image IMAGE --name CLUSTER --json "
      "--cache DIR` (which asks the engine and the nodes first, then streams `docker save` and sends what the "
      "nodes lack). No floor: the stream is not an archive kload wrote.")
    a("* **First load onto known nodes**: the image is new to the nodes, which hold only an unrelated image that "
      "kload loaded (sharing no layer), so kload's cache knows them: what a developer meets when loading a new "
      "image into a cluster kload has loaded before. It runs as a reload (below); its kload --no-cache column "
      "is a first contact with live nodes.")
    a("* Reloads under a tag the nodes hold move that name: after each run the starting image is loaded again "
      "(kload, untimed) before the node is checked to be as it was.")
    a("* **Fresh nodes**: first loads re-create the lab (new containers) before every run of every method. "
      "Reloads load the starting image once with kload, run containerd's GC, record each node's names, blobs "
      "and snapshots, and after every run remove what the run added (`ctr images rm --sync`) and check the node "
      "is back in the recorded state.")
    a("* Methods take turns within each run (the order rotates run by run); wall is the median of the runs. "
      "kload CPU is user+sys of the kload process itself (not the docker/ctr clients it starts, not the "
      "daemons), divided by the nodes. Calls/node is the largest `ctrCalls` of any node in kload's `--json` "
      "report (processes kload starts on the node); the docker columns count, from the wrapper, docker "
      "processes naming a node, per node, for kind and kload. Input read once: `rchar` of the finished kload "
      "process (its read()/pread() calls and those of the docker clients it reaped, which read every node's "
      "stream from their stdin) less the streams' bytes, per archive byte; a body that several nodes share is "
      "copied to them by splice, which counts in neither.")
    a("")
    a("## Results")
    a("")
    a("| Scenario | Nodes | Image | kind (s) | kload (s) | floor (s) | kind / kload | kload / floor | "
      "kload calls/node | docker procs/node kind, kload | kload CPU/node (s) | Sent per node kind, kload | "
      "Targets (issue #12) |")
    a("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in bench.rows:
        kind, kload, floor = row.wall("kind"), row.wall("kload"), row.wall("floor")
        calls = max((max(c) for c in row.kload_calls), default=-1)
        cpu = statistics.median(row.kload_cpu) / row.nodes if row.kload_cpu else float("nan")
        cpu_s = f"{cpu:.3f}" if cpu > 0 else "< 0.01"  # /proc/PID/stat counts in 10 ms ticks
        floor_s = fmt_s(floor) if row.walls.get("floor") else "-" if row.kind == "docker-dev" else "0 (nothing to import)"
        kof = f"{kload / floor:.2f}x" if row.walls.get("floor") else "-"
        dk = "-" if row.kind_docker_calls is None else f"{row.kind_docker_calls:g}"
        dl = "-" if row.kload_docker_calls is None else f"{row.kload_docker_calls:g}"
        a(f"| {row.title} | {row.nodes} | {fmt_bytes(row.archive_bytes)} | {fmt_s(kind)} | {fmt_s(kload)} | "
          f"{floor_s} | {kind / kload:.2f}x | {kof} | {calls} | {dk}, {dl} | {cpu_s} | "
          f"{fmt_bytes(row.archive_bytes)}, {fmt_bytes(row.kload_sent // row.nodes)} | "
          f"{'; '.join(targets_of(row))} |")
    a("")
    a("Every run, in seconds (in the order run), with the machine's 1-minute load average and its busiest other "
      "processes (a `top` snapshot) when the scenario started:")
    a("")
    a("| Scenario | Nodes | " + " | ".join(["kind", "kload", "kload --no-cache", "floor"]) + " | load | busy |")
    a("|---|---:|---|---|---|---|---:|---|")
    for row in bench.rows:
        cells = [", ".join(fmt_s(w) for w in row.walls.get(m, [])) or "-"
                 for m in ["kind", "kload", "kload --no-cache", "floor"]]
        a(f"| {row.title} | {row.nodes} | " + " | ".join(cells) + f" | {row.load} | {row.busy or '-'} |")
    a("")
    a("Where the time goes: node 1's docker processes in one untimed run of each tool through the wrapper "
      "(start from the tool's own start, duration; the wrapper adds a bash start to each):")
    a("")
    a("| Scenario | Nodes | kind | kload |")
    a("|---|---:|---|---|")
    for row in bench.rows:
        a(f"| {row.title} | {row.nodes} | {timeline_text(row.kind_timeline)} | {timeline_text(row.kload_timeline)} |")
    a("")
    a("Images (tools/mkimage, docker-save layout, `--compressible 0.5`), layers bottom first; the dev reload "
      "changes only the top layer:")
    a("")
    for mib in sorted({r.image_mib for r in bench.rows}):
        a(f"* {mib} MiB: " + ", ".join(f"{s}" for _, s in IMAGES[mib]))
    a("")
    write_keeping_via(path, "\n".join(L) + "\n")


def other_work() -> str:
    """What else is busy right now: one `top` snapshot, processes at 10% CPU or more,
    grouped by command name."""
    try:
        lines = subprocess.run(["top", "-b", "-n", "1", "-o", "%CPU", "-w", "200"], capture_output=True, text=True,
                               timeout=10).stdout.splitlines()
    except OSError:
        return ""
    busy: dict[str, list[float]] = {}
    header = next((i for i, line in enumerate(lines) if line.split()[:1] == ["PID"]), None)
    if header is None:
        return ""
    for line in lines[header + 1:]:
        f = line.split()
        if len(f) < 12:
            continue
        try:
            cpu = float(f[8])
        except ValueError:
            continue
        if cpu >= 10 and f[11] != "top":
            busy.setdefault(f[11], []).append(cpu)
    return ", ".join(f"{len(v)} x {k} ({sum(v):.0f}% CPU)" for k, v in sorted(busy.items(), key=lambda kv: -sum(kv[1])))


def docker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="e2e.py", description="kload against the real `kind load image-archive` on "
                                 "Docker-hosted containerd 2.x nodes (tools/lab up --docker), with the floor; "
                                 "writes bench/RESULTS.md. --host runs the older host-node mode instead (see "
                                 "e2e.py --host --help).")
    ap.add_argument("--profile", choices=sorted(DOCKER_PROFILES), default="default",
                    help="default (3 runs, 1/32/256 MiB, ~12 min on 2 cores) or quick (1 run, 1/32/64 MiB, ~3 min)")
    ap.add_argument("--runs", type=int, default=0, help="runs per method (default: the profile's)")
    ap.add_argument("--kload", default=str(ROOT / "build" / "kload"), help="the kload binary (default build/kload)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="where to write the results")
    ap.add_argument("--only", default="", help="comma-separated: first, first-SIZEM-N, known, known-SIZEM-N, dev, dev-large, "
                                           "unchanged, docker-dev")
    ap.add_argument("--cluster", default="", help="the lab's cluster name (default kload-e2e-PID)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (inputs, traces)")
    ap.add_argument("--note", default="", help="what the kload binary is, for RESULTS.md (e.g. its commit)")
    ap.add_argument("--save-raw", metavar="FILE", default="", help="also save every scenario's measurements as JSON")
    args = ap.parse_args(argv)
    args.kload = str(Path(args.kload).resolve())
    if not os.access(args.kload, os.X_OK):
        print(f"e2e: no kload binary at {args.kload} (build first: tools/dev build)", file=sys.stderr)
        return 2
    cmdline = "bench/e2e.py" + (f" --profile {args.profile}" if args.profile != "default" else "") + \
        (f" --runs {args.runs}" if args.runs else "") + (f" --only {args.only}" if args.only else "")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="kload-e2e."))
    os.environ["KLOAD_CACHE"] = str(work / "cache-default")
    started = time.time()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    others = other_work()
    bench = None
    try:
        bench = DockerBench(args, work)
        bench.run()
        if args.save_raw:
            Path(args.save_raw).write_text(json.dumps([asdict(r) for r in bench.rows], indent=1) + "\n")
        load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        others_end = other_work()
        load1 = max(float(load_start.split()[0]), float(load_end.split()[0]))
        note = ""
        if load1 > 1.0 or others or others_end:
            note = (f"load average up to {load1:.2f} at the start or end of the run on {os.cpu_count()} cores"
                    + (f"; busiest other processes at the start: {others}" if others else "")
                    + (f"; at the end: {others_end}" if others_end else "") + ".")
        write_docker_results(bench, Path(args.out), (time.time() - started) / 60, load_start, load_end, note,
                             cmdline)
        log(f"wrote {args.out} in {(time.time() - started) / 60:.1f} min")
        return 0
    except BenchError as e:
        print(f"e2e: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("e2e: interrupted", file=sys.stderr)
        return 130
    finally:
        if bench:
            bench.runner.kill_all()
            bench.lab.down()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if "--host" in sys.argv[1:]:
        sys.argv.remove("--host")
        return host_main()
    return docker_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
