#!/usr/bin/env python3
"""Helpers of bench/suite (standard library only).

Subcommands:
  context REPO WORKDIR OUT.json      print the header lines, write the machine context as JSON
  get FILE PATH                      print one figure of a JSON file; PATH is dotted, a list element
                                     is picked by a field: "ops[op=copy].p99_us", "jobs[0].write.iops"
  redis-rps CSV                      print the mean requests/s of the tests in a redis-benchmark CSV
  redis-brief CSV                    one line per test: "SET 90,334 ops/s p99 0.743 ms"
  fio-brief FILE seq|4k              one line of figures of a fio JSON
  iperf-brief FILE                   one line of figures of an iperf3 JSON
  bench-brief FILE                   one line of figures of a candybox-bench JSON
  report WORKDIR OUT.json            build the suite's JSON from the work dir, print the report
"""

import csv
import datetime
import json
import os
import platform
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
    if node.get("cpu_us_per_op") is not None:
        parts.append(f"node CPU {node['cpu_us_per_op']:,.1f} µs/op")
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
    ("node, 1 shard (incl. latency sweep)", 8, 19),
    ("node, 2 shards", 20, 23),
]
TWO_SHARD = [
    ("shards2-get-1k", "1 KiB get, routing", "node-get-1k"),
    ("shards2-get-1k-norouting", "1 KiB get, --no-routing", "node-get-1k"),
    ("shards2-put-1k", "1 KiB durable put, routing", "node-put-1k"),
    ("shards2-put-1k-norouting", "1 KiB durable put, --no-routing", "node-put-1k"),
]


