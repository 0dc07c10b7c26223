#!/usr/bin/env python3
"""Helpers of scripts/bench.sh: JSON picking, the live-log reader, and the results table.

bash does the measuring (it runs the named tools and times them with $EPOCHREALTIME); this file only does what
bash does badly: parse JSON, timestamp the lines of `tail -f` as they arrive, and turn the raw samples into
medians, ratios and a markdown table. Samples are lines of `row<TAB>side<TAB>value` in samples.tsv, where side
is `vm0fs`, `baseline`, `error` or `na` (the last two carry a message instead of a number).

Subcommands:
  json EXPR                      read JSON on stdin, print eval(EXPR) with `d` bound to it (strings unquoted)
  livelog MNT RUN_ID URL TOKEN   run `tail -f MNT/runs/RUN_ID/logs`, print a JSON report of per-line delays
  table SAMPLES MACHINE OUT      print the markdown table and write it (with details) to OUT; exit 1 if a row errored
  mix BEFORE AFTER               the FUSE requests served between two `.vm0fs/status` snapshots, by opcode
  per_file BEFORE AFTER FILES    the FUSE requests served between two `.vm0fs/status` snapshots, per file
  pages URL TOKEN                fetch every page of /v1/runs over one keep-alive connection; print the page count
  upload_body SHA256SUMS         the body of POST /v1/volumes/:id/upload from `sha256sum` output (sizes from disk)
  put_config UPLOAD_REPLY DIR    a curl config (-K) that PUTs each file of DIR to its upload URL from the reply
  push_bodies SHA256SUMS NAME OUT  OUT/prepare.json and OUT/manifest.json of a push (CONTRACT.md 7.2) of volume NAME
  push_commit PREPARE REPLY      the body of POST /api/storages/commit for that prepare and its reply
"""

import datetime as dt
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
import urllib.request


def cmd_json(expr):
    d = json.load(sys.stdin)
    v = eval(expr, {"d": d})  # noqa: S307 (the expression comes from bench.sh itself)
    if isinstance(v, (dict, list)):
        print(json.dumps(v))
    elif v is None:
        sys.exit("bench.py json: %s is null" % expr)
    else:
        print(v)


# --------------------------------------------------------------------------------------------------------------
# live log


def api_get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


TERMINAL = {"completed", "failed", "timeout", "cancelled"}


