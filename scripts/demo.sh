#!/usr/bin/env bash
# The vm0fs demo: builds, starts the local VM0 API emulator with demo data, mounts it, shows the tree, and then the
# round trip: a file put into a new volume, `vm0fs sync`, a run whose request names that volume, its log followed
# with `tail -f` until it ends, and the artifact it produced copied out with `cp -rL`. Each step is printed as the
# command and its output. Everything lives under $VM0FS_DEMO_DIR (default /tmp/vm0fs-demo); $VM0FS_DEMO_BIN, when
# set, is a directory holding vm0fs and vm0-emulator already built (no build then). With a terminal it keeps the
# mount until you press Enter; without one (or with --no-wait) it cleans up at once. --keep leaves both running and
# says how to stop.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=wait
case "${1:-}" in
  --keep) mode=keep ;;
  --no-wait) mode=now ;;
  "") [ -t 0 ] || mode=now ;;
  *) echo "usage: scripts/demo.sh [--keep|--no-wait]" >&2; exit 2 ;;
esac

demo=${VM0FS_DEMO_DIR:-/tmp/vm0fs-demo}
mkdir -p "$demo/data" "$demo/mnt" "$demo/cache"
if ! command -v fusermount3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

if [ -n "${VM0FS_DEMO_BIN:-}" ]; then
  bin=$VM0FS_DEMO_BIN
else
  cargo build --locked --workspace --bins
  bin=target/debug
fi

# A mount left by an earlier demo that was killed.
if grep -q " $demo/mnt " /proc/self/mountinfo; then "$bin/vm0fs" unmount --lazy "$demo/mnt" || true; fi

"$bin/vm0-emulator" --listen 127.0.0.1:0 --data "$demo/data" --seed demo >"$demo/emulator.out" 2>"$demo/emulator.log" &
emulator_pid=$!
url=""
for _ in $(seq 1 300); do
  url=$(head -n1 "$demo/emulator.out" 2>/dev/null || true)
  [ -n "$url" ] && break
  kill -0 "$emulator_pid" 2>/dev/null || { echo "demo: the emulator failed:" >&2; cat "$demo/emulator.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "demo: the emulator did not start" >&2; kill "$emulator_pid"; exit 1; }

cleanup() {
  "$bin/vm0fs" unmount "$demo/mnt" 2>/dev/null || "$bin/vm0fs" unmount --lazy "$demo/mnt" 2>/dev/null || true
  kill "$emulator_pid" 2>/dev/null || true
}
[ "$mode" = keep ] || trap cleanup EXIT

export VM0_API_KEY=vm0_live_demo
"$bin/vm0fs" mount "$demo/mnt" --api-url "$url" --cache-dir "$demo/cache"

m="$demo/mnt"
show() { printf '\n$ %s\n' "$*"; "$@"; }
echo "vm0fs: the emulator at $url is mounted on $m"
show ls "$m"
show ls "$m/agents" "$m/volumes" "$m/artifacts"
show sh -c "ls $m/runs | head -5"
show cat "$m/agents/coder/agent.json"
show cat "$m/runs/latest/status"
show find "$m/volumes/input-data"
show cat "$m/volumes/configs/app.yaml"
show ls -l "$m/artifacts/report"

echo
echo "The round trip: a file into a new volume, published, read by a run; the run's artifact copied out."
show mkdir "$m/volumes/demo-notes"
show sh -c "echo 'Ship the demo on Friday.' > $m/volumes/demo-notes/notes.md"
show "$bin/vm0fs" sync "$m/volumes/demo-notes"
request='{"prompt": "Summarise notes.md", "volumes": {"demo-notes": "latest"}, "artifact_name": "demo-report"}'
show sh -c "printf '%s\n' '$request' > $m/runs/new/coder.json"
printf '\n$ %s\n' "cat $m/runs/new/coder.json"
id=$(cat "$m/runs/new/coder.json")
echo "$id"
# `vm0fs wait` ends when the run does; `tail --pid` follows the log until then.
"$bin/vm0fs" wait --timeout 120 "$m/runs/$id" >/dev/null &
waiter=$!
show tail -f --pid="$waiter" "$m/runs/$id/logs"
wait "$waiter" || true
show cat "$m/runs/$id/status"
for _ in $(seq 1 100); do [ -L "$m/runs/$id/artifact" ] && break; sleep 0.1; done
show ls -l "$m/runs/$id/artifact"
rm -rf "$demo/out" && mkdir -p "$demo/out"
show cp -rL "$m/runs/$id/artifact" "$demo/out/"
show find "$demo/out"
show cat "$demo/out/artifact/result.md"

case "$mode" in
  keep) echo; echo "Left running. Stop with: $bin/vm0fs unmount $m && kill $emulator_pid" ;;
  wait) echo; read -r -p "Press Enter to unmount and stop the emulator... " _ ;;
  now) ;;
esac