def read_tsv(path):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    rows.append(line.split("\t"))
    return rows


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
    rv = ctx.get("tools", {}).get("redis_server") or ""
    rv = next((x[2:] for x in rv.split() if x.startswith("v=")), rv)
    redis = {
        "version": rv or None,
        "args": "taskset -c 1 redis-benchmark -c 64 -d 1024 -r 10000 --csv; server taskset -c 0",
        "plain": {"requests": redis_n.get("plain"), "tests": redis_rows(w("redis-plain.csv"))},
        "pipelined16": {"requests": redis_n.get("pipelined16"), "tests": redis_rows(w("redis-pipelined16.csv"))},
        "aof_always": {"requests": redis_n.get("aof_always"), "tests": redis_rows(w("redis-aof_always.csv"))},
    }
    res["redis"] = redis

    node = {}
    for stem, _label in NODE_SHAPES:
        node[stem] = load(w(stem + ".json"))
    res["node"] = node

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

    # ---- targets
    def total(stem, f):
        return opt(node[stem], "total." + f)

    def op_p99(stem, op):
        return opt(node[stem], f"ops[op={op}].p99_us")

    r_get = opt(redis["plain"]["tests"], "GET.rps")
    r_get16 = opt(redis["pipelined16"]["tests"], "GET.rps")
    r_aof = opt(redis["aof_always"]["tests"], "SET.rps")
    ip = machine["iperf3_loopback"]["bytes_per_s"]
    fseq = machine["fio_seq_write"]["bw_bytes_per_s"]
    targets = []

    def ratio_target(tid, shape, node_v, unit, base_v, base_what, want):
        r = div(node_v, base_v)
        fmt = mbs if unit == "bytes/s" else (lambda x: f"{n0(x)} ops/s")
        targets.append({
            "id": tid, "shape": shape, "node": node_v, "unit": unit,
            "baseline": base_v, "baseline_what": base_what, "ratio": r,
            "target": f">= {want}x", "target_ratio": want, "met": r is not None and r >= want,
            "node_text": fmt(node_v), "baseline_text": f"{fmt(base_v)} {base_what}",
        })

    ratio_target("get_1k_unpipelined", "1 KiB get, 64 conns, depth 1", total("node-get-1k", "ops_per_s"),
                 "ops/s", r_get, "Redis GET -c 64", 1.5)
    ratio_target("get_1k_pipelined16", "1 KiB get, 64 conns, depth 16", total("node-get-1k-p16", "ops_per_s"),
                 "ops/s", r_get16, "Redis GET -c 64 -P 16", 1.0)
    ratio_target("put_1k_durable", "1 KiB durable put, 64 conns", total("node-put-1k", "ops_per_s"),
                 "ops/s", r_aof, "Redis SET appendfsync always", 2.0)
    ratio_target("get_64m", "64 MiB get, 1 conn", total("node-get-64m", "bytes_per_s"),
                 "bytes/s", ip, "iperf3 loopback, 1 stream", 0.8)
    ratio_target("put_64m_durable", "64 MiB durable put, 1 conn", total("node-put-64m", "bytes_per_s"),
                 "bytes/s", fseq, "fio seq write, fdatasync/64 MiB", 0.8)

    cp, rn = op_p99("node-copy-rename-1g", "copy"), op_p99("node-copy-rename-1g", "rename")
    cp1k, rn1k = op_p99("node-copy-rename-1k", "copy"), op_p99("node-copy-rename-1k", "rename")
    targets.append({
        "id": "copy_rename_1g_p99", "shape": "copy + rename of a 1 GiB object",
        "node": {"copy_p99_us": cp, "rename_p99_us": rn, "copy_1k_p99_us": cp1k, "rename_1k_p99_us": rn1k},
        "unit": "µs", "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": "p99 <= 1000 µs (copy and rename)", "target_us": 1000,
        "met": cp is not None and rn is not None and cp <= 1000 and rn <= 1000,
        "node_text": f"copy p99 {us(cp)}, rename p99 {us(rn)} (1 KiB: {us(cp1k)}, {us(rn1k)})",
        "baseline_text": "- (absolute)",
    })
    ol = node["node-get-1k-open50"]
    runs = [ol] + [load(w(f"node-get-1k-open50-r{r}.json")) for r in (2, 3)
                   if os.path.exists(w(f"node-get-1k-open50-r{r}.json"))]
    run_p99s = [opt(r, "total.p99_us") for r in runs]
    run_lags = [opt(r, "send_lag.p99_us") for r in runs]
    known = sorted(v for v in run_p99s if v is not None)
    # The median of the runs: one run's p99 can be set by a stall of this shared machine.
    ol_p99 = known[len(known) // 2] if known else None
    rows = read_tsv(w("open50.tsv"))
    ol_rate = float(rows[0][0]) if rows else opt(ol, "config.rate")
    targets.append({
        "id": "get_1k_open_loop_50pct_p99", "shape": "1 KiB get, open loop at 50% of peak",
        "node": ol_p99, "unit": "µs", "offered_ops_per_s": ol_rate,
        "achieved_ops_per_s": opt(ol, "total.ops_per_s"),
        "baseline": None, "baseline_what": "none (absolute target)", "ratio": None,
        "target": "p99 <= 1000 µs", "target_us": 1000, "met": ol_p99 is not None and ol_p99 <= 1000,
        "runs_p99_us": run_p99s, "runs_send_lag_p99_us": run_lags,
        "node_text": f"median p99 {us(ol_p99)} at {n0(ol_rate)} ops/s offered (runs: "
                     + ", ".join(us(v) for v in run_p99s) + "; generator send lag p99: "
                     + ", ".join(us(v) for v in run_lags) + ")",
        "baseline_text": "- (absolute)",
    })
    res["targets"] = targets
    res["targets_met"] = sum(1 for t in targets if t["met"])
    res["targets_total"] = len(targets)

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
    rows = []
    for t in targets:
        rows.append([t["shape"], t["node_text"], t["baseline_text"], ratio_s(t["ratio"]) if t["ratio"] is not None
                     else "-", t["target"], "met" if t["met"] else "NOT MET"])
    L += table(["shape", "node", "baseline", "ratio", "target", "result"], rows, "llllll")

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
             "on core 1; requests per test sized for about 3.5 s)")
    rrows = []
    for key, what in (("plain", "unpipelined, no persistence"), ("pipelined16", "-P 16, no persistence"),
                      ("aof_always", "unpipelined, appendfsync always")):
        for test, r in redis[key]["tests"].items():
            rrows.append([f"{test} {what}", n0(r.get("rps")), f"{r.get('p50_latency_ms', 0) * 1000:,.0f}",
                          f"{r.get('p99_latency_ms', 0) * 1000:,.0f}", n0(redis[key]["requests"])])
    L += ["  " + x for x in table(["test", "ops/s", "p50 µs", "p99 µs", "requests"], rrows, "lrrrr")]

    L.append("")
    L.append("Node, 1 shard on core 0 (candybox-bench on core 1)")
    nrows = []
    for stem, label in NODE_SHAPES:
        d = node[stem]
        t = d.get("total") or {}
        nd = d.get("node") or {}
        fs = nd.get("fsyncs_per_op")
        cpu = nd.get("cpu_us_per_op")
        gc = nd.get("ops_per_group_commit")
        nrows.append([label, n0(t.get("ops_per_s")), f"{(t.get('bytes_per_s') or 0) / 1e6:,.1f}",
                      n0(t.get("p50_us")), n0(t.get("p99_us")), n0(t.get("p999_us")), n0(t.get("errors_total")),
                      "n/a" if fs is None else f"{fs:.3f}", "-" if not gc else f"{gc:.1f}",
                      "n/a" if cpu is None else f"{cpu:,.1f}"])
        for o in d.get("ops") or []:
            if len(d.get("ops")) > 1:
                nrows.append([f"  {o.get('op')}", n0(o.get("ops_per_s")), f"{(o.get('bytes_per_s') or 0) / 1e6:,.1f}",
                              n0(o.get("p50_us")), n0(o.get("p99_us")), n0(o.get("p999_us")),
                              n0(sum((o.get("errors") or {}).values())), "", "", ""])
    L += ["  " + x for x in table(["shape", "ops/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "errors",
                                   "fsyncs/op", "ops/commit", "node CPU µs/op"], nrows, "lrrrrrrrrr")]

    L.append("")
    L.append("Latency vs offered load, open loop, 3 s per point (plot: bench/results/latency-vs-load.png)")
    srows = []
    for kind, label in (("get", "1 KiB get"), ("put", "1 KiB durable put")):
        for p in sweep[kind]:
            srows.append([label, f"{p['fraction_pct']}%", n0(p["offered_ops_per_s"]), n0(p["achieved_ops_per_s"]),
                          n0(p["p50_us"]), n0(p["p90_us"]), n0(p["p99_us"]), n0(p["p999_us"]), n0(p["errors_total"])])
    L += ["  " + x for x in table(["shape", "load", "offered ops/s", "achieved", "p50 µs", "p90 µs", "p99 µs",
                                   "p99.9 µs", "errors"], srows, "lrrrrrrrr")]

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
    groups = res["phases"]
    L += ["  " + x for x in table(["steps", "phase", "seconds"],
                                  [[g["steps"], g["phase"], f"{g['seconds']:.1f}"] for g in groups]
                                  + [["", "sum of the steps", f"{total_s:.1f}"],
                                     ["", "whole run up to the report (wall clock, with installs)",
                                      "n/a" if res["wall_seconds_before_report"] is None
                                      else f"{res['wall_seconds_before_report']:.1f}"]], "rlr")]
    L.append("")
    L.append(f"{res['targets_met']} of {res['targets_total']} targets met.")
    print("\n".join(L))


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
    elif cmd == "redis-brief" and len(args) == 1:
        rows = redis_rows(args[0])
        print(", ".join(f"{k} {n0(r['rps'])} ops/s p99 {r.get('p99_latency_ms', 0):.3f} ms" for k, r in rows.items()))
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
    elif cmd == "bench-brief" and len(args) == 1:
        print(bench_brief(load(args[0])))
    elif cmd == "report" and len(args) == 2:
        report(*args)
    else:
        die(f"bad arguments: {' '.join(argv[1:])}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
