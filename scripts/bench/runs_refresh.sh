#!/usr/bin/env bash
# `ls runs` on a large account behind a slow API (docs/BENCHMARKS.md, "runs/ that scales"): the emulator with
# BENCH_RUNS (10000) runs, of which the BENCH_MOVING (30) newest are still pending and the rest completed, and
# BENCH_LATENCY_MS (300) of latency on every API request; one mount; the first `ls runs`, then `ls runs` and
# `ls -l runs` each after the listing's 2 s TTL has lapsed, BENCH_REPEAT (3) times. Prints one line per
# measurement, and the API requests each took (the emulator's counter).
#
# Usage: scripts/bench/runs_refresh.sh [VM0FS_BINARY]   (default: target/release/vm0fs; the emulator is taken from
# beside it, so build both: cargo build --release --workspace --bins). Give another build's vm0fs to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
vm0fs=$(realpath "${1:-target/release/vm0fs}")
emulator=$(dirname "$vm0fs")/vm0-emulator
runs=${BENCH_RUNS:-10000}
moving=${BENCH_MOVING:-30}
latency=${BENCH_LATENCY_MS:-300}
repeat=${BENCH_REPEAT:-3}
token=vm0_live_demo

work=$(mktemp -d)
emu_pid=""
mnt_pid=""
cleanup() {
  if [ -n "$mnt_pid" ]; then kill "$mnt_pid" 2>/dev/null || true; wait "$mnt_pid" 2>/dev/null || true; fi
  if grep -q " $work/mnt " /proc/self/mountinfo; then fusermount3 -u -z "$work/mnt" 2>/dev/null || true; fi
  if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$emulator" --listen 127.0.0.1:0 --data "$work/data" >"$work/emu.out" 2>"$work/emu.log" &
emu_pid=$!
url=""
for _ in $(seq 600); do
  url=$(head -n1 "$work/emu.out" 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "the emulator did not start" >&2; cat "$work/emu.log" >&2; exit 1; }
curl -sSf -X POST "$url/_control/generate/runs?count=$runs&moving=$moving" >/dev/null
curl -sSf -X POST -H 'Content-Type: application/json' -d "{\"latency_ms\": $latency}" "$url/_control/faults" >/dev/null
requests() { curl -sSf "$url/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }

mkdir -p "$work/mnt"
VM0_API_KEY=$token "$vm0fs" mount "$work/mnt" -f --api-url "$url" --cache-dir "$work/cache" 2>"$work/mount.log" &
mnt_pid=$!
for _ in $(seq 600); do grep -q " $work/mnt " /proc/self/mountinfo && break; sleep 0.05; done

measure() { # label command...
  local label=$1 before t0 t1
  shift
  before=$(requests)
  t0=$EPOCHREALTIME
  "$@" >/dev/null
  t1=$EPOCHREALTIME
  printf '%-24s %6.2f s  %4d API requests\n' "$label" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$(($(requests) - before))"
}

echo "$("$vm0fs" --version), $runs runs ($moving of them pending), $latency ms latency"
measure "first ls runs" ls "$work/mnt/runs"
for i in $(seq "$repeat"); do
  sleep 2.5
  measure "ls runs after TTL ($i)" ls "$work/mnt/runs"
  sleep 2.5
  measure "ls -l runs after TTL ($i)" ls -l "$work/mnt/runs"
done
