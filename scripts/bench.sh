#!/usr/bin/env bash
# The vm0fs benchmark suite (docs/BENCHMARKS.md): builds in release mode, starts the local emulator on loopback with
# generated data, measures each row against a baseline run in the same invocation on the same data, prints a
# markdown table and writes it to target/bench/results.md. Exits non-zero if any row's measurement failed.
#
# Sizes (env):  BENCH_BIG_MB (512)  BENCH_SMALL_FILES (20000)  BENCH_SMALL_SIZE (26214 bytes)  BENCH_RUNS (10000)
#               BENCH_REPEAT (5: cold copy, first byte)  BENCH_REPEAT_WARM (5: the other rows)  BENCH_LIVE_RUNS (2)
#               BENCH_QUICK=1: a smoke run of about a minute (32 MB + 1000 small files, 1000 runs, one repetition)
#               BENCH_ROWS="cold first warmread warmtree listing hol livelog memwalk peers volumes writes" to run only
#               some rows (volumes: writing a volume, issues 14 and 23, on /v1 and on the push flow; writes: small
#               files, venv and staged memory, issue 23; volwarmread: only the volume warm read row of `volumes`;
#               volpush: only its push flow rows)
#               BENCH_BIN: the directory of the vm0fs and vm0-emulator binaries to measure (default: target/release,
#               built first); an older build kept aside measures the same rows before a change
#               BENCH_STAGED_FILES (100000): files staged by `memory, staged`
#               BENCH_MANY_FILES (200000): entries of the archive walked by `memory, walk`
#               BENCH_PEERS=0 skips the peers (rclone, squashfuse, archivemount, ratarmount); BENCH_PEER_TIMEOUT (120 s)
#               caps each peer measurement; BENCH_PEER_REPEAT (default: the vm0fs rows' repetitions)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  big_mb=${BENCH_BIG_MB:-32}; small_files=${BENCH_SMALL_FILES:-1000}; small_size=${BENCH_SMALL_SIZE:-26214}
  n_runs=${BENCH_RUNS:-1000}; repeat=${BENCH_REPEAT:-1}; repeat_warm=${BENCH_REPEAT_WARM:-2}
  live_runs=${BENCH_LIVE_RUNS:-1}
else
  big_mb=${BENCH_BIG_MB:-512}; small_files=${BENCH_SMALL_FILES:-20000}; small_size=${BENCH_SMALL_SIZE:-26214}
  n_runs=${BENCH_RUNS:-10000}; repeat=${BENCH_REPEAT:-5}; repeat_warm=${BENCH_REPEAT_WARM:-5}
  live_runs=${BENCH_LIVE_RUNS:-2}
fi
rows=${BENCH_ROWS:-"cold first warmread warmtree listing hol livelog memwalk peers volumes writes"}
staged_files=${BENCH_STAGED_FILES:-100000}
peers_on=${BENCH_PEERS:-1}
peer_timeout=${BENCH_PEER_TIMEOUT:-120}
peer_repeat=${BENCH_PEER_REPEAT:-}   # repetitions of each peer measurement (default: those of the vm0fs rows)
token=vm0_live_demo
name=bench

bench=$repo/target/bench
run=$bench/run            # this invocation's scratch: mounts, caches, copies, logs (emptied at start)
bin=${BENCH_BIN:-$repo/target/release}
samples=$run/samples.tsv
machine=$run/machine.md
requests_md=$run/requests.md   # request mixes (from .vm0fs/status) of the rows that record them
py=(python3 "$repo/scripts/bench/bench.py")

