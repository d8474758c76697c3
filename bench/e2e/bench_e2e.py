#!/usr/bin/env python3
"""End-to-end throughput of Assay: a real coordinator, real `assay worker`
processes and real run processes, as a user meets them.

For each binary given with --assay LABEL=PATH (e.g. before=/tmp/assay-before
after=build/cli/assay), in one invocation and on the same machine:

  trivial   N runs of `true` submitted as one sweep; runs/s from the submit
            request to the coordinator's record of the last run's end
            (max runs.reported_at), and lease->running p50/p99 from
            run_events (the `leased` and `running` state events of each
            attempt, both stamped by the coordinator's clock).
  points    N runs that each write 100 metric lines through ASSAY_METRICS_FD
            (the normal metric protocol); runs/s and points/s the same way.
  latency   runs submitted one at a time, 50 ms apart, onto idle workers:
            lease->running p50/p99 at low load.

Each scenario gets a fresh coordinator (a temp SQLite file) and fresh
workers (--workers of --slots CPU slots each). Standard library only.

Each (binary, scenario) pair runs --repeat times, the binaries interleaved
(A B A B ...), and the table gives the median. Scenario directories are
deleted only when the benchmark exits: on ext4 without a journal (the
development machine's root filesystem) the inode allocator skips, one by
one, every inode freed in the last 60-360 s, so deleting one scenario's
~5,000 files made the next scenario's worker spend 2-3x the CPU per run.

  bench/e2e/bench_e2e.py --assay before=/tmp/assay-before --assay after=build/cli/assay

Compare binaries or worker options within one invocation: a second
invocation started within ~6 minutes of the first one's cleanup, in the
same directory, meets the inodes it freed (see above).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

POINTS_PER_RUN = 100


class Cluster:
    def __init__(self, assay, workers, slots, lease_wait, parent, worker_args=()):
        self.assay = assay
        self.dir = tempfile.mkdtemp(prefix="scenario-", dir=parent)
        subprocess.run([assay, "coordinator", "init", "--dir", self.dir], check=True,
                       stdout=subprocess.DEVNULL)
        self.user = open(os.path.join(self.dir, "user.token")).read().strip()
        self.db = os.path.join(self.dir, "assay.db")
        port_file = os.path.join(self.dir, "port")
        self.procs = []
        self.coord = self._spawn("coordinator", [
            assay, "coordinator", "--db", self.db, "--token-dir", self.dir,
            "--listen", "127.0.0.1:0", "--port-file", port_file, "--lease-ttl", "30"])
        deadline = time.time() + 20
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > deadline:
                raise RuntimeError("coordinator did not start: " + self.log("coordinator"))
            time.sleep(0.02)
        self.url = "http://127.0.0.1:" + open(port_file).read().strip()
        for i in range(workers):
            self._spawn("worker%d" % i, [
                assay, "worker", "--coordinator", self.url, "--token-file",
                os.path.join(self.dir, "worker.token"), "--id", "w%d" % i, "--gpus", "0",
                "--cpus", str(slots), "--lease-wait", str(lease_wait),
                "--work-dir", os.path.join(self.dir, "work%d" % i)] + list(worker_args))
        deadline = time.time() + 20
        while len(self.get("/v1/workers").get("workers", [])) < workers:
            if time.time() > deadline:
                raise RuntimeError("workers did not register")
            time.sleep(0.05)
        time.sleep(0.3)  # every lease loop parked on its long-poll

    def _spawn(self, name, argv):
        out = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def cpu(self):
        """CPU seconds so far: (coordinator, workers, their reaped runs)."""
        tick = os.sysconf("SC_CLK_TCK")
        out = []
        for p in self.procs:
            with open("/proc/%d/stat" % p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime are fields 14..17 (1-based).
            out.append([int(x) / tick for x in fields[11:15]])
        coord = sum(out[0][:2])
        workers = sum(sum(x[:2]) for x in out[1:])
        runs = sum(sum(x[2:]) for x in out[1:])
        return coord, workers, runs

    def log(self, name):
        try:
            return open(os.path.join(self.dir, name + ".log")).read()[-3000:]
        except OSError:
            return ""

    def _req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.user, "Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")

    def get(self, path):
        return self._req("GET", path)

    def post(self, path, body):
        return self._req("POST", path, body)

    def sql(self, q, args=()):
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=10)
        try:
            return con.execute(q, args).fetchall()
        finally:
            con.close()

    def close(self):
        # Workers first (SIGINT: drain), then the coordinator.
        for p in self.procs[1:] + self.procs[:1]:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[int(p * (len(v) - 1))]


def lease_to_running(c):
    rows = c.sql("""
        SELECT l.run_id, MIN(r.at) - l.at FROM run_events l JOIN run_events r
          ON r.run_id = l.run_id AND r.kind = 'state' AND r.to_state = 'running' AND r.id > l.id
        WHERE l.kind = 'state' AND l.to_state = 'leased'
          AND NOT EXISTS (SELECT 1 FROM run_events x WHERE x.run_id = l.run_id AND x.id > l.id
                          AND x.id < r.id AND x.kind = 'state' AND x.to_state = 'queued')
        GROUP BY l.id""")
    return [1e3 * d for _, d in rows]


def wait_done(c, sweeps, n, limit_s):
    marks = ",".join("?" * len(sweeps))
    q = ("SELECT COUNT(*) FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name IN (%s) "
         "AND r.state IN ('succeeded', 'failed', 'cancelled')" % marks)
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if c.sql(q, sweeps)[0][0] >= n:
            return True
        time.sleep(0.05)
    return False


def emit_command():
    # 100 metric lines from the shell's builtins, one write each. Braces are
    # doubled: the sweep substitutes {placeholders} and reads {{ as {.
    return ("i=0; while [ $i -lt %d ]; do echo \"{{\\\"step\\\": $i, \\\"metrics\\\": "
            "{{\\\"loss\\\": 0.$i}}}}\"; i=$((i+1)); done >&$ASSAY_METRICS_FD; : {x}" % POINTS_PER_RUN)


def sweep_run(c, name, n, command, points_per_run):
    spec = {"name": name, "command": command,
            "space": {"x": {"type": "grid", "values": list(range(n))}}, "max_attempts": 1}
    cpu0 = c.cpu()
    t0 = time.time()
    c.post("/v1/sweeps", spec)
    if not wait_done(c, [name], n, 600):
        raise RuntimeError("sweep %s did not finish: %s" % (name, c.log("worker0")))
    cpu = [b - a for a, b in zip(cpu0, c.cpu())]
    end, ok = c.sql("SELECT MAX(reported_at), SUM(state = 'succeeded') FROM runs")[0]
    points = c.sql("SELECT COUNT(*) FROM metrics")[0][0]
    wall = end - t0
    lr = lease_to_running(c)
    return {"runs": n, "succeeded": ok, "wall_s": wall, "runs_per_s": n / wall,
            "points": points, "points_per_s": points / wall,
            "expected_points": n * points_per_run,
            "l2r_p50_ms": pct(lr, 0.5), "l2r_p99_ms": pct(lr, 0.99),
            # CPU milliseconds per run: coordinator, worker daemons, run processes.
            "cpu_ms_per_run": [round(1e3 * x / n, 2) for x in cpu]}


def latency_run(c, n):
    for i in range(n):
        c.post("/v1/sweeps", {"name": "lat%d" % i, "command": "true", "max_attempts": 1})
        time.sleep(0.05)
    if not wait_done(c, ["lat%d" % i for i in range(n)], n, 120):
        raise RuntimeError("latency runs did not finish")
    lr = lease_to_running(c)
    return {"runs": n, "l2r_p50_ms": pct(lr, 0.5), "l2r_p99_ms": pct(lr, 0.99),
            "l2r_max_ms": max(lr)}


def one_scenario(path, sc, a, parent):
    words = path.split()
    c = Cluster(words[0], a.workers, a.slots, a.lease_wait, parent, words[1:])
    try:
        if sc == "trivial":
            return sweep_run(c, "trivial", a.runs, "true {x}", 0)
        if sc == "points":
            return sweep_run(c, "points", a.runs, emit_command(), POINTS_PER_RUN)
        if sc == "latency":
            return latency_run(c, a.latency_runs)
        raise SystemExit("unknown scenario " + sc)
    finally:
        c.close()


def median_result(rs):
    """The repetition with the median wall time (or median p99 for latency)."""
    key = "wall_s" if "wall_s" in rs[0] else "l2r_p99_ms"
    out = dict(sorted(rs, key=lambda r: r[key])[len(rs) // 2])
    out["repeats"] = len(rs)
    if key == "wall_s":
        out["runs_per_s_all"] = [round(r["runs_per_s"]) for r in rs]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assay", action="append", required=True,
                    help="LABEL=PATH of an assay binary (repeat to compare); words after PATH "
                    "are extra `assay worker` options, e.g. 'full=build/cli/assay --durability full'")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--lease-wait", type=float, default=5)
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--scenarios", default="trivial,points,latency")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each (binary, scenario), interleaved; the table gives the median")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    scenarios = a.scenarios.split(",")
    print("machine: %s, %d cores, %s; load average %s; %s UTC" % (
        platform.node(), os.cpu_count(), platform.platform(),
        " ".join("%.2f" % x for x in os.getloadavg()), time.strftime("%Y-%m-%d %H:%M",
                                                                      time.gmtime())))
    print("%d workers x %d slots, %d runs per sweep" % (a.workers, a.slots, a.runs))
    results = {}
    parent = tempfile.mkdtemp(prefix="assay-bench-e2e-")
    try:
        for rep in range(a.repeat):
            for sc in scenarios:
                for item in a.assay:
                    label, path = item.split("=", 1)
                    r = one_scenario(path, sc, a, parent)
                    r["load"] = os.getloadavg()[0]
                    results.setdefault((label, sc), []).append(r)
                    print("%-8s %-8s %s" % (label, sc, json.dumps(
                        {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})),
                        flush=True)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    results = {k: median_result(v) for k, v in results.items()}
    print()
    print("| binary | scenario | runs | runs/s (median; all) | points/s | lease->running p50 / p99 (ms) | CPU ms per run (coordinator + workers + runs) |")
    print("|---|---|---|---|---|---|---|")
    for (label, sc), r in results.items():
        rps = "%.0f" % r["runs_per_s"] if "runs_per_s" in r else "-"
        pps = "%.0f" % r["points_per_s"] if r.get("points") else "-"
        if "runs_per_s_all" in r:
            rps += " (%s)" % ", ".join(str(x) for x in r["runs_per_s_all"])
        cpu = r.get("cpu_ms_per_run")
        cpu_s = "%.2f + %.2f + %.2f = %.2f" % (cpu[0], cpu[1], cpu[2], sum(cpu)) if cpu else ""
        print("| %s | %s | %d | %s | %s | %.1f / %.1f | %s |" % (
            label, sc, r["runs"], rps, pps, r["l2r_p50_ms"], r["l2r_p99_ms"], cpu_s))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"%s/%s" % k: v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