def cmd_livelog(mnt, run_id, url, token):
    """Follows the run's logs with `tail -f` through the mount; each line's delay is its arrival time minus the
    `timestamp` the emulator gave the entry when it appended it (same host, same clock). Lines whose timestamp
    is before tail started are backlog, not a live delay, and are left out. Stops 3 s after the API says the run
    is terminal (tail polls a FUSE file about once a second), or after 60 s."""
    path = os.path.join(mnt, "runs", run_id, "logs")
    start = time.time()
    tail = subprocess.Popen(["tail", "-f", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(tail.stdout, selectors.EVENT_READ)
    os.set_blocking(tail.stdout.fileno(), False)
    buf = b""
    lines = []  # (arrival, text)
    terminal_at = None
    next_poll = 0.0
    deadline = start + 60
    status = "?"
    while True:
        now = time.time()
        if now > deadline or (terminal_at is not None and now > terminal_at + 3.0):
            break
        if now >= next_poll:
            next_poll = now + 0.25
            try:
                status = api_get("%s/v1/runs/%s" % (url, run_id), token).get("status", "?")
            except Exception as e:  # a slow or failing API must not stop the reader
                status = "?(%s)" % e
            if terminal_at is None and status in TERMINAL:
                terminal_at = time.time()
        for _key, _ev in sel.select(timeout=0.05):
            chunk = tail.stdout.read()
            arrival = time.time()
            if chunk:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    lines.append((arrival, line.decode("utf-8", "replace")))
            elif chunk == b"":
                break
        if tail.poll() is not None:
            break
    tail_rc = tail.poll()
    if tail_rc is None:
        tail.terminate()
        tail.wait(timeout=5)
    tail_err = tail.stderr.read().decode("utf-8", "replace").strip()

    written = []
    try:
        page = api_get("%s/v1/runs/%s/logs?limit=100&order=asc" % (url, run_id), token)
        written = [e["timestamp"] for e in page.get("data", [])]
    except Exception as e:
        tail_err += " (could not list the written entries: %s)" % e

    delays, backlog, bad = [], 0, 0
    seen = set()
    for arrival, text in lines:
        tok = text.split(" ", 1)[0]
        try:
            ts = parse_ts(tok)
        except ValueError:
            bad += 1
            continue
        seen.add(tok)
        if ts < start:
            backlog += 1
            continue
        delays.append(arrival - ts)
    live_written = [t for t in written if parse_ts(t) >= start]
    report = {
        "run_id": run_id,
        "final_status": status,
        "lines_seen": len(lines),
        "backlog_lines": backlog,
        "unparsed_lines": bad,
        "entries_written": len(written),
        "live_entries_written": len(live_written),
        "live_entries_missed": len([t for t in live_written if t not in seen]),
        "delays": [round(x, 4) for x in delays],
        "tail_exit": tail_rc,
        "tail_stderr": tail_err[-500:],
    }
    print(json.dumps(report))


# --------------------------------------------------------------------------------------------------------------
# the table

# name, unit, how the ratio is formed, target kind, target value, target text
ROWS = [
    ("cold copy", "s", "time", "ratio_le", 1.1, "≤ 1.1× the time"),
    ("first byte", "s", "time", "ratio_le", 0.01, "≤ 0.01× the time"),
    ("warm read", "MiB/s", "rate", "ratio_ge", 0.95, "≥ 0.95× the throughput"),
    ("warm tree", "s", "time", "ratio_le", 1.2, "≤ 1.2× the time"),
    ("big listing", "s", "time", "ratio_le", 1.3, "≤ 1.3× the time"),
    ("big listing, keep-alive", "s", "time", "ratio_le", 1.0, "≤ 1.0× the time"),
    ("live log", "s", None, "abs_le", 0.7, "median ≤ 0.7 s"),
    ("head-of-line", "s", "time", "ratio_le", 2.0, "≤ 2×"),
    ("memory", "MiB", None, "abs_le", 64.0, "≤ 64 MiB"),
    ("memory, walk", "MiB", None, "abs_le", 64.0, "≤ 64 MiB"),
    ("volume upload", "s", "time", "ratio_le", 1.0, "≤ 1.0× the time"),
    ("volume edit", "s", "time", "ratio_le", 1.1, "≤ 1.1× a bare upload"),
    ("volume edit, disk read", "MiB", None, "report", None, "— (vm0fs read_bytes)"),
    ("volume edit, read(2)", "MiB", None, "report", None, "— (vm0fs rchar)"),
    ("volume upload, push", "s", "time", "ratio_le", 1.0, "≤ 1.0× the time"),
    ("volume edit, push", "s", "time", "ratio_le", 1.1, "≤ 1.1× a bare upload"),
    ("volume edit, push, disk read", "MiB", None, "report", None, "— (vm0fs read_bytes)"),
    ("volume edit, push, read(2)", "MiB", None, "report", None, "— (vm0fs rchar)"),
    ("volume warm read", "MiB/s", "rate", "ratio_ge", 0.95, "≥ 0.95× the throughput"),
    ("small files, vs bindfs", "s", "time", "ratio_le", 0.5, "≤ 0.5× bindfs"),
    ("small files, vs the disk", "s", "time", "ratio_le", 10.0, "≤ 10× the directory"),
    ("requests per file", "n", None, "abs_le", 6.0, "≤ 6"),
    ("venv", "s", "time", "ratio_le", 2.0, "≤ 2× the time"),
    ("memory, writes", "MiB", None, "abs_le", 64.0, "≤ 64 MiB (peak of small files and venv)"),
    ("memory, staged", "MiB", None, "abs_le", 64.0, "≤ 64 MiB"),
]

# figure, unit, whether more is better, the peers measured for it
PEER_FIGURES = [
    ("warm tree", "s", False, ["rclone", "squashfuse", "archivemount", "ratarmount"]),
    ("warm read", "MiB/s", True, ["rclone", "squashfuse", "archivemount", "ratarmount"]),
    ("first byte", "s", False, ["archivemount", "ratarmount"]),
    ("cold copy", "s", False, ["archivemount", "ratarmount"]),
    ("small files", "s", False, ["rclone"]),
]


def peer_table(samples, notes):
    """The figures of vm0fs and of each peer, side by side, and whether vm0fs is ahead of every peer measured."""
    if not any(side == "peer" for (_row, side) in samples) and not notes.get("peers"):
        return []
    peers = ["rclone", "squashfuse", "archivemount", "ratarmount"]
    out = ["| figure | vm0fs | " + " | ".join(peers) + " | ahead of every peer |",
           "|---|---|" + "---|" * len(peers) + "---|"]
    for figure, unit, more_better, measured in PEER_FIGURES:
        v = samples.get((figure, "vm0fs"), []) or samples.get((figure + ", vs bindfs", "vm0fs"), [])
        cells, ahead = [], True if v else None
        vm = statistics.median(v) if v else None
        for peer in peers:
            vals = samples.get(("%s|%s" % (figure, peer), "peer"), [])
            if peer not in measured:
                cells.append("—")
                continue
            if not vals:
                cells.append("not run")
                continue
            pm = statistics.median(vals)
            cells.append(fmt(pm, unit))
            if vm is not None:
                ahead = ahead and (vm > pm if more_better else vm < pm)
        verdict = "—" if ahead is None else ("yes" if ahead else "no")
        out.append("| %s | %s | %s | %s |" % (figure, fmt(vm, unit) if vm is not None else "not run",
                                              " | ".join(cells), verdict))
    return out


def fmt(v, unit):
    if unit == "n":
        return "%.2f" % v
    if unit == "MiB/s":
        return "%.0f MiB/s" % v
    if unit == "MiB":
        return "%.1f MiB" % v
    if v >= 100:
        return "%.0f s" % v
    if v >= 10:
        return "%.1f s" % v
    if v >= 1:
        return "%.2f s" % v
    return "%.3f s" % v


def cmd_table(samples_path, machine_path, out_path):
    samples = {}
    notes = {}
    if os.path.exists(samples_path):
        with open(samples_path) as f:
            for raw in f:
                parts = raw.rstrip("\n").split("\t", 2)
                if len(parts) != 3:
                    continue
                row, side, value = parts
                if side in ("error", "na"):
                    notes.setdefault(row, []).append((side, value))
                else:
                    samples.setdefault((row, side), []).append(float(value))

    table = [
        "| row | vm0fs | baseline | ratio | target | meets |",
        "|---|---|---|---|---|---|",
    ]
    details = [
        "| row | side | n | min | median | max |",
        "|---|---|---|---|---|---|",
    ]
    errored = False
    for name, unit, ratio_kind, target_kind, target, target_text in ROWS:
        v = samples.get((name, "vm0fs"), [])
        b = samples.get((name, "baseline"), [])
        if name == "first byte":  # its baseline is the vm0fs cold copy of the row above
            b = samples.get(("cold copy", "vm0fs"), [])
        row_notes = notes.get(name, [])
        b_label = "baseline (the vm0fs cold copy)" if name == "first byte" else "baseline"
        for side, vals in (("vm0fs", v), (b_label, b)):
            if vals:
                details.append(
                    "| %s | %s | %d | %s | %s | %s |"
                    % (name, side, len(vals), fmt(min(vals), unit), fmt(statistics.median(vals), unit),
                       fmt(max(vals), unit))
                )
        if not v and not row_notes and not (name == "memory" and notes.get("cold copy")):
            table.append("| %s | not run | | | %s | no |" % (name, target_text))
            continue
        has_error = any(s == "error" for s, _ in row_notes) or (
            name == "memory" and any(s == "error" for s, _ in notes.get("cold copy", [])))
        has_na = any(s == "na" for s, _ in row_notes)
        need_baseline = target_kind not in ("abs_le", "report")
        if has_error or (not has_na and (not v or (need_baseline and not b))):
            errored = True
            table.append("| %s | error | %s | | %s | no |" % (
                name, fmt(statistics.median(b), unit) if b else "—", target_text))
            continue
        if has_na and not v:
            table.append("| %s | n/a | %s | | %s | no |" % (
                name, fmt(statistics.median(b), unit) if b else "—", target_text))
            continue
        vm = statistics.median(v)
        if target_kind == "report":
            table.append("| %s | %s | — | — | %s | — |" % (name, fmt(vm, unit), target_text))
            continue
        if target_kind == "abs_le":
            table.append("| %s | %s | — | — | %s | %s |" % (
                name, fmt(vm, unit), target_text, "yes" if vm <= target else "no"))
            continue
        bm = statistics.median(b)
        ratio = vm / bm if bm > 0 else float("inf")
        ok = ratio <= target if target_kind == "ratio_le" else ratio >= target
        table.append("| %s | %s | %s | %.2f× | %s | %s |" % (
            name, fmt(vm, unit), fmt(bm, unit), ratio, target_text, "yes" if ok else "no"))

    for (row, side), vals in sorted(samples.items()):
        if side == "peer":
            figure, peer = row.split("|", 1)
            unit = "MiB/s" if figure == "warm read" else "s"
            details.append("| %s | %s | %d | %s | %s | %s |" % (
                figure, peer, len(vals), fmt(min(vals), unit), fmt(statistics.median(vals), unit), fmt(max(vals), unit)))
    peers = peer_table(samples, notes)
    if peers:
        table += ["", "Peers (medians; the same data in the same run):", ""] + peers
    machine = open(machine_path).read().strip() if os.path.exists(machine_path) else ""
    text = "\n".join(table)
    print(text)
    with open(out_path, "w") as f:
        f.write("# vm0fs benchmark results\n\n")
        f.write(machine + "\n\n")
        f.write(text + "\n\n")
        f.write("## Samples (every repetition; each figure above is the median)\n\n")
        f.write("\n".join(details) + "\n")
        all_notes = [(r, s, m) for r, lst in notes.items() for s, m in lst]
        if all_notes:
            f.write("\n## Notes\n\n")
            for r, s, m in all_notes:
                f.write("- %s (%s): %s\n" % (r, s, m))
    sys.exit(1 if errored else 0)


def cmd_pages(url, token):
    """The fair baseline of `big listing`: one process, one kept-alive HTTP connection (http.client, which urllib
    is built on; urllib.request itself opens a connection per request), paging until `next_cursor` is null."""
    import http.client
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    cursor, pages = None, 0
    while True:
        path = "/v1/runs?limit=100" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        if resp.status != 200:
            sys.exit("pages: HTTP %d" % resp.status)
        pages += 1
        p = body.get("pagination") or {}
        cursor = p.get("next_cursor") or p.get("nextCursor")
        if not cursor:
            break
    print(pages)


def cmd_upload_body(sums_path):
    """`sha256sum` lines (`HASH  ./path`, run in the tree's directory) → `{"files": [{path, size, hash}]}`."""
    files = []
    with open(sums_path) as f:
        for line in f:
            digest, path = line.rstrip("\n").split("  ", 1)
            path = path[2:] if path.startswith("./") else path
            files.append({"path": path, "size": os.path.getsize(path), "hash": digest})
    print(json.dumps({"files": files}))


def cmd_put_config(reply_path, root):
    """The upload reply → one curl config that PUTs every file to its presigned URL (one process, kept-alive)."""
    with open(reply_path) as f:
        reply = json.load(f)
    for target in reply["files"]:
        print('url = "%s"' % target["upload_url"])
        print('upload-file = "%s"' % os.path.join(root, target["path"]))
        print('output = "/dev/null"')


def sums_files(sums_path):
    """`sha256sum` lines (run in the tree's directory) → [{path, hash, size}] in path order (sizes from disk)."""
    files = []
    with open(sums_path) as f:
        for line in f:
            digest, path = line.rstrip("\n").split("  ", 1)
            files.append({"path": path[2:] if path.startswith("./") else path, "hash": digest,
                          "size": os.path.getsize(path)})
    return sorted(files, key=lambda f: f["path"])


def cmd_push_bodies(sums_path, name, out):
    files = sums_files(sums_path)
    with open(os.path.join(out, "prepare.json"), "w") as f:
        json.dump({"storageName": name, "storageType": "volume", "files": files}, f)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"version": 1, "files": files, "createdAt": created}, f)


