#!/usr/bin/env bash
# Runs every test of vm0fs: installs what the tests need (as root: Debian's fuse3 for fusermount3 and mount.fuse,
# man-db for the man page test, attr for getfattr in the guide test, rsync for the volume write tests), builds,
# and runs unit tests plus the integration tests, which mount real FUSE filesystems against the local emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v diff >/dev/null 2>&1 || missing+=(diffutils)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v getfattr >/dev/null 2>&1 || missing+=(attr)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: please install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
if [ ! -e /dev/fuse ]; then
  echo "test.sh: /dev/fuse is missing; the mount tests need FUSE (load the fuse module, or run the container with --device /dev/fuse)" >&2
  exit 1
fi

# The POSIX suites (tests/posix.rs) run pjdfstest and fsx, built from crates.io once into target/tools (or
# $VM0FS_TEST_TOOLS, e.g. a directory CI caches); a tool already there at the pinned version is not rebuilt.
# Both build in about 4 minutes of one core together (fsx 2 min, pjdfstest 1.5 min), release profile, --locked.
tools="${VM0FS_TEST_TOOLS:-$PWD/target/tools}"
install_tool() { # crate version
  if [ "$("$tools/bin/$1" --version 2>/dev/null)" != "$1 $2" ]; then
    echo "test.sh: installing $1 $2 into $tools"
    cargo install --quiet --locked --force --root "$tools" "$1@$2"
  fi
}
install_tool pjdfstest 0.2.2
install_tool fsx 0.3.2

cargo build --locked --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
  cargo test --locked --workspace --doc
else
  cargo test --locked --workspace --no-fail-fast
fi