say() { printf '[bench %6.1fs] %s\n' "$(awk -v a="$script_t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$*" >&2; }
script_t0=$EPOCHREALTIME

# ---------------------------------------------------------------------------------------------------------------
# tools

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v tar >/dev/null 2>&1 || missing+=(tar)
command -v find >/dev/null 2>&1 || missing+=(findutils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bench.sh: please install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
[ -e /dev/fuse ] || { echo "bench.sh: /dev/fuse is missing; the benchmark mounts real FUSE filesystems" >&2; exit 1; }

# The peers a user would pick instead of vm0fs, installed here: rclone, archivemount, squashfuse and squashfs-tools from
# Debian, ratarmount from PyPI into a venv under target/bench. One that cannot be installed is reported in the table.
peer_missing=()   # "name: why", for the table
ratarmount_bin=$repo/target/bench/venv/bin/ratarmount
install_peers() {
  local need=() p
  command -v rclone >/dev/null 2>&1 || need+=(rclone)
  command -v archivemount >/dev/null 2>&1 || need+=(archivemount)
  command -v squashfuse >/dev/null 2>&1 || need+=(squashfuse)
  command -v mksquashfs >/dev/null 2>&1 || need+=(squashfs-tools)
  if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the peers ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    for p in "${need[@]}"; do DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1 || true; done
  fi
  command -v rclone >/dev/null 2>&1 || peer_missing+=("rclone: not installed (Debian package rclone)")
  command -v archivemount >/dev/null 2>&1 || peer_missing+=("archivemount: not installed (Debian package archivemount)")
  { command -v squashfuse >/dev/null 2>&1 && command -v mksquashfs >/dev/null 2>&1; } ||
    peer_missing+=("squashfuse: not installed (Debian packages squashfuse, squashfs-tools)")
  if [ ! -x "$ratarmount_bin" ]; then
    say "installing ratarmount from PyPI into target/bench/venv"
    { python3 -m venv "$repo/target/bench/venv" && "$repo/target/bench/venv/bin/pip" install -q ratarmount; } >"$repo/target/bench/pip.log" 2>&1 || true
  fi
  [ -x "$ratarmount_bin" ] || peer_missing+=("ratarmount: not installed (pip install ratarmount failed; see target/bench/pip.log)")
  return 0
}
mkdir -p "$repo/target/bench"
case " $rows " in *" peers "*) [ "$peers_on" = 1 ] && install_peers ;; esac
# The writes rows compare with bindfs (a plain FUSE passthrough of a directory: the floor of any FUSE filesystem)
# and, as a peer, rclone's write cache; both from Debian.
write_missing=()
if [[ " $rows " == *" writes "* ]]; then
  for p in bindfs rclone; do command -v "$p" >/dev/null 2>&1 || write_missing+=("$p"); done
  if [ ${#write_missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${write_missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    for p in "${write_missing[@]}"; do DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1 || true; done
  fi
  write_missing=()
  for p in bindfs rclone; do command -v "$p" >/dev/null 2>&1 || write_missing+=("$p"); done
fi

if [ -z "${BENCH_BIN:-}" ]; then
  say "building (release)"
  cargo build --release --locked --workspace --bins >&2
fi

# ---------------------------------------------------------------------------------------------------------------
# processes and mounts: everything started is tracked by PID and stopped by PID on exit

pids=()        # processes this shell started (emulators, vm0fs, helpers)
mounts=()      # mountpoints this shell mounted

mounted() { grep -q " $1 " /proc/self/mountinfo; }

stop_pid() { # pid [seconds]: SIGTERM, then SIGKILL after the grace period
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid did not stop on SIGTERM within ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

force_unmount() { mounted "$1" && { fusermount3 -u -z "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true; }; return 0; }

cleanup() {
  local p m
  for p in "${pids[@]}"; do stop_pid "$p" 5; done
  for m in "${mounts[@]}"; do force_unmount "$m"; done
  pids=(); mounts=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Mounts $1 on the emulator at $2 with cache dir $3 (and any further flags), in the foreground mode in the
# background; sets vm0fs_pid.
vm0fs_pid=""
mount_vm0fs() {
  local mnt=$1 url=$2 cache=$3 log=$run/vm0fs.log i
  shift 3
  mkdir -p "$mnt" "$cache"
  force_unmount "$mnt"
  VM0_API_KEY=$token "$bin/vm0fs" mount "$mnt" --api-url "$url" --cache-dir "$cache" -f "$@" >>"$log" 2>&1 &
  vm0fs_pid=$!
  pids+=("$vm0fs_pid"); mounts+=("$mnt")
  for ((i = 0; i < 400; i++)); do
    mounted "$mnt" && return 0
    kill -0 "$vm0fs_pid" 2>/dev/null || { echo "vm0fs exited before mounting; see $log" >&2; tail -5 "$log" >&2; return 1; }
    sleep 0.025
  done
  echo "vm0fs did not mount $mnt within 10 s" >&2
  return 1
}

unmount_vm0fs() { # mnt
  stop_pid "$vm0fs_pid" 20
  force_unmount "$1"
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$vm0fs_pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
  vm0fs_pid=""
}

# Starts an emulator on data dir $1 with extra flags; sets emu_pid and emu_url.
emu_pid=""; emu_url=""
start_emulator() {
  local data=$1 out; shift
  out=$run/emulator.$RANDOM
  "$bin/vm0-emulator" --listen 127.0.0.1:0 --data "$data" "$@" >"$out.out" 2>"$out.log" &
  emu_pid=$!
  pids+=("$emu_pid")
  emu_url=""
  for ((i = 0; i < 600; i++)); do
    emu_url=$(head -n1 "$out.out" 2>/dev/null || true)
    [ -n "$emu_url" ] && return 0
    kill -0 "$emu_pid" 2>/dev/null || { echo "the emulator failed:" >&2; cat "$out.log" >&2; return 1; }
    sleep 0.05
  done
  echo "the emulator did not start" >&2
  return 1
}

api() { curl -sSf -H "Authorization: Bearer $token" "$@"; }

# ---------------------------------------------------------------------------------------------------------------
# timing and samples

T=""
timed() { # runs "$@", sets T to its wall time in seconds, and returns its status
  local t0=$EPOCHREALTIME rc=0
  "$@" || rc=$?
  T=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.6f", b-a}')
  return $rc
}
sample() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$samples"; }

# Runs one row in a subshell with `set -e` live, so a failed measurement marks the row `error` and the suite goes
# on. The subshell stops whatever it started (its own EXIT trap) before the next row begins.
any_error=0
row() { # label fn
  local label=$1 fn=$2 rc
  say "row: $label"
  set +e
  ( set -e; pids=(); mounts=(); trap cleanup EXIT; "$fn" )
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    say "row $label failed (exit $rc)"
    sample "$label" error "the measurement failed with exit status $rc; see the bench log"
    any_error=1
  fi
}

# ---------------------------------------------------------------------------------------------------------------
# data: the emulator's data dir is generated once per set of sizes and kept under target/bench/ between runs

many_files=${BENCH_MANY_FILES:-200000}   # entries of the second artifact, walked by `memory, walk`
key="big${big_mb}-small${small_files}x${small_size}-runs${n_runs}-many${many_files}"
data=$bench/emu-$key
force_unmount "$run/mnt"   # left by an earlier invocation that was killed with SIGKILL
rm -rf "$run"
mkdir -p "$run"
: >"$samples"
: >"$requests_md"

for d in "$bench"/emu-*; do [ -e "$d" ] && [ "$d" != "$data" ] && rm -rf "$d"; done
if [ ! -e "$data/.complete" ] || [ ! -e "$data/state.sqlite" ]; then   # (state.json: an older emulator's)
  rm -rf "$data"
  mkdir -p "$data"
  start_emulator "$data"
  say "generating data ($key) at $emu_url"
  curl -sSf -X POST "$emu_url/_control/generate/runs?count=$n_runs" >/dev/null
  timed curl -sSf -X POST "$emu_url/_control/generate/storage?kind=artifacts&name=$name&big_file_mb=$big_mb&small_files=$small_files&small_size=$small_size" -o "$run/generated.json"
  say "generated the artifact in ${T}s"
  timed curl -sSf -X POST "$emu_url/_control/generate/storage?kind=artifacts&name=many&big_file_mb=0&small_files=$many_files&small_size=16" -o /dev/null
  say "generated the $many_files-entry artifact in ${T}s"
  stop_pid "$emu_pid"; pids=()
  touch "$data/.complete"
fi
start_emulator "$data"
url=$emu_url
say "emulator at $url (data $data)"

artifact_id=$(api "$url/v1/artifacts?limit=100" | "${py[@]}" json "[s['id'] for s in d['data'] if s['name']=='$name'][0]")
download_url=$url/v1/artifacts/$artifact_id/download
blob_bytes=$(curl -sSfL -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $token" "$download_url")
say "artifact $name ($artifact_id): archive of $blob_bytes bytes"

# the machine
{
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), vm0fs $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "- cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); memory $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo); load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- kernel: $(uname -sr)"
  dev=$(df --output=source "$bench" | tail -1)
  blk=$(basename "$dev")
  rot=$(cat "/sys/block/$blk/queue/rotational" 2>/dev/null || echo '?')
  echo "- disk: $(df -h --output=source,fstype,size,avail "$bench" | tail -1 | tr -s ' ' | sed 's/^ //') (source, type, size, free; /sys/block/$blk/queue/rotational=$rot), under $bench"
  echo "- data: artifact of ${big_mb} MiB big file + ${small_files} small files of ${small_size} bytes ($(awk -v b="$blob_bytes" 'BEGIN{printf "%.0f", b/1048576}') MiB archive, $(awk -v s=$(( (big_mb << 20) + small_files * small_size )) 'BEGIN{printf "%.0f", s/1048576}') MiB extracted); ${n_runs} runs; repetitions ${repeat} (cold rows) / ${repeat_warm} (warm rows)"
} >"$machine"

mnt=$run/mnt
cache=$run/cache          # the warm cache, filled by the cold copy
out=$run/out
big_bytes=$((big_mb << 20))

# ---------------------------------------------------------------------------------------------------------------
# rows

# cold copy + memory: cp -r through a fresh mount with an empty cache, against curl | tar -xz; VmHWM of vm0fs
baseline_fetch() { mkdir -p "$out/base"; curl -sSfL -H "Authorization: Bearer $token" "$download_url" | tar -xz -C "$out/base"; }
vm0fs_copy() { mkdir -p "$out"; cp -r "$mnt/artifacts/$name" "$out/vm0fs"; }
check_copy() { # dir: the copy is whole (file count and the big file's size)
  local n s
  n=$(find "$1" -type f | wc -l)
  s=$(stat -c %s "$1/big.bin" 2>/dev/null || echo 0)
  [ "$n" = $((small_files + (big_mb > 0 ? 1 : 0))) ] && { [ "$big_mb" = 0 ] || [ "$s" = "$big_bytes" ]; } ||
    { echo "incomplete copy in $1: $n files, big.bin $s bytes" >&2; return 1; }
}
row_cold() {
  local i hwm tb
  for ((i = 1; i <= repeat; i++)); do
    rm -rf "$out"
    sync
    timed baseline_fetch
    tb=$T
    [ "$i" = 1 ] && check_copy "$out/base"
    sample "cold copy" baseline "$T"
    rm -rf "$out" "$cache"
    sync
    mount_vm0fs "$mnt" "$url" "$cache"
    timed vm0fs_copy
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$vm0fs_pid/status")
    unmount_vm0fs "$mnt"
    [ "$i" = 1 ] && check_copy "$out/vm0fs"
    sample "cold copy" vm0fs "$T"
    sample memory vm0fs "$(awk -v k="$hwm" 'BEGIN{printf "%.2f", k/1024}')"
    say "cold copy $i/$repeat: curl|tar ${tb}s, vm0fs cp -r ${T}s, VmHWM $((hwm / 1024)) MiB"
  done
  rm -rf "$out"
  sync
}

# first byte: head -c1 of the first small file of the archive through a fresh mount and an empty cache
row_first() {
  local i c=$run/cache-first
  for ((i = 1; i <= repeat; i++)); do
    rm -rf "$c"
    sync
    mount_vm0fs "$mnt" "$url" "$c"
    timed head -c1 "$mnt/artifacts/$name/small/000/000000.txt" >/dev/null
    sample "first byte" vm0fs "$T"
    say "first byte $i/$repeat: ${T}s"
    unmount_vm0fs "$mnt"
  done
  rm -rf "$c"
}

# The warm rows need the archive in $cache: the cold copy leaves it there; if that row failed or was skipped, fill it.
tree_dir=""
ensure_warm() {
  local vids
  vids=$(ls "$cache/archives" 2>/dev/null || true)
  if [ "$(printf '%s\n' "$vids" | grep -c .)" != 1 ] || [ ! -d "$cache/archives/$vids/tree" ]; then
    say "filling the warm cache"
    rm -rf "$cache"
    mount_vm0fs "$mnt" "$url" "$cache"
    ls "$mnt/artifacts/$name" >/dev/null   # a listing waits for the whole archive (a stat may be served early)
    unmount_vm0fs "$mnt"
    vids=$(ls "$cache/archives")
  fi
  tree_dir=$cache/archives/$vids/tree
  [ -d "$tree_dir" ]
}

mib_per_s() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.3f", b/1048576/t}'; }

# warm read: dd bs=1M of the cached big file, through a fresh mount (its lookup done first) and in the cache dir
row_warmread() {
  local i
  ensure_warm
  [ "$big_mb" -gt 0 ] || { echo "BENCH_BIG_MB=0: no big file to read" >&2; return 1; }
  for ((i = 1; i <= repeat_warm; i++)); do
    cat "$tree_dir/big.bin" >/dev/null   # both sides read from the page cache
    timed dd if="$tree_dir/big.bin" of=/dev/null bs=1M status=none
    sample "warm read" baseline "$(mib_per_s "$big_bytes" "$T")"
    mount_vm0fs "$mnt" "$url" "$cache"
    stat "$mnt/artifacts/$name/big.bin" >/dev/null
    timed dd if="$mnt/artifacts/$name/big.bin" of=/dev/null bs=1M status=none
    sample "warm read" vm0fs "$(mib_per_s "$big_bytes" "$T")"
    say "warm read $i/$repeat_warm: vm0fs $(mib_per_s "$big_bytes" "$T") MiB/s"
    unmount_vm0fs "$mnt"
  done
}

# warm tree: find -ls then ls -lR over the cached archive, through a fresh mount and on the cache dir
walk() { find "$1" -ls >/dev/null && ls -lR "$1" >/dev/null; }
row_warmtree() {
  local i
  ensure_warm
  for ((i = 1; i <= repeat_warm; i++)); do
    timed walk "$tree_dir"
    sample "warm tree" baseline "$T"
    mount_vm0fs "$mnt" "$url" "$cache"
    stat "$mnt/artifacts/$name" >/dev/null
    cat "$mnt/.vm0fs/status" >"$run/status-before.json"
    timed walk "$mnt/artifacts/$name"
    sample "warm tree" vm0fs "$T"
    cat "$mnt/.vm0fs/status" >"$run/status-after.json"
    mix=$("${py[@]}" mix "$run/status-before.json" "$run/status-after.json")
    [ "$i" = 1 ] && echo "- requests of one warm tree walk (find -ls && ls -lR, new mount): $mix" >>"$requests_md"
    say "warm tree $i/$repeat_warm: vm0fs ${T}s; requests $mix"
    unmount_vm0fs "$mnt"
  done
}

# big listing: ls runs (fresh mount) against fetching every page of /v1/runs with curl
all_pages() {
  local cursor="" page n=0
  while :; do
    page=$(curl -sSf -H "Authorization: Bearer $token" "$url/v1/runs?limit=100${cursor:+&cursor=$cursor}")
    n=$((n + 1))
    cursor=$(printf '%s' "$page" | grep -o '"next_cursor":"[^"]*"' | cut -d'"' -f4 || true)
    [ -n "$cursor" ] || break
  done
  pages=$n
}
list_runs() { ls "$mnt/runs" >"$run/ls-runs.txt"; }
row_listing() {
  local i n
  for ((i = 1; i <= repeat_warm; i++)); do
    timed all_pages
    sample "big listing" baseline "$T"
    mount_vm0fs "$mnt" "$url" "$cache"
    timed list_runs
    sample "big listing" vm0fs "$T"
    n=$(grep -vc '^latest$' "$run/ls-runs.txt" || true)
    [ "$n" -ge "$n_runs" ] || { echo "ls runs listed $n runs, expected $n_runs" >&2; return 1; }
    say "big listing $i/$repeat_warm: curl $pages pages, vm0fs ${T}s ($n runs)"
    unmount_vm0fs "$mnt"
  done
}

# head-of-line: stat of a cached file on a fresh mount while three requests wait on /v1/runs (answering after 3 s),
# against the same stat on a fresh mount with no latency and nothing else in flight
faults() { curl -sSf -X POST -H 'Content-Type: application/json' -d "$1" "$url/_control/faults" >/dev/null; }
hol_file() { stat "$mnt/artifacts/$name/small/000/000000.txt" >/dev/null; }
hol_once() { # side
  local side=$1 bg=() p waiting=0
  faults '{}'
  mount_vm0fs "$mnt" "$url" "$cache"
  if [ "$side" = vm0fs ]; then
    faults '{"latency_ms":3000,"path_prefix":"/v1/runs"}'
    ls "$mnt/runs" >/dev/null 2>&1 & bg+=($!)
    stat "$mnt/runs/latest" >/dev/null 2>&1 & bg+=($!)
    cat "$mnt/runs/latest/status" >/dev/null 2>&1 & bg+=($!)
    pids+=("${bg[@]}")
    sleep 0.3
  fi
  timed hol_file
  sample head-of-line "$side" "$T"
  if [ "$side" = vm0fs ]; then # the scenario is real only if the /v1/runs requests were still waiting
    for p in "${bg[@]}"; do kill -0 "$p" 2>/dev/null && waiting=$((waiting + 1)); done
    faults '{}'
    for p in "${bg[@]}"; do stop_pid "$p" 5; done
    [ "$waiting" -gt 0 ] || { echo "head-of-line: no /v1/runs request was still waiting during the stat" >&2; return 1; }
  fi
  unmount_vm0fs "$mnt"
}
row_hol() {
  local i
  ensure_warm
  for ((i = 1; i <= repeat_warm; i++)); do
    hol_once baseline
    hol_once vm0fs
    say "head-of-line $i/$repeat_warm: vm0fs ${T}s"
  done
}

# live log: a fresh emulator whose runs last 8 s and log every 500 ms; tail -f runs/<id>/logs through the mount
row_livelog() {
  local d=$run/emu-live i agent id rep n
  rm -rf "$d"; mkdir -p "$d"
  start_emulator "$d" --seed demo --run-pending-ms 200 --run-duration-ms 8000 --log-interval-ms 500
  local live_url=$emu_url
  mount_vm0fs "$mnt" "$live_url" "$run/cache-live"
  agent=$(api "$live_url/v1/agents?limit=1" | "${py[@]}" json "d['data'][0]['name']")
  for ((i = 1; i <= live_runs; i++)); do
    id=$(api -X POST -H 'Content-Type: application/json' -d "{\"agent\":\"$agent\",\"prompt\":\"bench\"}" \
      "$live_url/v1/runs" | "${py[@]}" json "d['id']")
    rep=$("${py[@]}" livelog "$mnt" "$id" "$live_url" "$token")
    printf '%s\n' "$rep" >>"$run/livelog.jsonl"
    n=0
    for delay in $(printf '%s' "$rep" | "${py[@]}" json "' '.join(str(x) for x in d['delays']) or 'none'"); do
      [ "$delay" = none ] && break
      sample "live log" vm0fs "$delay"; n=$((n + 1))
    done
    say "live log $i/$live_runs: $n live lines timed; $(printf '%s' "$rep" | "${py[@]}" json "'written %d live entries, missed %d, tail: %s' % (d['live_entries_written'], d['live_entries_missed'], d['tail_stderr'] or 'ok')")"
    if [ "$n" = 0 ]; then
      sample "live log" na "tail -f saw no entry written after it started ($(printf '%s' "$rep" | "${py[@]}" json "'%d lines seen, %d backlog, %d live entries written' % (d['lines_seen'], d['backlog_lines'], d['live_entries_written'])"))"
    fi
  done
  unmount_vm0fs "$mnt"
}

# memory at scale: VmHWM of vm0fs walking (find -ls && ls -lR) an archive of many tiny files, cached, on a new mount
row_memwalk() {
  local i c=$run/cache-many hwm
  if [ ! -d "$c/archives" ]; then
    mount_vm0fs "$mnt" "$url" "$c"
    ls "$mnt/artifacts/many" >/dev/null   # waits for the whole archive
    unmount_vm0fs "$mnt"
  fi
  for ((i = 1; i <= repeat_warm; i++)); do
    mount_vm0fs "$mnt" "$url" "$c"
    timed walk "$mnt/artifacts/many"
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$vm0fs_pid/status")
    unmount_vm0fs "$mnt"
    sample "memory, walk" vm0fs "$(awk -v k="$hwm" 'BEGIN{printf "%.2f", k/1024}')"
    say "memory walk $i/$repeat_warm: $many_files entries in ${T}s, VmHWM $((hwm / 1024)) MiB"
  done
}

# big listing against one keep-alive client: a single Python process paging /v1/runs over one connection
row_listing_keepalive() {
  local i n
  for ((i = 1; i <= repeat_warm; i++)); do
    timed "${py[@]}" pages "$url" "$token" >"$run/pages.txt"
    sample "big listing, keep-alive" baseline "$T"
    mount_vm0fs "$mnt" "$url" "$cache"
    timed list_runs
    sample "big listing, keep-alive" vm0fs "$T"
    n=$(grep -vc '^latest$' "$run/ls-runs.txt" || true)
    [ "$n" -ge "$n_runs" ] || { echo "ls runs listed $n runs, expected $n_runs" >&2; return 1; }
    say "big listing (keep-alive) $i/$repeat_warm: python $(cat "$run/pages.txt") pages, vm0fs ${T}s"
    unmount_vm0fs "$mnt"
  done
}

# Peers: each is mounted in the foreground in the background (so its PID is known), waited for in mountinfo, and
# stopped by PID and unmounted after each measurement.
pmnt=$run/peer-mnt
peer_pid=""
peer_mount() { # name command...: mounts at $pmnt; fails if it does not appear within BENCH_PEER_TIMEOUT
  local name=$1 i; shift
  mkdir -p "$pmnt"; force_unmount "$pmnt"
  "$@" >>"$run/peer-$name.log" 2>&1 &
  peer_pid=$!
  pids+=("$peer_pid"); mounts+=("$pmnt")
  for ((i = 0; i < peer_timeout * 20; i++)); do
    mounted "$pmnt" && return 0
    kill -0 "$peer_pid" 2>/dev/null || { echo "$name exited before mounting; see $run/peer-$name.log" >&2; return 1; }
    sleep 0.05
  done
  echo "$name did not mount within ${peer_timeout}s" >&2
  return 1
}
peer_unmount() {
  fusermount3 -u "$pmnt" 2>/dev/null || fusermount -u "$pmnt" 2>/dev/null || umount "$pmnt" 2>/dev/null || true
  stop_pid "$peer_pid" 10
  force_unmount "$pmnt"
}
# The mount command of each peer, for the tree at $1 (a directory, a squashfs image or a tar.gz).
peer_cmd() { # peer
  case $1 in
    rclone) echo "rclone mount $tree_dir $pmnt --read-only" ;;
    squashfuse) echo "squashfuse_ll -f $run/tree.sqfs $pmnt" ;;
    archivemount) echo "archivemount -f -o readonly $run/bench.tar.gz $pmnt" ;;
    ratarmount) echo "$ratarmount_bin -f $run/bench.tar.gz $pmnt" ;;
  esac
}
peer_ready() { # peer: the peer is installed and its input is made
  local p
  for p in "${peer_missing[@]}"; do [ "${p%%:*}" = "$1" ] && return 1; done
  return 0
}
peer_warm() { # peer: warm tree and warm read through it, with whatever index it keeps already built
  local peer=$1 i n=${peer_repeat:-$repeat_warm}
  for ((i = 1; i <= n; i++)); do
    # shellcheck disable=SC2046
    peer_mount "$peer" $(peer_cmd "$peer")
    stat "$pmnt" >/dev/null
    timed walk "$pmnt"
    sample "warm tree|$peer" peer "$T"
    local tw=$T
    if [ "$big_mb" -gt 0 ]; then
      stat "$pmnt/big.bin" >/dev/null
      if ! timed timeout "$peer_timeout" dd if="$pmnt/big.bin" of=/dev/null bs=1M status=none; then
        T=$peer_timeout
        sample "peers" na "$peer: a warm read was stopped at ${peer_timeout} s; its figure is an upper bound"
      fi
      sample "warm read|$peer" peer "$(mib_per_s "$big_bytes" "$T")"
    fi
    say "peer $peer $i/$n: warm tree ${tw}s, warm read $(mib_per_s "$big_bytes" "$T") MiB/s"
    peer_unmount
  done
}
peer_cold() { # peer: first byte and cold copy from the tar.gz with nothing built yet (mount time included)
  local peer=$1 i n=${peer_repeat:-$repeat}
  for ((i = 1; i <= n; i++)); do
    rm -f "$run"/bench.tar.gz.index.* "$run"/bench.tar.gz.*.sqlite; rm -rf "$out"; sync
    timed peer_first "$peer"
    sample "first byte|$peer" peer "$T"
    local tf=$T
    rm -f "$run"/bench.tar.gz.index.* "$run"/bench.tar.gz.*.sqlite; sync
    if ! timed peer_copy "$peer"; then
      T=$peer_timeout
      sample "peers" na "$peer: a cold copy was stopped at ${peer_timeout} s (BENCH_PEER_TIMEOUT); its figure is a lower bound"
    fi
    sample "cold copy|$peer" peer "$T"
    say "peer $peer cold $i/$n: first byte ${tf}s, cold copy ${T}s"
    rm -rf "$out"
  done
}
# shellcheck disable=SC2046
peer_first() { peer_mount "$1" $(peer_cmd "$1") && head -c1 "$pmnt/small/000/000000.txt" >/dev/null; peer_unmount; }
peer_copy() {
  local rc=0
  # shellcheck disable=SC2046
  peer_mount "$1" $(peer_cmd "$1") || return 1
  mkdir -p "$out"
  timeout "$peer_timeout" cp -r "$pmnt" "$out/peer" || rc=1
  peer_unmount
  return $rc
}
row_peers() {
  local p
  [ "$peers_on" = 1 ] || { echo "BENCH_PEERS=0: peers skipped" >&2; return 0; }
  ensure_warm
  for p in "${peer_missing[@]}"; do sample "peers" na "$p"; done
  curl -sSfL -H "Authorization: Bearer $token" "$download_url" -o "$run/bench.tar.gz"
  if peer_ready squashfuse; then
    say "making a squashfs image of the cached tree (uncompressed)"
    mksquashfs "$tree_dir" "$run/tree.sqfs" -noappend -quiet -no-progress -noI -noD -noF -noX >/dev/null ||
      { peer_missing+=("squashfuse: mksquashfs failed"); sample "peers" na "squashfuse: mksquashfs failed"; }
  fi
  for p in rclone squashfuse archivemount ratarmount; do
    peer_ready "$p" || continue
    if [ "$p" = ratarmount ]; then # its index, built once and kept beside the archive, for the warm rows
      say "ratarmount: building its index"
      peer_mount ratarmount $(peer_cmd ratarmount) && peer_unmount
    fi
    peer_warm "$p" || { sample "peers" na "$p: a warm measurement failed; see $run/peer-$p.log"; peer_unmount; }
  done
  for p in archivemount ratarmount; do
    peer_ready "$p" || continue
    peer_cold "$p" || { sample "peers" na "$p: a cold measurement failed; see $run/peer-$p.log"; peer_unmount; }
  done
  rm -f "$run/tree.sqfs"
}

# Writing volumes (issue 14). Each vm0fs mount here publishes only on `vm0fs sync` (--commit-delay 0).
vol_cache=$run/cache-vol   # the cache of the volume rows' mounts: the published tree becomes its archive
vol_name=""                # the volume the edit and warm-read rows use: the last one `volume upload` published
vol_id() { api "$url/v1/volumes?limit=100" | "${py[@]}" json "[s['id'] for s in d['data'] if s['name']=='$1'][0]"; }
drop_volume() { api -X DELETE "$url/v1/volumes/$(vol_id "$1")" >/dev/null; }
drop_bench_volumes() { # those an earlier invocation left in the kept emulator data
  local id
  for id in $(api "$url/v1/volumes?limit=100" | "${py[@]}" json "' '.join(s['id'] for s in d['data'] if s['name'].startswith('bench-'))"); do
    api -X DELETE "$url/v1/volumes/$id" >/dev/null
  done
}

# CONTRACT.md 7.1 by hand: create the volume, declare every file (size, sha256sum) for an upload session, PUT each
# file to its presigned URL (one curl process, one kept-alive connection), commit.
curl_upload() { # dir name
  local dir=$1 name=$2 id
  id=$(api -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$name\"}" "$url/v1/volumes" | "${py[@]}" json "d['id']")
  (cd "$dir" && find . -type f -print0 | xargs -0 sha256sum >"$run/sums.txt" && "${py[@]}" upload_body "$run/sums.txt" >"$run/upload.json")
  curl_v1_send "$id" "$run/upload.json" "$dir"
}
curl_v1_send() { # volume-id upload-body dir: 7.1 steps 2-4, the files' hashes known (in the body)
  local id=$1 body=$2 dir=$3 session
  api -X POST -H 'Content-Type: application/json' --data-binary @"$body" "$url/v1/volumes/$id/upload" >"$run/reply.json"
  "${py[@]}" put_config "$run/reply.json" "$dir" >"$run/put.cfg"
  curl -sSf -K "$run/put.cfg"
  session=$("${py[@]}" json "d['upload_session_id']" <"$run/reply.json")
  api -X POST -H 'Content-Type: application/json' -d "{\"upload_session_id\":\"$session\"}" "$url/v1/volumes/$id/commit" >/dev/null
}
# CONTRACT.md 7.2 by hand, on the push emulator ($purl): sha256sum of every file (unless SUMS is given: the hashes
# known, as for an edit), prepare, `tar | gzip -1` into a file and `curl -T` of it to the archive's presigned URL
# (a presigned PUT needs its Content-Length: S3, and the emulator, refuse a streamed body with 501), the
# manifest's PUT, commit.
curl_push() { # dir name [sums]
  local dir=$1 name=$2 sums=${3:-}
  if [ -z "$sums" ]; then
    sums=$run/push-sums.txt
    (cd "$dir" && find . -type f -print0 | xargs -0 sha256sum >"$sums")
  fi
  (cd "$dir" && "${py[@]}" push_bodies "$sums" "$name" "$run")
  api -X POST -H 'Content-Type: application/json' --data-binary @"$run/prepare.json" "$purl/api/storages/prepare" >"$run/prepared.json"
  # shellcheck disable=SC2046
  (cd "$dir" && tar -cf - -- $(ls -A)) | gzip -1 >"$run/push.tar.gz"
  curl -sSf -T "$run/push.tar.gz" -H 'Content-Type: application/gzip' -o /dev/null \
    "$("${py[@]}" json "d['uploads']['archive']['presignedUrl']" <"$run/prepared.json")"
  rm -f "$run/push.tar.gz"
  curl -sSf -T "$run/manifest.json" -H 'Content-Type: application/json' -o /dev/null \
    "$("${py[@]}" json "d['uploads']['manifest']['presignedUrl']" <"$run/prepared.json")"
  "${py[@]}" push_commit "$run/prepare.json" "$run/prepared.json" >"$run/commit.json"
  api -X POST -H 'Content-Type: application/json' --data-binary @"$run/commit.json" "$purl/api/storages/commit" >/dev/null
}
vm0fs_upload() { # name
  mkdir "$mnt/volumes/$1" && cp -r "$tree_dir/." "$mnt/volumes/$1/" && "$bin/vm0fs" sync "$mnt/volumes/$1" >/dev/null
}

# volume upload: cp -r of the bench tree into a new volume + vm0fs sync (fresh mount, empty cache), against the
# same upload done with curl; the tree is read once first so that both read it from the page cache
row_volupload() {
  local i tb
  ensure_warm
  drop_bench_volumes
  find "$tree_dir" -type f -exec cat {} + >/dev/null
  for ((i = 1; i <= repeat; i++)); do
    sync
    timed curl_upload "$tree_dir" "bench-curl-$i"
    tb=$T
    sample "volume upload" baseline "$T"
    drop_volume "bench-curl-$i"
    rm -rf "$vol_cache"
    sync
    mount_vm0fs "$mnt" "$url" "$vol_cache" --commit-delay 0
    timed vm0fs_upload "bench-vol-$i"
    sample "volume upload" vm0fs "$T"
    unmount_vm0fs "$mnt"
    [ -n "$vol_name" ] && drop_volume "$vol_name"
    vol_name=bench-vol-$i
    echo "$vol_name" >"$run/volume-name"   # for the next rows, which run in subshells of their own
    say "volume upload $i/$repeat: curl ${tb}s, vm0fs cp -r + sync ${T}s"
  done
}

ensure_volume() { # the volume of the edit and warm-read rows, published through vm0fs (its tree in $vol_cache)
  vol_name=$(cat "$run/volume-name" 2>/dev/null || true)
  [ -n "$vol_name" ] && [ -d "$vol_cache/archives" ] && return 0
  say "publishing the volume of the edit rows"
  drop_bench_volumes
  vol_name=bench-vol-edit
  rm -rf "$vol_cache"
  mount_vm0fs "$mnt" "$url" "$vol_cache" --commit-delay 0
  vm0fs_upload "$vol_name"
  unmount_vm0fs "$mnt"
  echo "$vol_name" >"$run/volume-name"
}
io_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/io"; }

# volume edit: append to one small file of the volume + vm0fs sync, on a mount whose cache holds the head; the time,
# and what vm0fs read meanwhile (/proc/<pid>/io: read_bytes from the disk, rchar through read(2)); against a bare
# upload of the same bytes with curl: the edited tree (a hard-linked copy of the bench tree whose edited file is
# its own and edited the same way), its hashes known beforehand as vm0fs knows them, sent as the version must be
# (CONTRACT.md 7.1: an upload session naming every file, a PUT of every file, the commit)
edited_file=small/000/000000.txt
vol_edit() { echo "edit $1" >>"$mnt/volumes/$vol_name/$edited_file" && "$bin/vm0fs" sync "$mnt/volumes/$vol_name" >/dev/null; }
edited_copy() { # dir: a hard-linked copy of the bench tree, its edited file its own, and its sha256sum in dir.sums
  local dir=$1
  rm -rf "$dir"
  cp -al "$tree_dir" "$dir"
  cp --remove-destination "$tree_dir/$edited_file" "$dir/$edited_file"
  chmod u+w "$dir/$edited_file"
  (cd "$dir" && find . -type f -print0 | xargs -0 sha256sum >"$dir.sums")
}
edit_copy() { # dir i: the copy edited as `vol_edit i` edits the volume, its hash line updated (not timed)
  local dir=$1 h
  echo "edit $2" >>"$dir/$edited_file"
  h=$(sha256sum <"$dir/$edited_file" | cut -d' ' -f1)
  awk -v f="./$edited_file" -v h="$h" '{ if (substr($0, 67) == f) print h "  " f; else print }' "$dir.sums" >"$dir.sums.new"
  mv "$dir.sums.new" "$dir.sums"
}
vm0fs_edit_sample() { # row i: one timed vol_edit on a fresh mount (already up), with what vm0fs read
  local row=$1 i=$2 rb rc
  # (untimed) the head in the cache: a version pushed with modes is not adopted from the staged files, and is
  # downloaded at its first read
  cat "$mnt/volumes/$vol_name/$edited_file" >/dev/null
  sync
  rb=$(io_field "$vm0fs_pid" read_bytes); rc=$(io_field "$vm0fs_pid" rchar)
  timed vol_edit "$i"
  rb=$(( $(io_field "$vm0fs_pid" read_bytes) - rb )); rc=$(( $(io_field "$vm0fs_pid" rchar) - rc ))
  sample "$row" vm0fs "$T"
  sample "$row, disk read" vm0fs "$(awk -v b="$rb" 'BEGIN{printf "%.3f", b/1048576}')"
  sample "$row, read(2)" vm0fs "$(awk -v b="$rc" 'BEGIN{printf "%.3f", b/1048576}')"
  say "$row $i: vm0fs ${T}s, read_bytes $((rb >> 20)) MiB, rchar $((rc >> 20)) MiB"
}
row_voledit() {
  local i id copy=$run/edit-v1
  ensure_warm
  ensure_volume
  edited_copy "$copy"
  id=$(api -X POST -H 'Content-Type: application/json' -d '{"name":"bench-edit-curl"}' "$url/v1/volumes" | "${py[@]}" json "d['id']")
  for ((i = 1; i <= repeat_warm; i++)); do
    mount_vm0fs "$mnt" "$url" "$vol_cache" --commit-delay 0
    vm0fs_edit_sample "volume edit" "$i"
    unmount_vm0fs "$mnt"
    edit_copy "$copy" "$i"
    (cd "$copy" && "${py[@]}" upload_body "$copy.sums" >"$run/edit-upload.json")
    find "$copy" -type f -exec cat {} + >/dev/null
    sync
    timed curl_v1_send "$id" "$run/edit-upload.json" "$copy"
    sample "volume edit" baseline "$T"
    say "volume edit $i/$repeat_warm: curl ${T}s"
  done
  drop_volume bench-edit-curl
  rm -rf "$copy" "$copy.sums"
}

# The same two rows on the storage push flow (CONTRACT.md 7.2), which vm0fs uses on a server without the /v1 upload:
# an emulator of its own with --no-v1-upload and no push size limit (the platform's is 100 MiB; the rows measure
# the transport), a vm0fs mount that finds /v1 missing on its first publish and pushes from then on.
purl=""
row_volpush() {
  local i tb pcache=$run/cache-push copy=$run/edit-push
  ensure_warm
  find "$tree_dir" -type f -exec cat {} + >/dev/null
  rm -rf "$run/push-data"; mkdir -p "$run/push-data"
  start_emulator "$run/push-data" --no-v1-upload --max-push-bytes $((64 << 30))
  purl=$emu_url
  for ((i = 1; i <= repeat; i++)); do
    sync
    timed curl_push "$tree_dir" "bench-pcurl-$i"
    tb=$T
    sample "volume upload, push" baseline "$T"
    rm -rf "$pcache"
    sync
    mount_vm0fs "$mnt" "$purl" "$pcache" --commit-delay 0
    timed vm0fs_upload "bench-push-$i"
    sample "volume upload, push" vm0fs "$T"
    unmount_vm0fs "$mnt"
    say "volume upload, push $i/$repeat: curl ${tb}s, vm0fs cp -r + sync ${T}s"
  done
  vol_name=bench-push-$repeat
  edited_copy "$copy"
  for ((i = 1; i <= repeat_warm; i++)); do
    mount_vm0fs "$mnt" "$purl" "$pcache" --commit-delay 0
    vm0fs_edit_sample "volume edit, push" "$i"
    unmount_vm0fs "$mnt"
    edit_copy "$copy" "$i"
    find "$copy" -type f -exec cat {} + >/dev/null
    sync
    timed curl_push "$copy" bench-pcurl-edit "$copy.sums"
    sample "volume edit, push" baseline "$T"
    say "volume edit, push $i/$repeat_warm: curl ${T}s"
  done
  rm -rf "$copy" "$copy.sums" "$pcache" "$run/push-data"
}

# volume warm read: dd bs=1M of the volume's big file, untouched, while another file of the volume is staged,
# against dd of the same file in the cache directory
row_volwarmread() {
  local i head file
  ensure_warm
  ensure_volume
  [ "$big_mb" -gt 0 ] || { echo "BENCH_BIG_MB=0: no big file to read" >&2; return 1; }
  for ((i = 1; i <= repeat_warm; i++)); do
    mount_vm0fs "$mnt" "$url" "$vol_cache" --commit-delay 0
    head=$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.vm0.version").decode())' "$mnt/volumes/$vol_name")
    file=$vol_cache/archives/$head/tree/big.bin
    echo "staged $i" >"$mnt/volumes/$vol_name/staged.txt"
    cat "$file" >/dev/null   # both sides read from the page cache
    timed dd if="$file" of=/dev/null bs=1M status=none
    sample "volume warm read" baseline "$(mib_per_s "$big_bytes" "$T")"
    stat "$mnt/volumes/$vol_name/big.bin" >/dev/null
    timed dd if="$mnt/volumes/$vol_name/big.bin" of=/dev/null bs=1M status=none
    sample "volume warm read" vm0fs "$(mib_per_s "$big_bytes" "$T")"
    say "volume warm read $i/$repeat_warm: vm0fs $(mib_per_s "$big_bytes" "$T") MiB/s"
    rm "$mnt/volumes/$vol_name/staged.txt"
    unmount_vm0fs "$mnt"
  done
}


# ---------------------------------------------------------------------------------------------------------------
# Writes at the disk's speed (issue 23). Every vm0fs side is a new mount (--commit-delay 0: nothing is published
# while it is timed); its staged changes are discarded before it is unmounted, so that unmounting publishes nothing.
wdir=$run/writes          # on the cache's disk, like the staging area
wcache=$run/cache-writes
small_tar=$run/small.tar

ensure_small_tar() { # the bench's small files as one tar, read once so that every side reads it from the page cache
  ensure_warm
  [ -s "$small_tar" ] || tar -C "$tree_dir" -cf "$small_tar" small
  cat "$small_tar" >/dev/null
}
untar() { tar -C "$1" -xf "$small_tar"; }
discard_and_unmount() { # volume-path
  "$bin/vm0fs" discard "$1" >/dev/null
  unmount_vm0fs "$mnt"
}
hwm_mib() { awk '/VmHWM/{printf "%.2f", $2/1024}' "/proc/$1/status"; }
fresh_dir() { rm -rf "$1"; mkdir -p "$1"; }

# small files: tar x of the small files into a new volume, into bindfs over a directory of the cache's disk, into
# that directory; the requests per file from the mount's counters; and rclone's write cache as the peer
row_smallfiles() {
  local i n_req hwm peak=0
  ensure_small_tar
  drop_bench_volumes
  for ((i = 1; i <= repeat_warm; i++)); do
    fresh_dir "$wdir/disk"; sync
    timed untar "$wdir/disk"
    sample "small files, vs the disk" baseline "$T"
    say "small files $i/$repeat_warm: the directory ${T}s"
    if [ ${#write_missing[@]} = 0 ]; then
      fresh_dir "$wdir/bindfs-src"; sync
      peer_mount bindfs bindfs -f --no-allow-other "$wdir/bindfs-src" "$pmnt"
      timed untar "$pmnt"
      peer_unmount
      sample "small files, vs bindfs" baseline "$T"
      say "small files $i/$repeat_warm: bindfs ${T}s"
      if [ "$peers_on" = 1 ]; then
        fresh_dir "$wdir/rclone-src"; fresh_dir "$wdir/rclone-cache"; sync
        peer_mount rclone rclone mount "$wdir/rclone-src" "$pmnt" --vfs-cache-mode writes --cache-dir "$wdir/rclone-cache"
        timed untar "$pmnt"
        peer_unmount
        sample "small files|rclone" peer "$T"
        say "small files $i/$repeat_warm: rclone --vfs-cache-mode writes ${T}s"
      fi
    else
      sample "small files, vs bindfs" na "not installed: ${write_missing[*]} (Debian packages)"
    fi
    rm -rf "$wcache"; sync
    mount_vm0fs "$mnt" "$url" "$wcache" --commit-delay 0
    mkdir "$mnt/volumes/bench-tar-$i"
    cat "$mnt/.vm0fs/status" >"$run/status-before.json"
    timed untar "$mnt/volumes/bench-tar-$i"
    cat "$mnt/.vm0fs/status" >"$run/status-after.json"
    sample "small files, vs bindfs" vm0fs "$T"
    sample "small files, vs the disk" vm0fs "$T"
    n_req=$("${py[@]}" per_file "$run/status-before.json" "$run/status-after.json" "$small_files")
    sample "requests per file" vm0fs "$n_req"
    mix=$("${py[@]}" mix "$run/status-before.json" "$run/status-after.json")
    [ "$i" = 1 ] && echo "- requests of one tar x of the $small_files small files into a volume (new mount): $mix" >>"$requests_md"
    hwm=$(hwm_mib "$vm0fs_pid")
    say "small files $i/$repeat_warm: vm0fs ${T}s, $n_req requests per file, VmHWM ${hwm} MiB"
    peak=$(awk -v a="$peak" -v b="$hwm" 'BEGIN{print (b > a) ? b : a}')
    discard_and_unmount "$mnt/volumes/bench-tar-$i"
    drop_volume "bench-tar-$i"
  done
  echo "$peak" >"$run/writes-peak"
}

# venv: python3 -m venv --copies into a new volume against the same on the cache's disk
row_venv() {
  local i hwm
  for ((i = 1; i <= repeat_warm; i++)); do
    fresh_dir "$wdir/venv-disk"; sync
    timed python3 -m venv --copies "$wdir/venv-disk/venv"
    sample "venv" baseline "$T"
    rm -rf "$wcache"; sync
    mount_vm0fs "$mnt" "$url" "$wcache" --commit-delay 0
    mkdir "$mnt/volumes/bench-venv-$i"
    timed python3 -m venv --copies "$mnt/volumes/bench-venv-$i/venv"
    sample "venv" vm0fs "$T"
    hwm=$(hwm_mib "$vm0fs_pid")
    say "venv $i/$repeat_warm: vm0fs ${T}s, VmHWM ${hwm} MiB"
    awk -v a="$(cat "$run/writes-peak" 2>/dev/null || echo 0)" -v b="$hwm" 'BEGIN{print (b > a) ? b : a}' >"$run/writes-peak.new"
    mv "$run/writes-peak.new" "$run/writes-peak"
    discard_and_unmount "$mnt/volumes/bench-venv-$i"
    drop_volume "bench-venv-$i"
  done
  rm -rf "$wdir/venv-disk"
}

# memory, staged: VmHWM with BENCH_STAGED_FILES files staged in one volume (1,000 to a directory); and the peak
# VmHWM of the small files and venv rows above
stage_many() { # dir count
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "%03d" % (i // 1000))
    if i % 1000 == 0:
        os.mkdir(d)
    with open(os.path.join(d, "%06d.txt" % i), "w") as f:
        f.write("%d\n" % i)
PY
}
row_memstaged() {
  local hwm
  [ -s "$run/writes-peak" ] && sample "memory, writes" vm0fs "$(cat "$run/writes-peak")"
  rm -rf "$wcache"
  mount_vm0fs "$mnt" "$url" "$wcache" --commit-delay 0
  mkdir "$mnt/volumes/bench-staged"
  timed stage_many "$mnt/volumes/bench-staged" "$staged_files"
  hwm=$(hwm_mib "$vm0fs_pid")
  sample "memory, staged" vm0fs "$hwm"
  say "memory, staged: $staged_files files staged in ${T}s, VmHWM ${hwm} MiB"
  discard_and_unmount "$mnt/volumes/bench-staged"
  drop_volume bench-staged
}

# ---------------------------------------------------------------------------------------------------------------

for r in $rows; do
  case $r in
    cold) row "cold copy" row_cold ;;
    first) row "first byte" row_first ;;
    warmread) row "warm read" row_warmread ;;
    warmtree) row "warm tree" row_warmtree ;;
    listing) row "big listing" row_listing; row "big listing, keep-alive" row_listing_keepalive ;;
    peers) row "peers" row_peers ;;
    memwalk) row "memory, walk" row_memwalk ;;
    hol) row "head-of-line" row_hol ;;
    livelog) row "live log" row_livelog ;;
    volumes) row "volume upload" row_volupload; row "volume edit" row_voledit; row "volume warm read" row_volwarmread
      row "volume push" row_volpush ;;
    writes) row "small files" row_smallfiles; row "venv" row_venv; row "memory, staged" row_memstaged ;;
    volwarmread) row "volume warm read" row_volwarmread ;;   # (also in `volumes`) the staged warm read alone
    volpush) row "volume push" row_volpush ;;                # (also in `volumes`) the push flow's rows alone
    *) echo "bench.sh: unknown row $r in BENCH_ROWS" >&2; exit 2 ;;
  esac
done

total=$(awk -v a="$script_t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}')
echo "- bench wall time: ${total} s" >>"$machine"
[ -s "$requests_md" ] && cat "$requests_md" >>"$machine"
cat "$machine"
echo
set +e
"${py[@]}" table "$samples" "$machine" "$bench/results.md"
table_rc=$?
set -e
cp "$samples" "$bench/samples.tsv"
echo
echo "written to target/bench/results.md (samples: target/bench/samples.tsv, vm0fs log: target/bench/run/vm0fs.log)"
[ "$any_error" = 0 ] && [ "$table_rc" = 0 ]