def cmd_push_commit(prepare_path, reply_path):
    with open(prepare_path) as f:
        body = json.load(f)
    with open(reply_path) as f:
        body["versionId"] = json.load(f)["versionId"]
    print(json.dumps(body))


def cmd_mix(before_path, after_path):
    """The request mix of what ran between two `.vm0fs/status` snapshots: `total N (P on the pool): op count
    (mean µs from arrival to reply), ...`."""
    def requests(path):
        with open(path) as f:
            return json.load(f).get("requests") or {}
    before, after = requests(before_path), requests(after_path)
    mix = []
    for op, stats in after.items():
        old = before.get(op, {})
        count = stats["count"] - old.get("count", 0)
        us = (stats["inline_us"] + stats["pooled_us"]) - (old.get("inline_us", 0) + old.get("pooled_us", 0))
        pooled = stats["pooled"] - old.get("pooled", 0)
        if count > 0:
            mix.append((count, op, us / count, pooled))
    mix.sort(key=lambda m: (-m[0], m[1]))
    total = sum(m[0] for m in mix)
    pooled = sum(m[3] for m in mix)
    print("total %d (%d on the pool): %s" % (
        total, pooled, ", ".join("%s %d (%.0f µs)" % (op, n, us) for n, op, us, _ in mix)))


