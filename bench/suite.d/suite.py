#!/usr/bin/env python3
"""Helpers of bench/suite (standard library only).

Subcommands:
  context REPO WORKDIR OUT.json      print the header lines, write the machine context as JSON
  get FILE PATH                      print one figure of a JSON file; PATH is dotted, a list element
                                     is picked by a field: "ops[op=copy].p99_us", "jobs[0].write.iops"
  redis-rps CSV                      print the mean requests/s of the tests in a redis-benchmark CSV
  redis-brief CSV [WORKDIR NAME]     one line per test: "SET 90,334 ops/s p99 0.743 ms", with
                                     redis-server's CPU per request when WORKDIR and NAME are given
  fio-brief FILE seq|4k              one line of figures of a fio JSON
  iperf-brief FILE                   one line of figures of an iperf3 JSON
  bench-brief FILE                   one line of figures of a candybox-bench JSON
  profile-summary PERF.data OUT.json summarise a perf recording of the node (perf report): CPU by
                                     thread kind and kernel/user, named kernel paths, top symbols
  profile-error OUT.json MESSAGE     write a summary that says why there is no profile
  profile-brief WORKDIR NAME...      one line per profile summary WORKDIR/NAME.profile.json
  report WORKDIR OUT.json            build the suite's JSON from the work dir, print the report
"""

import csv
import datetime
import json
import os
import platform
import re
import subprocess
import sys

SWEEP_FRACTIONS = [10, 25, 50, 75, 90, 100]
DURABILITY = ("node: acknowledged after fdatasync (default); redis durable peer: appendfsync always; "
              "redis GET/SET peer: no persistence")