def cmd_per_file(before_path, after_path, files):
    """FUSE requests per file between two `.vm0fs/status` snapshots."""
    def total(path):
        with open(path) as f:
            return sum(s["count"] for s in (json.load(f).get("requests") or {}).values())
    print("%.2f" % ((total(after_path) - total(before_path)) / int(files)))


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    cmd, rest = args[0], args[1:]
    if cmd == "json" and len(rest) == 1:
        cmd_json(*rest)
    elif cmd == "livelog" and len(rest) == 4:
        cmd_livelog(*rest)
    elif cmd == "table" and len(rest) == 3:
        cmd_table(*rest)
    elif cmd == "mix" and len(rest) == 2:
        cmd_mix(*rest)
    elif cmd == "per_file" and len(rest) == 3:
        cmd_per_file(*rest)
    elif cmd == "pages" and len(rest) == 2:
        cmd_pages(*rest)
    elif cmd == "upload_body" and len(rest) == 1:
        cmd_upload_body(*rest)
    elif cmd == "put_config" and len(rest) == 2:
        cmd_put_config(*rest)
    elif cmd == "push_bodies" and len(rest) == 3:
        cmd_push_bodies(*rest)
    elif cmd == "push_commit" and len(rest) == 2:
        cmd_push_commit(*rest)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