def die(msg):
    print(f"suite.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die(f"cannot read JSON {path}: {e}")


def lookup(doc, path):
    """Dotted path; `name[k=v]` picks the list element whose field k equals v, `name[3]` an index."""
    cur = doc
    for part in path.split("."):
        sel = None
        if "[" in part and part.endswith("]"):
            part, sel = part[:-1].split("[", 1)
        if part:
            if not isinstance(cur, dict) or part not in cur:
                raise KeyError(part)
            cur = cur[part]
        if sel is not None:
            if "=" in sel:
                k, v = sel.split("=", 1)
                hits = [e for e in cur if isinstance(e, dict) and str(e.get(k)) == v]
                if not hits:
                    raise KeyError(f"[{sel}]")
                cur = hits[0]
            else:
                cur = cur[int(sel)]
    return cur


def opt(doc, path, default=None):
    try:
        v = lookup(doc, path)
    except (KeyError, IndexError, TypeError, ValueError):
        return default
    return default if v is None else v


# ---------------------------------------------------------------- formatting

def n0(x):
    return "n/a" if x is None else f"{x:,.0f}"


def mbs(x):
    return "n/a" if x is None else f"{x / 1e6:,.1f} MB/s"


def us(x):
    return "n/a" if x is None else f"{x:,.0f} µs"


def ratio_s(x):
    return "n/a" if x is None else f"{x:.2f}x"


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(headers, rows, align=None):
    """Plain text table; align is a string of 'l'/'r' per column."""
    cols = len(headers)
    align = align or "l" * cols
    width = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            width[i] = max(width[i], len(str(c)))

    def fmt(r):
        out = []
        for i, c in enumerate(r):
            c = str(c)
            out.append(c.rjust(width[i]) if align[i] == "r" else c.ljust(width[i]))
        return (" | ".join(out)).rstrip()

    lines = [fmt(headers), "-+-".join("-" * w for w in width)]
    lines += [fmt(r) for r in rows]
    return lines


# ---------------------------------------------------------------- context

def sh(*cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def first_line(text):
    return text.splitlines()[0] if text else None


def context(repo, workdir, out):
    commit = sh("git", "rev-parse", "--short", "HEAD", cwd=repo) or "unknown"
    if sh("git", "status", "--porcelain", "--untracked-files=no", cwd=repo):
        commit += "-dirty"
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = sh("stat", "-f", "-c", "%T", workdir)
    mount_fs = sh("findmnt", "-n", "-o", "FSTYPE", "-T", workdir)
    ctx = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "kernel": platform.release(),
        "nproc": int(sh("nproc") or os.cpu_count() or 0),
        "cpu_model": cpu,
        "workdir": workdir,
        "fs_type": fs,
        "mount_fs_type": mount_fs,
        "tools": {
            "fio": sh("fio", "--version"),
            "iperf3": first_line(sh("iperf3", "--version")),
            "redis_server": sh("redis-server", "--version"),
            "gnuplot": sh("gnuplot", "--version"),
        },
        "pinning": "servers (redis-server, iperf3 -s, candyboxd) and fio on core 0; load generators "
                   "(redis-benchmark, iperf3 -c, candybox-bench) on core 1",
        "durability": DURABILITY,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(ctx, f, indent=2)
    for line in header_lines(ctx):
        print(line)


def header_lines(ctx):
    fs = ctx.get("fs_type") or "unknown"
    if ctx.get("mount_fs_type") and ctx["mount_fs_type"] != fs:
        fs += f" (mounted as {ctx['mount_fs_type']})"
    return [
        f"date        {ctx['date_utc']}",
        f"commit      {ctx['commit']}",
        f"kernel      {ctx['kernel']}",
        f"cores       {ctx['nproc']} ({ctx.get('cpu_model') or 'unknown CPU'})",
        f"work dir    {ctx['workdir']} (file system: {fs})",
        f"durability  {ctx['durability']}",
    ]


# ---------------------------------------------------------------- raw readers

def redis_rows(path):
    rows = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                name = r.get("test")
                if not name:
                    continue
                rows[name] = {k: (float(v) if k != "test" else v) for k, v in r.items() if k}
    except (OSError, ValueError) as e:
        die(f"cannot read redis-benchmark CSV {path}: {e}")
    if not rows:
        die(f"no rows in redis-benchmark CSV {path}")
    return rows


def fio_seq(doc):
    job = lookup(doc, "jobs[0]")
    return {
        "bw_bytes_per_s": float(lookup(job, "write.bw_bytes")),
        "runtime_ms": opt(job, "write.runtime"),
        "io_bytes": opt(job, "write.io_bytes"),
        "error": opt(job, "error", 0),
    }


def fio_4k(doc):
    job = lookup(doc, "jobs[0]")
    sync = job.get("sync") or {}
    sync_lat = sync.get("lat_ns") or sync
    pct = sync_lat.get("percentile") or {}
    cpct = opt(job, "write.clat_ns.percentile", {})

    def p(d, k):
        v = d.get(k)
        return None if v is None else v / 1000.0

    return {
        "write_iops": float(lookup(job, "write.iops")),
        "write_clat_p50_us": p(cpct, "50.000000"),
        "write_clat_p99_us": p(cpct, "99.000000"),
        "fdatasync_p50_us": p(pct, "50.000000"),
        "fdatasync_p99_us": p(pct, "99.000000"),
        "fdatasync_count": sync_lat.get("N"),
        "runtime_ms": opt(job, "write.runtime"),
        "error": opt(job, "error", 0),
    }


def iperf(doc):
    return {
        "bytes_per_s": lookup(doc, "end.sum_received.bits_per_second") / 8.0,
        "sent_bytes_per_s": opt(doc, "end.sum_sent.bits_per_second", 0) / 8.0,
        "retransmits": opt(doc, "end.sum_sent.retransmits"),
        "seconds": opt(doc, "end.sum_received.seconds"),
    }


def bench_brief(doc):
    t = doc.get("total") or {}
    parts = [f"{n0(t.get('ops_per_s'))} ops/s"]
    if (t.get("bytes_per_s") or 0) >= 1e7:
        parts.append(mbs(t.get("bytes_per_s")))
    ops = doc.get("ops") or []
    if len(ops) > 1:
        for o in ops:
            parts.append(f"{o.get('op')} p50 {us(o.get('p50_us'))} p99 {us(o.get('p99_us'))}")
    else:
        parts.append(f"p50 {us(t.get('p50_us'))} p99 {us(t.get('p99_us'))} p99.9 {us(t.get('p999_us'))}")
    node = doc.get("node") or {}
    if node.get("fsyncs_per_op") is not None:
        parts.append(f"fsyncs/op {node['fsyncs_per_op']:.3f}")
    if node.get("ops_per_wal_fsync"):
        parts.append(f"ops/WAL fsync {node['ops_per_wal_fsync']:.1f}")
    ncpu = node_cpu(doc)
    if ncpu is not None:
        parts.append(f"node CPU {ncpu:,.2f} µs/op")
    g = gen_cpu(doc)
    if g is not None:
        parts.append(f"generator ({opt(doc, 'generator.path', '?')}) {g:,.2f} µs/op")
    errs = t.get("errors_total") or 0
    parts.append(f"errors {errs}")
    return ", ".join(parts)


# ---------------------------------------------------------------- report

NODE_SHAPES = [
    # file stem, label
    ("node-get-1k", "1 KiB get, 64 conns, depth 1"),
    ("node-get-1k-p16", "1 KiB get, 64 conns, depth 16"),
    ("node-put-1k", "1 KiB durable put, 64 conns"),
    ("node-get-64m", "64 MiB get, 1 conn"),
    ("node-put-64m", "64 MiB durable put, 1 conn"),
    ("node-copy-rename-1g", "copy+rename 1 GiB, 1 conn"),
    ("node-copy-rename-1k", "copy+rename 1 KiB, 1 conn"),
    ("node-get-1k-open50", "1 KiB get, open loop 50% of peak"),
]
PHASES = [
    ("build", 1, 1),
    ("machine limits (fio, iperf3)", 2, 4),
    ("Redis peer", 5, 7),
    ("node, 1 shard, default configuration (incl. open loop and sweep)", 8, 17),
    ("node, 1 shard, spin-before-park off (CPU per request)", 18, 25),
    ("node, 2 shards (incl. rename across shards)", 26, 30),
    ("before/after (bench/ab, base build included)", 31, 31),
]
TWO_SHARD = [
    ("shards2-get-1k", "1 KiB get, routing", "node-get-1k"),
    ("shards2-get-1k-norouting", "1 KiB get, --no-routing", "node-get-1k"),
    ("shards2-put-1k", "1 KiB durable put, routing", "node-put-1k"),
    ("shards2-put-1k-norouting", "1 KiB durable put, --no-routing", "node-put-1k"),
]
# Issue 13 (one commit log per shard): the rename across shards runs on the 2-shard node.
RENAME_ACROSS = "shards2-rename-across-1g"
# "The same as for a 1 KiB object within noise": the 1 GiB copy's p99 differs from the 1 KiB copy's
# by at most the larger of these (both runs 5 s on the same node, one connection).
COPY_NOISE_US = 100
COPY_NOISE_FRACTION = 0.25
ISSUE13_NOTE = ("Issue 13 rows come from the runs above: the 1 KiB put and 64 MiB put of the default "
                "configuration, the 50% point of the put sweep (3 s after 1 s of warm-up), the copy + rename "
                "runs of the 1-shard node (every rename there stays on its shard) and a run of renames on the "
                "2-shard node whose targets candybox-bench picks on the other shard (--rename-across-shards). "
                "Puts per fdatasync: candybox_group_commit_ops_total / candybox_wal_fsyncs_total, summed over "
                "the shards, read before and after the put run (warm-up included). Profiles: one more run of "
                "each shape (5 s) with perf record -g on the node's process for 4 s of it; shares of the node's "
                "samples; kernel paths include what they call, so they overlap.")
# A generator above this share of the node's CPU per request measures itself as much as the node.
GENERATOR_SHARE_MAX = 0.5
# An open-loop run is valid only when the generator kept its schedule.
OPEN_LOOP_LAG_P99_MAX_US = 100
SPIN_NOTE = ("Throughput, latency and CPU per request: the node's default configuration (spin-before-park "
             "on, 100 µs), the CPU of its idle spin subtracted (candybox_shard_spin_seconds_total: turns in "
             "which nothing but the spin ran), so throughput and CPU come from the same run. The run with "
             "spin-before-park off is shown beside it: switching it off is not neutral (a parked shard pays a "
             "wake-up per batch and gets smaller batches). Redis CPU per request: redis-server's utime + stime "
             "(/proc/<pid>/stat) over its own redis-benchmark run of that test alone, / requests.")


def read_tsv(path):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    rows.append(line.split("\t"))
    return rows


def target_table(targets):
    """The report's table of targets: figures, ratio, CPU per request against Redis's, met or not."""
    rows = []
    for t in targets:
        cpu_text = "-"
        if t.get("redis_cpu_us_per_op") is not None:
            cpu_text = (f"{cpu_s(t.get('node_cpu_us_per_op'))} / {cpu_s(t.get('redis_cpu_us_per_op'))}"
                        f" = {ratio_s(t.get('redis_over_node_cpu'))}")
        rows.append([t["shape"], t["node_text"], t["baseline_text"],
                     ratio_s(t["ratio"]) if t["ratio"] is not None else "-", cpu_text, t["target"],
                     "met" if t["met"] else "NOT MET"])
    return table(["shape", "node", "baseline", "ratio", "CPU µs/op node / Redis = Redis÷node", "target", "result"],
                 rows, "lllllll")


def node_cpu(doc):
    """The node's CPU µs per request over the measured window (the whole run when absent)."""
    v = opt(doc, "node_window.cpu_us_per_op") or opt(doc, "node.cpu_us_per_op")
    return v if v else None


def request_cpu(doc):
    """The node's CPU µs per request over the measured window, its idle spin subtracted."""
    v = opt(doc, "node_window.request_cpu_us_per_op") or opt(doc, "node.request_cpu_us_per_op")
    return v if v else None


def gen_cpu(doc):
    v = opt(doc, "generator.cpu_us_per_op")
    return v if v else None


def cpu_s(x):
    return "n/a" if x is None else f"{x:,.2f}"


def redis_cpu(work):
    """redis-cpu.tsv -> {name: {TEST: {...}}} with CPU per request."""
    try:
        with open(os.path.join(work, "clk-tck"), encoding="utf-8") as f:
            clk = float(f.read().strip())
    except (OSError, ValueError):
        clk = None
    out = {}
    for name, test, n, ticks in read_tsv(os.path.join(work, "redis-cpu.tsv")):
        n, ticks = int(n), int(ticks)
        secs = ticks / clk if clk else None
        out.setdefault(name, {})[test.upper()] = {
            "requests": n, "cpu_ticks": ticks, "clk_tck": clk, "cpu_s": secs,
            "cpu_us_per_op": None if secs is None or n == 0 else secs * 1e6 / n,
        }
    return out


def report(work, out):
    w = lambda name: os.path.join(work, name)  # noqa: E731
    ctx = load(w("context.json"))
    res = {
        "suite": "bench/suite",
        "context": ctx,
        "durability": {
            "node": "acknowledged after fdatasync (default configuration, no setting relaxed)",
            "redis_durable_peer": "appendonly yes, appendfsync always",
            "redis_peer": "no persistence (save '', appendonly no)",
        },
        "runs": SPIN_NOTE,
    }

    machine = {
        "fio_seq_write": dict(fio_seq(load(w("fio-seq.json"))),
                              args="--rw=write --bs=1M --size=1G --fdatasync=64 --end_fsync=1 "
                                   "--ioengine=psync --direct=0 (taskset -c 0)"),
        "fio_4k_fdatasync": dict(fio_4k(load(w("fio-4k.json"))),
                                 args="--rw=write --bs=4k --fdatasync=1 --size=256M --runtime=5 "
                                      "--time_based --ioengine=psync --direct=0 (taskset -c 0)"),
        "iperf3_loopback": dict(iperf(load(w("iperf3.json"))),
                                args="server taskset -c 0 iperf3 -s -1 -B 127.0.0.1; client taskset -c 1 "
                                     "iperf3 -c 127.0.0.1 -t 5 (one stream)"),
    }
    res["machine"] = machine

    redis_n = {r[0]: int(r[1]) for r in read_tsv(w("redis-n.tsv"))}
    rcpu = redis_cpu(work)
    rv = ctx.get("tools", {}).get("redis_server") or ""
    rv = next((x[2:] for x in rv.split() if x.startswith("v=")), rv)
    redis = {
        "version": rv or None,
        "args": "taskset -c 1 redis-benchmark -c 64 -d 1024 -r 10000 --csv -t TEST (one run per test); "
                "server taskset -c 0",
        "cpu_method": "redis-server utime + stime from /proc/<pid>/stat (clock ticks, getconf CLK_TCK) "
                      "read before and after each test's own redis-benchmark run, divided by its requests",
    }
    for key in ("plain", "pipelined16", "aof_always"):
        redis[key] = {"requests": redis_n.get(key), "tests": redis_rows(w(f"redis-{key}.csv")),
                      "cpu": rcpu.get(key, {})}
    res["redis"] = redis

    # ---- the node: default configuration (spin on), and the same shapes with spin off
    tries = []
    for t, stem, p99, lag, valid in read_tsv(w("open50-tries.tsv")):
        tries.append({"try": int(t), "stem": stem, "p99_us": float(p99), "send_lag_p99_us": float(lag),
                      "valid": valid == "1"})
    chosen = next((t for t in tries if t["valid"]), tries[-1] if tries else None)
    node = {}
    for stem, _label in NODE_SHAPES:
        if stem == "node-get-1k-open50":
            if chosen is None:
                die("no open-loop run (open50-tries.tsv is empty)")
            node[stem] = load(w(chosen["stem"] + ".json"))
        else:
            node[stem] = load(w(stem + ".json"))
    res["node"] = node
    off = {stem: load(w("off-" + stem + ".json")) for stem, _ in NODE_SHAPES}
    res["node_spin_off"] = off
    res["open_loop_tries"] = [dict(t, raw=load(w(t["stem"] + ".json"))) for t in tries]

    sweep = {"get": [], "put": []}
    for kind, frac, rate, stem in read_tsv(w("sweep.tsv")):
        d = load(w(stem + ".json"))
        t = d.get("total") or {}
        sweep[kind].append({
            "fraction_pct": int(frac),
            "offered_ops_per_s": float(rate),
            "achieved_ops_per_s": t.get("ops_per_s"),
            "p50_us": t.get("p50_us"), "p90_us": t.get("p90_us"), "p99_us": t.get("p99_us"),
            "p999_us": t.get("p999_us"), "max_us": t.get("max_us"),
            "errors_total": t.get("errors_total"),
            "send_lag_p99_us": opt(d, "send_lag.p99_us"),
            "raw": d,
        })
    res["sweep"] = sweep

    two = {}
    for stem, label, base in TWO_SHARD:
        d = load(w(stem + ".json"))
        one = opt(node[base], "total.ops_per_s")
        mine = opt(d, "total.ops_per_s")
        two[stem] = {"label": label, "ops_per_s": mine, "one_shard_ops_per_s": one,
                     "ratio_vs_one_shard": div(mine, one),
                     "forwards_per_op": opt(d, "node.forwards_per_op"), "raw": d}
    res["two_shards"] = two

    # ---- per shape: throughput on / off, CPU per request (spin on, idle spin subtracted), the
    # generator's share (same run)
    shapes = []
    for stem, label in NODE_SHAPES:
        on_d, off_d = node[stem], off[stem]
        g, n = gen_cpu(on_d), request_cpu(on_d)
        share = div(g, n)
        shapes.append({
            "stem": stem, "shape": label,
            "ops_per_s_spin_on": opt(on_d, "total.ops_per_s"),
            "ops_per_s_spin_off": opt(off_d, "total.ops_per_s"),
            "off_vs_on": div(opt(off_d, "total.ops_per_s"), opt(on_d, "total.ops_per_s")),
            "bytes_per_s_spin_on": opt(on_d, "total.bytes_per_s"),
            "bytes_per_s_spin_off": opt(off_d, "total.bytes_per_s"),
            "node_cpu_us_per_op": n,
            "node_cpu_us_per_op_spin_off": node_cpu(off_d),
            "node_cpu_us_per_op_spin_on": node_cpu(on_d),
            "generator_path": opt(on_d, "generator.path", "library"),
            "generator_cpu_us_per_op_spin_off": gen_cpu(off_d),
            "generator_cpu_us_per_op": g,
            "generator_vs_node_cpu": share,
            "generator_bound": share is not None and share > GENERATOR_SHARE_MAX,
        })
    res["shapes"] = shapes
    by_stem = {x["stem"]: x for x in shapes}

    # ---- targets
    def total(stem, f):
        return opt(node[stem], "total." + f)

    def op_p99(stem, op):
        return opt(node[stem], f"ops[op={op}].p99_us")

    def rcpu_of(key, test):
        return opt(redis[key]["cpu"], f"{test}.cpu_us_per_op")

    r_get = opt(redis["plain"]["tests"], "GET.rps")
    r_get16 = opt(redis["pipelined16"]["tests"], "GET.rps")
    r_aof = opt(redis["aof_always"]["tests"], "SET.rps")
    ip = machine["iperf3_loopback"]["bytes_per_s"]
    fseq = machine["fio_seq_write"]["bw_bytes_per_s"]

    def gen_note(stem):
        x = by_stem.get(stem) or {}
        share = x.get("generator_vs_node_cpu")
        if share is None:
            return "generator/node CPU n/a"
        flag = " CLIENT-BOUND" if x.get("generator_bound") else ""
        return f"generator/node CPU {share:.2f} ({x.get('generator_path')}){flag}"

    def headline(tid, stem, shape, base_v, base_what, tp_want, redis_key, redis_test, cpu_want, unit="ops/s"):
        node_v = total(stem, "ops_per_s" if unit == "ops/s" else "bytes_per_s")
        tp_ratio = div(node_v, base_v)
        fmt = mbs if unit == "bytes/s" else (lambda x: f"{n0(x)} ops/s")
        t = {"id": tid, "shape": shape, "node": node_v, "unit": unit, "baseline": base_v,
             "baseline_what": base_what, "ratio": tp_ratio, "target_ratio": tp_want,
             "throughput_met": tp_ratio is not None and tp_ratio >= tp_want,
             "node_text": fmt(node_v), "baseline_text": f"{fmt(base_v)} {base_what}",
             "generator": gen_note(stem), "generator_bound": (by_stem.get(stem) or {}).get("generator_bound"),
             "throughput_from": "default configuration (spin-before-park on)"}
        target = f">= {tp_want}x"
        met = t["throughput_met"]
        if redis_key:
            ncpu = (by_stem.get(stem) or {}).get("node_cpu_us_per_op")
            rc = rcpu_of(redis_key, redis_test)
            cpu_ratio = div(rc, ncpu)  # Redis ÷ node: >= 1 means the node spends less per request
            t.update({"node_cpu_us_per_op": ncpu, "redis_cpu_us_per_op": rc,
                      "redis_over_node_cpu": cpu_ratio, "cpu_target_redis_over_node": cpu_want,
                      "cpu_met": cpu_ratio is not None and cpu_ratio >= cpu_want,
                      "cpu_from": "the same run, its idle spin subtracted"})
            target += f", Redis÷node CPU >= {cpu_want:.2f}"
            met = met and t["cpu_met"]
        t["target"] = target
        t["met"] = met
        return t

    targets = [
        headline("get_1k_depth16", "node-get-1k-p16", "1 KiB get, 64 conns, depth 16", r_get16,
                 "Redis GET -c 64 -P 16", 1.0, "pipelined16", "GET", 1.0),
        # node CPU/op <= 0.7 x Redis's  <=>  Redis / node >= 1 / 0.7
        headline("get_1k_depth1", "node-get-1k", "1 KiB get, 64 conns, depth 1", r_get,
                 "Redis GET -c 64", 1.5, "plain", "GET", 1 / 0.7),
        headline("get_64m_iperf", "node-get-64m", "64 MiB get, 1 conn", ip, "iperf3 loopback, 1 stream", 0.9,
                 None, None, None, unit="bytes/s"),
    ]
    valid = [t for t in tries if t["valid"]]
    ol_p99 = valid[0]["p99_us"] if valid else None
    rows = read_tsv(w("open50.tsv"))
    ol_rate = float(rows[0][0]) if rows else None
    tries_text = "; ".join(f"run {t['try']}: p99 {us(t['p99_us'])}, lag p99 {us(t['send_lag_p99_us'])}"
                           f"{'' if t['valid'] else ' INVALID'}" for t in tries)
    lags_text = ", ".join(n0(t["send_lag_p99_us"]) for t in tries)
    targets.append({
        "id": "get_1k_open_loop_50pct_p99", "shape": "1 KiB get, open loop at 50% of peak",
        "node": ol_p99, "unit": "µs", "offered_ops_per_s": ol_rate,
        "achieved_ops_per_s": opt(node["node-get-1k-open50"], "total.ops_per_s"),
        "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": f"p99 <= 1000 µs in a run with send lag p99 <= {OPEN_LOOP_LAG_P99_MAX_US} µs",
        "target_us": 1000, "met": ol_p99 is not None and ol_p99 <= 1000,
        "valid_run": valid[0]["try"] if valid else None, "tries": len(tries),
        "generator": gen_note("node-get-1k-open50"),
        "generator_bound": by_stem["node-get-1k-open50"]["generator_bound"],
        "tries_text": tries_text,
        "node_text": (f"p99 {us(ol_p99)} at {n0(ol_rate)} ops/s offered (run {valid[0]['try']} of {len(tries)})"
                      if valid else f"no valid run in {len(tries)} (send lag p99 {lags_text} µs)"),
        "baseline_text": "- (absolute)",
    })
    bound = [x["shape"] for x in shapes if x["generator_bound"]]
    unknown = [x["shape"] for x in shapes if x["generator_vs_node_cpu"] is None]
    targets.append({
        "id": "generator_cpu_half_of_node", "shape": "every shape",
        "node": None, "unit": "ratio", "baseline": None, "baseline_what": "the node's CPU per request",
        "ratio": max((x["generator_vs_node_cpu"] for x in shapes if x["generator_vs_node_cpu"] is not None),
                     default=None),
        "target": f"generator CPU/op <= {GENERATOR_SHARE_MAX}x node CPU/op",
        "met": not bound and not unknown,
        "client_bound_shapes": bound, "unknown_shapes": unknown,
        "node_text": ("within in every shape" if not bound
                      else f"CLIENT-BOUND in {len(bound)} of {len(shapes)} shapes (table below)")
                     + (f"; unknown in {len(unknown)}" if unknown else ""),
        "baseline_text": "the node's CPU/op (same runs)", "generator": "", "generator_bound": bool(bound),
    })
    res["targets"] = targets
    res["targets_met"] = sum(1 for t in targets if t["met"])
    res["targets_total"] = len(targets)

    # ---- the earlier targets, kept for comparison with earlier runs
    others = []

    def ratio_target(tid, shape, node_v, unit, base_v, base_what, want, stem, redis_cpu_v=None):
        r = div(node_v, base_v)
        fmt = mbs if unit == "bytes/s" else (lambda x: f"{n0(x)} ops/s")
        ncpu = (by_stem.get(stem) or {}).get("node_cpu_us_per_op")
        others.append({
            "id": tid, "shape": shape, "node": node_v, "unit": unit,
            "baseline": base_v, "baseline_what": base_what, "ratio": r,
            "target": f">= {want}x", "target_ratio": want, "met": r is not None and r >= want,
            "node_text": fmt(node_v), "baseline_text": f"{fmt(base_v)} {base_what}",
            "node_cpu_us_per_op": ncpu, "redis_cpu_us_per_op": redis_cpu_v,
            "redis_over_node_cpu": div(redis_cpu_v, ncpu),
            "generator": gen_note(stem), "generator_bound": (by_stem.get(stem) or {}).get("generator_bound"),
        })

    ratio_target("get_1k_unpipelined", "1 KiB get, 64 conns, depth 1", total("node-get-1k", "ops_per_s"),
                 "ops/s", r_get, "Redis GET -c 64", 1.5, "node-get-1k", rcpu_of("plain", "GET"))
    ratio_target("get_1k_pipelined16", "1 KiB get, 64 conns, depth 16", total("node-get-1k-p16", "ops_per_s"),
                 "ops/s", r_get16, "Redis GET -c 64 -P 16", 1.0, "node-get-1k-p16", rcpu_of("pipelined16", "GET"))
    ratio_target("put_1k_durable", "1 KiB durable put, 64 conns", total("node-put-1k", "ops_per_s"),
                 "ops/s", r_aof, "Redis SET appendfsync always", 2.0, "node-put-1k", rcpu_of("aof_always", "SET"))
    ratio_target("get_64m", "64 MiB get, 1 conn", total("node-get-64m", "bytes_per_s"),
                 "bytes/s", ip, "iperf3 loopback, 1 stream", 0.8, "node-get-64m")
    ratio_target("put_64m_durable", "64 MiB durable put, 1 conn", total("node-put-64m", "bytes_per_s"),
                 "bytes/s", fseq, "fio seq write, fdatasync/64 MiB", 0.8, "node-put-64m")
    cp, rn = op_p99("node-copy-rename-1g", "copy"), op_p99("node-copy-rename-1g", "rename")
    cp1k, rn1k = op_p99("node-copy-rename-1k", "copy"), op_p99("node-copy-rename-1k", "rename")
    others.append({
        "id": "copy_rename_1g_p99", "shape": "copy + rename of a 1 GiB object",
        "node": {"copy_p99_us": cp, "rename_p99_us": rn, "copy_1k_p99_us": cp1k, "rename_1k_p99_us": rn1k},
        "unit": "µs", "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": "p99 <= 1000 µs (copy and rename)", "target_us": 1000,
        "met": cp is not None and rn is not None and cp <= 1000 and rn <= 1000,
        "node_text": f"copy p99 {us(cp)}, rename p99 {us(rn)} (1 KiB: {us(cp1k)}, {us(rn1k)})",
        "baseline_text": "- (absolute)", "generator": gen_note("node-copy-rename-1g"),
        "generator_bound": by_stem["node-copy-rename-1g"]["generator_bound"],
    })
    res["other_targets"] = others
    res["other_targets_met"] = sum(1 for t in others if t["met"])

    # ---- issue 13: one commit log per shard
    across = load(w(RENAME_ACROSS + ".json"))
    res["shards2_rename_across"] = across
    issue13 = issue13_targets(node, sweep, across, machine, redis, by_stem, gen_note)
    for t in issue13:
        name = ISSUE13_PROFILES.get(t["id"])
        path = w(f"{name}.profile.json") if name else None
        t["profile_run"] = name
        t["profile"] = load(path) if path and os.path.exists(path) else None
        if t["id"] == "put_64m_vs_fio" and not t["met"]:
            t["bottleneck"] = (t.get("bottleneck") or "") + page_cache_copy_note(
                t["profile"], (by_stem.get("node-put-64m") or {}).get("node_cpu_us_per_op"))
    res["issue13_targets"] = issue13
    res["issue13_targets_met"] = sum(1 for t in issue13 if t["met"])
    res["issue13_targets_total"] = len(issue13)
    res["before_after"] = before_after(w(os.path.join("ab", "ab-latest.json")))

    timings = [{"step": int(s), "label": lab, "seconds": float(sec)} for s, lab, sec in read_tsv(w("timings.tsv"))]
    res["timings"] = timings
    groups = []
    for name, lo, hi in PHASES:
        secs = sum(t["seconds"] for t in timings if lo <= t["step"] <= hi)
        groups.append({"phase": name, "steps": f"{lo}-{hi}" if lo != hi else str(lo), "seconds": round(secs, 1)})
    res["phases"] = groups
    try:
        with open(w("wall-seconds"), encoding="utf-8") as f:
            res["wall_seconds_before_report"] = float(f.read().strip())
    except (OSError, ValueError):
        res["wall_seconds_before_report"] = None

    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    os.replace(out + ".tmp", out)

    # ---- printed report
    L = []
    L.append("Candybox benchmark suite (bench/suite)")
    L += header_lines(ctx)
    L.append(f"pinning     {ctx.get('pinning')}")
    L.append("")
    L.append(f"Targets ({res['targets_met']} of {res['targets_total']} met)")
    L += target_table(targets)
    for t in targets:
        if t.get("generator"):
            L.append(f"  {t['shape']}: {t['generator']}")
    L.append("")
    L += wrap("  " + SPIN_NOTE)
    L.append(f"  A generator above {GENERATOR_SHARE_MAX}x the node's CPU per request is flagged CLIENT-BOUND: "
             "that figure measures the client as much as the node.")

    L.append("")
    L.append(f"Issue 13 targets (commit log): {res['issue13_targets_met']} of {res['issue13_targets_total']} met "
             "(node on core 0, generator on core 1, default durability)")
    L += target_table(issue13)
    for t in issue13:
        notes = "; ".join(n for n in (t.get("detail"), t.get("generator")) if n)
        if notes:
            L += wrap(f"  {t['shape']}: {notes}")
        if t.get("bottleneck"):
            L += wrap(f"    NOT MET, bottleneck: {t['bottleneck']}")
        if not t["met"]:
            L += wrap(f"    profile ({t.get('profile_run') or 'none'}: perf -g of the node in a run of this shape): "
                      f"{profile_text(t.get('profile'))}")
    L += wrap("  " + ISSUE13_NOTE)
    L.append("")
    L += before_after_lines(res["before_after"])

    L.append("")
    L.append(f"Earlier targets ({res['other_targets_met']} of {len(others)} met; same runs)")
    L += target_table(others)

    L.append("")
    L.append("Spin-before-park on (default) vs off: throughput of each shape in both runs, CPU per request "
             "of the node (on: idle spin subtracted, and with it; off) and of the generator (on)")
    rows = []
    for x in shapes:
        if x["bytes_per_s_spin_on"] and x["bytes_per_s_spin_on"] >= 1e8:
            on, offv = mbs(x["bytes_per_s_spin_on"]), mbs(x["bytes_per_s_spin_off"])
        else:
            on, offv = n0(x["ops_per_s_spin_on"]), n0(x["ops_per_s_spin_off"])
        share = x["generator_vs_node_cpu"]
        rows.append([x["shape"], on, offv, ratio_s(x["off_vs_on"]), cpu_s(x["node_cpu_us_per_op"]),
                     cpu_s(x["node_cpu_us_per_op_spin_on"]), cpu_s(x["node_cpu_us_per_op_spin_off"]),
                     x["generator_path"], cpu_s(x["generator_cpu_us_per_op"]),
                     "n/a" if share is None else f"{share:.2f}" + (" CLIENT-BOUND" if x["generator_bound"] else "")])
    L += ["  " + x for x in table(["shape", "spin on", "spin off", "off/on", "node CPU µs/op (on, spin out)",
                                   "(on, incl. spin)", "(off)", "generator", "gen CPU µs/op (on)",
                                   "gen/node CPU"], rows, "lrrrrrrlrl")]

    L.append("")
    L.append("Machine limits")
    m = machine
    L.append(f"  fio seq write 1 MiB blocks, fdatasync every 64 MiB, 1 GiB: {mbs(m['fio_seq_write']['bw_bytes_per_s'])}")
    k = m["fio_4k_fdatasync"]
    L.append(f"  fio 4 KiB write + fdatasync each: {n0(k['write_iops'])} IOPS; write clat p50 {us(k['write_clat_p50_us'])}"
             f" p99 {us(k['write_clat_p99_us'])}; fdatasync p50 {us(k['fdatasync_p50_us'])}"
             f" p99 {us(k['fdatasync_p99_us'])}")
    L.append(f"  iperf3 loopback, one stream, 5 s: {mbs(ip)} ({ip * 8 / 1e9:.2f} Gbit/s)")

    L.append("")
    L.append(f"Redis peer (redis-server {redis['version'] or '?'} on core 0, redis-benchmark -c 64 -d 1024 -r 10000 "
             "on core 1, one run per test sized for about 3.5 s; server CPU from /proc/<pid>/stat)")
    rrows = []
    for key, what in (("plain", "unpipelined, no persistence"), ("pipelined16", "-P 16, no persistence"),
                      ("aof_always", "unpipelined, appendfsync always")):
        for test, r in redis[key]["tests"].items():
            c = redis[key]["cpu"].get(test) or {}
            rrows.append([f"{test} {what}", n0(r.get("rps")), f"{r.get('p50_latency_ms', 0) * 1000:,.0f}",
                          f"{r.get('p99_latency_ms', 0) * 1000:,.0f}", n0(redis[key]["requests"]),
                          cpu_s(c.get("cpu_us_per_op"))])
    L += ["  " + x for x in table(["test", "ops/s", "p50 µs", "p99 µs", "requests", "server CPU µs/op"], rrows,
                                  "lrrrrr")]

    L.append("")
    L.append("Node, 1 shard on core 0, default configuration (candybox-bench on core 1)")
    nrows = []
    for stem, label in NODE_SHAPES:
        d = node[stem]
        t = d.get("total") or {}
        nd = d.get("node") or {}
        fs = nd.get("fsyncs_per_op")
        gc = nd.get("ops_per_group_commit")
        nrows.append([label, n0(t.get("ops_per_s")), f"{(t.get('bytes_per_s') or 0) / 1e6:,.1f}",
                      n0(t.get("p50_us")), n0(t.get("p99_us")), n0(t.get("p999_us")), n0(t.get("errors_total")),
                      "n/a" if fs is None else f"{fs:.3f}", "-" if not gc else f"{gc:.1f}",
                      cpu_s(by_stem[stem]["node_cpu_us_per_op"])])
        for o in d.get("ops") or []:
            if len(d.get("ops")) > 1:
                nrows.append([f"  {o.get('op')}", n0(o.get("ops_per_s")), f"{(o.get('bytes_per_s') or 0) / 1e6:,.1f}",
                              n0(o.get("p50_us")), n0(o.get("p99_us")), n0(o.get("p999_us")),
                              n0(sum((o.get("errors") or {}).values())), "", "", ""])
    L += ["  " + x for x in table(["shape", "ops/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "errors",
                                   "fsyncs/op", "ops/commit", "node CPU µs/op (spin out)"], nrows, "lrrrrrrrrr")]
    L += wrap(f"  Open loop at {n0(ol_rate)} ops/s: {tries_text} (valid: send lag p99 <= "
              f"{OPEN_LOOP_LAG_P99_MAX_US} µs; the first valid run is the target's; the table's row is that run, "
              "or the last when none is valid)")

    L.append("")
    L.append("Latency vs offered load, open loop, 3 s per point (plot: bench/results/latency-vs-load.png)")
    srows = []
    for kind, label in (("get", "1 KiB get"), ("put", "1 KiB durable put")):
        for p in sweep[kind]:
            srows.append([label, f"{p['fraction_pct']}%", n0(p["offered_ops_per_s"]), n0(p["achieved_ops_per_s"]),
                          n0(p["p50_us"]), n0(p["p90_us"]), n0(p["p99_us"]), n0(p["p999_us"]),
                          n0(p["send_lag_p99_us"]), n0(p["errors_total"])])
    L += ["  " + x for x in table(["shape", "load", "offered ops/s", "achieved", "p50 µs", "p90 µs", "p99 µs",
                                   "p99.9 µs", "send lag p99 µs", "errors"], srows, "lrrrrrrrrr")]

    L.append("")
    L.append("Node, 2 shards sharing core 0 (candybox-bench on core 1)")
    trows = []
    for stem, label, _base in TWO_SHARD:
        x = two[stem]
        fpo = x["forwards_per_op"]
        t = x["raw"].get("total") or {}
        trows.append([label, n0(x["ops_per_s"]), ratio_s(x["ratio_vs_one_shard"]), n0(t.get("p99_us")),
                      "n/a" if fpo is None else f"{fpo:.3f}", n0(t.get("errors_total"))])
    L += ["  " + x for x in table(["shape", "ops/s", "vs 1 shard", "p99 µs", "forwards/op", "errors"], trows,
                                  "lrrrrr")]

    L.append("")
    L.append("Phase times")
    total_s = sum(t["seconds"] for t in timings)
    L += ["  " + x for x in table(["steps", "phase", "seconds"],
                                  [[g["steps"], g["phase"], f"{g['seconds']:.1f}"] for g in groups]
                                  + [["", "sum of the steps", f"{total_s:.1f}"],
                                     ["", "whole run up to the report (wall clock, with installs)",
                                      "n/a" if res["wall_seconds_before_report"] is None
                                      else f"{res['wall_seconds_before_report']:.1f}"]], "rlr")]
    L.append("")
    L.append(f"{res['targets_met']} of {res['targets_total']} targets met "
             f"({res['other_targets_met']} of {len(others)} earlier targets); issue 13: "
             f"{res['issue13_targets_met']} of {res['issue13_targets_total']} met.")
    print("\n".join(L))


def before_after(path):
    """bench/ab's results (part 7), or None when the part was skipped."""
    if not os.path.exists(path):
        return None
    d = load(path)
    return {k: d.get(k) for k in ("base", "new", "new_dirty", "rounds", "seconds", "shapes", "summary")}


def before_after_lines(ab):
    if ab is None:
        return ["Before/after: not measured (CANDYBOX_SUITE_AB_BASE=none)"]
    base, new = (ab.get("base") or "?")[:10], (ab.get("new") or "?")[:10]
    dirty = " + uncommitted changes" if ab.get("new_dirty") else ""
    which = " (the commit before issue 13)" if base.startswith("19b1bdb") else ""
    L = [f"Before/after: base {base}{which} vs this tree {new}{dirty}; "
         f"bench/ab, {ab.get('rounds')} round(s) of {ab.get('seconds')} s, binaries alternated, same generator"]
    rows = []
    for r in ab.get("summary") or []:
        rows.append([r.get("label") or r.get("shape"), n0(r.get("base_ops_per_s")), n0(r.get("new_ops_per_s")),
                     ratio_s(r.get("ops_ratio_new_over_base")),
                     cpu_s(r.get("base_node_cpu_us_per_op")), cpu_s(r.get("new_node_cpu_us_per_op")),
                     ratio_s(r.get("cpu_ratio_new_over_base"))])
    L += table(["shape", "base ops/s", "new ops/s", "new/base", "node CPU base", "node CPU new", "CPU new/base"],
               rows, align="lrrrrrr")
    L += wrap("  Medians over the rounds; node CPU is µs per request of the whole node process over the "
              "measured window (bench/ab). The put is the 1 KiB durable put of 64 connections on a Box of 8 "
              "partitions; copy + rename runs one connection.")
    return L


# The profile run (bench/suite's `profile` step) of each issue 13 target's shape.
ISSUE13_PROFILES = {
    "put_1k_durable_vs_redis_aof": "profile-put-1k",
    "put_1k_open_loop_50pct_p99": "profile-put-1k-open50",
    "copy_1g_p99": "profile-copy-rename-1g",
    "rename_1g_same_shard_p99": "profile-copy-rename-1g",
    "rename_across_shards_p99": "profile-rename-across-1g",
    "put_64m_vs_fio": "profile-put-64m",
}


def issue13_targets(node, sweep, across, machine, redis, by_stem, gen_note):
    """The targets of issue 13 (one commit log per shard), in the table style of the others."""
    out = []

    def p99(doc, op):
        return opt(doc, f"ops[op={op}].p99_us")

    def p50(doc, op):
        return opt(doc, f"ops[op={op}].p50_us")

    # 1 KiB durable put against Redis appendfsync always, with puts per fdatasync.
    put = node["node-put-1k"]
    nd = put.get("node") or {}
    put_ops = opt(put, "total.ops_per_s")
    r_aof = opt(redis["aof_always"]["tests"], "SET.rps")
    ratio = div(put_ops, r_aof)
    wal, commit_ops = nd.get("wal_fsyncs"), nd.get("group_commit_ops")
    per_sync = div(commit_ops, wal) if commit_ops else None
    ncpu = (by_stem.get("node-put-1k") or {}).get("node_cpu_us_per_op")
    rcpu = opt(redis["aof_always"]["cpu"], "SET.cpu_us_per_op")
    per_sync_text = "n/a" if per_sync is None else f"{per_sync:.1f}"
    out.append({
        "id": "put_1k_durable_vs_redis_aof", "shape": "1 KiB durable put, 64 conns, Box of 8 partitions",
        "node": put_ops, "unit": "ops/s", "baseline": r_aof, "baseline_what": "Redis SET appendfsync always",
        "ratio": ratio, "target": ">= 2.0x; puts per fdatasync reported", "target_ratio": 2.0,
        "met": ratio is not None and ratio >= 2.0 and per_sync is not None,
        "puts_per_fdatasync": per_sync, "group_commit_ops": commit_ops, "wal_fsyncs": wal,
        "syrup_fsyncs": nd.get("syrup_fsyncs"), "ops_per_group_commit": nd.get("ops_per_group_commit"),
        "puts_per_fdatasync_from": "candybox_group_commit_ops_total / candybox_wal_fsyncs_total (sum over the "
                                   "shards), after the run minus before it (warm-up included)",
        "node_text": f"{n0(put_ops)} ops/s, {per_sync_text} puts/fdatasync",
        "baseline_text": f"{n0(r_aof)} ops/s Redis SET appendfsync always",
        "node_cpu_us_per_op": ncpu, "redis_cpu_us_per_op": rcpu, "redis_over_node_cpu": div(rcpu, ncpu),
        "detail": (f"{n0(commit_ops)} puts committed in {n0(wal)} commit log fdatasyncs "
                   f"(+ {n0(nd.get('syrup_fsyncs'))} Syrup fdatasyncs), "
                   f"{(nd.get('ops_per_group_commit') or 0):.1f} puts per group commit"),
        "generator": gen_note("node-put-1k"),
        "generator_bound": (by_stem.get("node-put-1k") or {}).get("generator_bound"),
        "bottleneck": cpu_bottleneck(ncpu, put_ops, "put", None if r_aof is None else 2.0 * r_aof),
    })

    # 1 KiB durable put, open loop at 50% of the closed-loop peak: the put sweep's 50% point.
    pt = next((x for x in sweep.get("put", []) if x["fraction_pct"] == 50), None)
    ol = pt and pt.get("p99_us")
    lag = pt and pt.get("send_lag_p99_us")
    behind = lag is not None and lag > OPEN_LOOP_LAG_P99_MAX_US
    put_open_gen, put_open_share = generator_share((pt or {}).get("raw") or {})
    out.append({
        "id": "put_1k_open_loop_50pct_p99", "shape": "1 KiB durable put, open loop at 50% of peak",
        "node": ol, "unit": "µs", "offered_ops_per_s": pt and pt["offered_ops_per_s"],
        "achieved_ops_per_s": pt and pt["achieved_ops_per_s"], "send_lag_p99_us": lag,
        "generator_kept_schedule": None if lag is None else not behind,
        "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": "p99 <= 2000 µs", "target_us": 2000, "met": ol is not None and ol <= 2000,
        "from": "the put sweep's 50% point (3 s after 1 s of warm-up)",
        "node_text": (f"p99 {us(ol)} at {n0(pt['offered_ops_per_s'])} ops/s offered" if pt
                      else "no 50% point in the put sweep"),
        "baseline_text": "- (absolute)",
        "detail": None if pt is None else (
            f"the put sweep's 50% point: p50 {us(pt.get('p50_us'))}, p99.9 {us(pt.get('p999_us'))}, achieved "
            f"{n0(pt.get('achieved_ops_per_s'))} ops/s, send lag p99 {us(lag)}"
            + (f" (above {OPEN_LOOP_LAG_P99_MAX_US} µs: the generator fell behind its schedule; the latencies "
               "run from the intended send times, so they include that wait)" if behind else "")),
        "generator": put_open_gen, "generator_bound": put_open_share is not None and put_open_share > GENERATOR_SHARE_MAX,
        "bottleneck": fsync_bottleneck(ol, pt, machine.get("fio_4k_fdatasync") or {}),
    })

    # Copy of a 1 GiB object: p99 <= 1 ms and the same as a 1 KiB object's within noise.
    big, small = node["node-copy-rename-1g"], node["node-copy-rename-1k"]
    cp, cp1k = p99(big, "copy"), p99(small, "copy")
    noise = None if cp1k is None else max(COPY_NOISE_US, COPY_NOISE_FRACTION * cp1k)
    same = cp is not None and cp1k is not None and abs(cp - cp1k) <= noise
    out.append({
        "id": "copy_1g_p99", "shape": "copy of a 1 GiB object",
        "node": cp, "unit": "µs", "baseline": cp1k, "baseline_what": "copy of a 1 KiB object, p99",
        "ratio": div(cp, cp1k), "noise_us": noise, "same_within_noise": same,
        "target": f"p99 <= 1000 µs, within max({COPY_NOISE_US} µs, {COPY_NOISE_FRACTION:.0%}) of the 1 KiB copy's",
        "target_us": 1000, "met": cp is not None and cp <= 1000 and same,
        "node_text": f"p99 {us(cp)}", "baseline_text": f"p99 {us(cp1k)} copy of a 1 KiB object",
        "detail": (f"p50 {us(p50(big, 'copy'))} (1 GiB) against {us(p50(small, 'copy'))} (1 KiB); the p99s differ by "
                   + ("n/a" if cp is None or cp1k is None else f"{abs(cp - cp1k):,.0f} µs")
                   + f", noise allowed {us(noise)}: " + ("the same" if same else "NOT the same")),
        "generator": gen_note("node-copy-rename-1g"),
        "generator_bound": (by_stem.get("node-copy-rename-1g") or {}).get("generator_bound"),
    })

    # Rename of a 1 GiB object on its shard (the 1-shard node: every rename stays on its shard).
    rn, rn1k = p99(big, "rename"), p99(small, "rename")
    out.append({
        "id": "rename_1g_same_shard_p99", "shape": "rename of a 1 GiB object, same shard",
        "node": rn, "unit": "µs", "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "rename_1k_p99_us": rn1k, "target": "p99 <= 1000 µs", "target_us": 1000,
        "met": rn is not None and rn <= 1000,
        "node_text": f"p99 {us(rn)}", "baseline_text": "- (absolute)",
        "detail": f"1-shard node; p50 {us(p50(big, 'rename'))}; a 1 KiB object's rename: p99 {us(rn1k)}",
        "generator": gen_note("node-copy-rename-1g"),
        "generator_bound": (by_stem.get("node-copy-rename-1g") or {}).get("generator_bound"),
    })

    # Rename across shards on the 2-shard node.
    xr = p99(across, "rename")
    targets_across = bool(opt(across, "rename_targets.across_shards", False))
    xgen, share = generator_share(across)
    xn = across.get("node") or {}
    out.append({
        "id": "rename_across_shards_p99", "shape": "rename across shards (2-shard node)",
        "node": xr, "unit": "µs", "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": "p99 <= 3000 µs", "target_us": 3000,
        "met": xr is not None and xr <= 3000 and targets_across,
        "targets_across_shards": targets_across, "object_bytes": 1 << 30,
        "node_text": f"p99 {us(xr)} (1 GiB object)", "baseline_text": "- (absolute)",
        "detail": (f"p50 {us(p50(across, 'rename'))}, {n0(opt(across, 'ops[op=rename].ops_per_s'))} renames/s; "
                   + ("every target on the other shard (candybox-bench --rename-across-shards)" if targets_across
                      else "NOT across shards: this candybox-bench JSON names no rename_targets")
                   + f"; node: {xn.get('forwards_per_op') or 0:.3f} forwards/op, {n0(xn.get('wal_fsyncs'))} commit "
                   "log fdatasyncs"),
        "generator": xgen, "generator_bound": share is not None and share > GENERATOR_SHARE_MAX,
    })

    # 64 MiB durable put against fio's sequential write with fdatasync.
    p64 = opt(node["node-put-64m"], "total.bytes_per_s")
    fseq = machine["fio_seq_write"]["bw_bytes_per_s"]
    r64 = div(p64, fseq)
    out.append({
        "id": "put_64m_vs_fio", "shape": "64 MiB durable put, 1 conn",
        "node": p64, "unit": "bytes/s", "baseline": fseq, "baseline_what": "fio seq write, fdatasync/64 MiB",
        "ratio": r64, "target": ">= 0.9x", "target_ratio": 0.9, "met": r64 is not None and r64 >= 0.9,
        "node_text": mbs(p64), "baseline_text": f"{mbs(fseq)} fio seq write, fdatasync/64 MiB",
        "detail": None, "generator": gen_note("node-put-64m"),
        "generator_bound": (by_stem.get("node-put-64m") or {}).get("generator_bound"),
        "bottleneck": cpu_bottleneck((by_stem.get("node-put-64m") or {}).get("node_cpu_us_per_op"),
                                     opt(node["node-put-64m"], "total.ops_per_s"), "64 MiB put",
                                     None if fseq is None else 0.9 * fseq / (64 << 20)),
    })
    for t in out:
        if t["met"]:
            t["bottleneck"] = None
    return out


def generator_share(doc):
    """The generator's CPU per request against the node's in one candybox-bench JSON: the note
    for a target row, and the share (None when not measured)."""
    share = div(gen_cpu(doc), request_cpu(doc))
    if share is None:
        return "generator/node CPU n/a", None
    note = f"generator/node CPU {share:.2f} ({opt(doc, 'generator.path', '?')})"
    return note + (" CLIENT-BOUND" if share > GENERATOR_SHARE_MAX else ""), share


def cpu_bottleneck(cpu_us_per_op, ops_per_s, what, wanted_ops_per_s):
    """Evidence of where an unmet throughput target stops: how busy the node's core was."""
    if cpu_us_per_op is None or not ops_per_s:
        return "node CPU per request not measured"
    busy = cpu_us_per_op * ops_per_s / 1e6
    text = (f"core 0 {busy:.0%} busy with the node at this rate ({cpu_us_per_op:,.1f} µs of node CPU per {what}, "
            "spin-before-park excluded)")
    if wanted_ops_per_s:
        need = 1e6 / wanted_ops_per_s
        text += f"; the target needs {wanted_ops_per_s:,.0f}/s, at most {need:,.1f} µs per {what} on one core"
    if busy >= 0.8:
        text += ": CPU-bound on the node's core"
    return text + " (where that CPU goes: the profile below)"


def page_cache_copy_note(profile, cpu_us_per_op):
    """The rate of the kernel's copy into the page cache during the 64 MiB puts, from the profile."""
    share = next((p["pct"] for p in (profile or {}).get("paths", []) if p["symbol"] == "copy_folio_from_iter_atomic"),
                 None)
    if share is None or not cpu_us_per_op:
        return ""
    seconds = cpu_us_per_op * share / 100 / 1e6
    rate = (64 << 20) / seconds if seconds > 0 else None
    return (f"; {share:.0f}% of the node's CPU is the kernel copying each written byte into the page cache "
            f"(copy_folio_from_iter_atomic), {mbs(rate)} of copy per core: on this VM a page the guest "
            "touches for the first time costs the host a fault, so writes into fresh page cache run about "
            "10x slower than into reused pages (dd of 2 GiB: 4.6 s of system time, then 0.4 s; bench/README.md), "
            "and fio's own figure moves with it (330 MB/s to 1.9 GB/s between suite runs)")


def fsync_bottleneck(p99, pt, fio4k):
    """Evidence for an unmet open-loop put latency: the disk's fdatasync tail in the same run."""
    f99, f50 = fio4k.get("fdatasync_p99_us"), fio4k.get("fdatasync_p50_us")
    if p99 is None or f99 is None:
        return "the disk's fdatasync latency was not measured"
    p50 = pt.get("p50_us") if pt else None
    return (f"the put's p99 is {p99 / f99:.1f}x the disk's 4 KiB fdatasync p99 ({us(f99)}, p50 {us(f50)}; fio, "
            f"this run) and its p50 {us(p50)}: a put waits for the group commit in flight, then its own "
            "log write and fdatasync; see bench/README.md, 'Issue 13'")


# Kernel paths a profile names, with the symbol whose share (children included: the path and
# everything under it) stands for each. The shares overlap (a send includes the loopback
# delivery it triggers), so they are not summed.
PROFILE_PATHS = [
    ("fdatasync", "ext4_sync_file"),
    ("buffered file writes", "ext4_buffered_write_iter"),
    ("  of which the copy into the page cache", "copy_folio_from_iter_atomic"),
    ("socket sends", "tcp_sendmsg"),
    ("socket receives", "tcp_recvmsg"),
    ("loopback delivery (softirq)", "net_rx_action"),
    ("splice to sockets", "splice_file_to_pipe"),
    ("virtio kick (a VM exit per disk request batch)", "iowrite16"),
    ("context switches", "__schedule"),
    ("page faults", "asm_exc_page_fault"),
]
PROFILE_TREE_MIN_PCT = 1.0
PERF_LINE = re.compile(r"^\s*([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(.*)$")


def perf_report(path, *args):
    """perf report --stdio lines of PATH (without comments or blanks)."""
    r = subprocess.run(["perf", "report", "-i", path, "--stdio", "-g", "none", *args], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        die(f"perf report {' '.join(args)} of {path} failed: {r.stderr.strip()[-300:]}")
    return r.stdout.splitlines()


def profile_summary(path, out):
    """Where the node's CPU went in a perf recording of its process."""
    samples = None
    threads = {}
    for line in perf_report(path, "--no-children", "--sort", "comm,dso"):
        if line.startswith("# Samples:"):
            samples = line.split(":", 1)[1].strip()
        m = PERF_LINE.match(line)
        if line.startswith("#") or not m:
            continue
        pct, rest = float(m.group(1)), m.group(3).split()
        if len(rest) < 2:
            continue
        comm, dso = rest[0], " ".join(rest[1:])
        who = ("shard threads" if comm.startswith("candybox-shard") else
               "io_uring workers" if comm.startswith("iou-wrk") else "other threads")
        where = "kernel" if dso.startswith("[kernel") else "user"
        threads[(who, where)] = threads.get((who, where), 0.0) + pct
    children = {}
    for line in perf_report(path, "--children", "--sort", "sym"):
        m = PERF_LINE.match(line)
        if line.startswith("#") or not m or m.group(2) is None:
            continue
        sym = m.group(3).split("] ", 1)[-1].strip()
        children.setdefault(sym, float(m.group(1)))
    top = []
    for line in perf_report(path, "--no-children", "--sort", "sym"):
        m = PERF_LINE.match(line)
        if line.startswith("#") or not m:
            continue
        top.append({"symbol": m.group(3).split("] ", 1)[-1].strip(), "pct": float(m.group(1))})
        if len(top) == 8:
            break
    doc = {
        "samples": samples,
        "threads": [{"who": w, "where": k, "pct": round(v, 2)} for (w, k), v in
                    sorted(threads.items(), key=lambda kv: -kv[1])],
        "paths": [{"label": label, "symbol": sym, "pct": children[sym]} for label, sym in PROFILE_PATHS
                  if children.get(sym, 0.0) >= PROFILE_TREE_MIN_PCT],
        "top_self": top,
        "how": "perf record -F 999 -g -p <node pid> for 4 s of the run's 5 measured seconds; shares of all the "
               "node process's samples",
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


def profile_error(out, message):
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"error": message}, f, indent=2)


def profile_text(doc):
    """The profile in one paragraph (for the report and the step line)."""
    if not doc:
        return "no profile in this run"
    if doc.get("error"):
        return f"no profile: {doc['error']}"
    th = ", ".join(f"{t['who']} {t['where']} {t['pct']:.0f}%" for t in doc.get("threads", []) if t["pct"] >= 0.5)
    paths = ", ".join(f"{p['label'].strip()} ({p['symbol']}) {p['pct']:.0f}%" for p in doc.get("paths", []))
    top = ", ".join(f"{t['symbol']} {t['pct']:.1f}%" for t in doc.get("top_self", [])[:5])
    return f"node CPU by thread: {th}; kernel paths (with what they call): {paths or 'none above 1%'}; top symbols: {top}"


def wrap(text, width=110):
    """Plain word wrap, keeping the first line's indent on the following lines."""
    indent = text[:len(text) - len(text.lstrip())]
    lines, cur = [], indent
    for word in text.split():
        if len(cur) + len(word) + 1 > width and cur.strip():
            lines.append(cur.rstrip())
            cur = indent
        cur += word + " "
    if cur.strip():
        lines.append(cur.rstrip())
    return lines


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "context" and len(args) == 3:
        context(*args)
    elif cmd == "get" and len(args) == 2:
        try:
            v = lookup(load(args[0]), args[1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            die(f"{args[0]}: no figure {args[1]} ({e!r})")
        if v is None:
            die(f"{args[0]}: figure {args[1]} is null")
        print(v)
    elif cmd == "redis-rps" and len(args) == 1:
        rows = redis_rows(args[0])
        print(sum(r["rps"] for r in rows.values()) / len(rows))
    elif cmd == "redis-brief" and len(args) in (1, 3):
        rows = redis_rows(args[0])
        cpu = redis_cpu(args[1]).get(args[2], {}) if len(args) == 3 else {}

        def one(k, r):
            c = (cpu.get(k) or {}).get("cpu_us_per_op")
            extra = "" if c is None else f", server CPU {c:.2f} µs/op"
            return f"{k} {n0(r['rps'])} ops/s p99 {r.get('p99_latency_ms', 0):.3f} ms{extra}"
        print(", ".join(one(k, r) for k, r in rows.items()))
    elif cmd == "fio-brief" and len(args) == 2:
        d = load(args[0])
        if args[1] == "seq":
            s = fio_seq(d)
            print(f"{mbs(s['bw_bytes_per_s'])}")
        else:
            s = fio_4k(d)
            print(f"{n0(s['write_iops'])} IOPS, fdatasync p50 {us(s['fdatasync_p50_us'])} p99 {us(s['fdatasync_p99_us'])}")
    elif cmd == "iperf-brief" and len(args) == 1:
        s = iperf(load(args[0]))
        print(f"{mbs(s['bytes_per_s'])} ({s['bytes_per_s'] * 8 / 1e9:.2f} Gbit/s)")
    elif cmd == "ab-brief" and len(args) == 1:
        ab = before_after(args[0]) or {}
        print(", ".join(f"{r.get('shape')} {ratio_s(r.get('ops_ratio_new_over_base'))} "
                        f"(CPU {ratio_s(r.get('cpu_ratio_new_over_base'))})" for r in ab.get("summary") or []))
    elif cmd == "bench-brief" and len(args) == 1:
        print(bench_brief(load(args[0])))
    elif cmd == "profile-summary" and len(args) == 2:
        profile_summary(*args)
    elif cmd == "profile-error" and len(args) == 2:
        profile_error(*args)
    elif cmd == "profile-brief" and len(args) >= 2:
        for name in args[1:]:
            path = os.path.join(args[0], name + ".profile.json")
            doc = load(path) if os.path.exists(path) else None
            print(f"{name}: {profile_text(doc)[:160]}")
    elif cmd == "report" and len(args) == 2:
        report(*args)
    else:
        die(f"bad arguments: {' '.join(argv[1:])}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
