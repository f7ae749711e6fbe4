#!/usr/bin/env bash
# Benchmark: the same workloads on local Btrfs and on Brickfs volumes, in one run, with ratios.
#   bench/run.sh [--quick] [--locks]
# --locks: only the lock workloads (sqlite3 counter from 1 and 4 processes, fcntl lock round trip).
# BRICKFS_BENCH_DIR (default /var/tmp/brickfs-bench) and BRICKFS_BENCH_PORT (default 24199; the
# replica-3 bricks use the next three ports) let two runs on one machine stay apart;
# BRICKFS_BENCH_PREFIX=DIR publishes mount.brickfs and brickd there instead of running install.sh.
# Each target gets its own loop-mounted Btrfs image of the same size on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: must run as root" >&2; exit 1; }
if [ -n "${BRICKFS_BENCH_PREFIX:-}" ]; then
  # Programs published privately (release build), so a shared /opt/brickfs that other runs
  # are using is left alone.
  for proj in client-fuse/Brickfs.ClientFuse.csproj brickd/Brickfs.Brickd.csproj; do
    dotnet publish "$proj" -c Release -o "$BRICKFS_BENCH_PREFIX" --nologo -v q >/dev/null
  done
  export PATH="$BRICKFS_BENCH_PREFIX:$PATH"
else
  ./install.sh >/dev/null
fi
dotnet build bench/Brickfs.Bench.csproj -c Release --nologo -v q >/dev/null

W=${BRICKFS_BENCH_DIR:-/var/tmp/brickfs-bench}
BASE_PORT=${BRICKFS_BENCH_PORT:-24199}
# A FUSE mount whose brick is gone fails stat (ENOTCONN), so mountpoint(1) cannot tell: ask /proc/mounts.
mounted() { grep -q " $1 " /proc/mounts; }
unmount() { if mounted "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi; }
cleanup() {
  for m in "$W/mnt-local-volume" "$W/mnt-net-volume" "$W/mnt-rep3-volume"; do unmount "$m"; done
  for f in "$W"/brickd*.pid; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
  for m in "$W/local" "$W/brick-local" "$W/brick-net" "$W/brick-r0" "$W/brick-r1" "$W/brick-r2"; do unmount "$m"; done
}
trap cleanup EXIT
cleanup
mkdir -p "$W"
img() { # name -> mounted btrfs dir
  rm -f "$W/$1.img"; truncate -s 6G "$W/$1.img"; mkfs.btrfs -q -f "$W/$1.img" >/dev/null 2>&1
  mkdir -p "$W/$1"; mount -o loop "$W/$1.img" "$W/$1"
}
img local
img brick-local
img brick-net
img brick-r0
img brick-r1
img brick-r2

# Local volume: the graph in the mount process over storage/posix on its own Btrfs image.
sed "s#/srv/brickfs/local#$W/brick-local#" volfiles/local-posix.vol > "$W/local-volume.vol"
mkdir -p "$W/mnt-local-volume"
mount.brickfs --volfile "$W/local-volume.vol" "$W/mnt-local-volume"

# Network volume: one brickd over loopback TCP, brick on its own Btrfs image.
PORT=$BASE_PORT
cat > "$W/brick-net.vol" <<VOL
volume bench-posix
    type storage/posix
    option directory $W/brick-net
end-volume
volume bench-locks
    type features/locks
    subvolumes bench-posix
end-volume
volume bench-server
    type protocol/server
    option listen-host 127.0.0.1
    option listen-port $PORT
    subvolumes bench-locks
end-volume
VOL
cat > "$W/net-volume.vol" <<VOL
volume bench-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $PORT
    option remote-subvolume bench-locks
end-volume
VOL
brickd --volfile "$W/brick-net.vol" --log-file "$W/brickd.log" --pid-file "$W/brickd.pid" &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
mkdir -p "$W/mnt-net-volume"
mount.brickfs --volfile "$W/net-volume.vol" "$W/mnt-net-volume"

# ---- bitrot block: brickfs-net1-bitrot, the net1 volume with features/bitrot on its brick ----
# Same as brickfs-net1 (one brickd over loopback, own Btrfs image) plus features/bitrot (and
# features/index, as brickd stacks them), so the two figures give the cost of checksumming.
BITROT_PORT=24198
bitrot_cleanup() {
  unmount "$W/mnt-net-bitrot"
  [ -f "$W/brickd-bitrot.pid" ] && kill "$(cat "$W/brickd-bitrot.pid")" 2>/dev/null || true
  unmount "$W/brick-net-bitrot"
}
trap 'bitrot_cleanup; cleanup' EXIT
bitrot_cleanup
img brick-net-bitrot
cat > "$W/brick-net-bitrot.vol" <<VOL
volume bitrot-posix
    type storage/posix
    option directory $W/brick-net-bitrot
end-volume
volume bitrot-bitrot
    type features/bitrot
    subvolumes bitrot-posix
end-volume
volume bitrot-index
    type features/index
    subvolumes bitrot-bitrot
end-volume
volume bitrot-locks
    type features/locks
    subvolumes bitrot-index
end-volume
volume bitrot-server
    type protocol/server
    option listen-host 127.0.0.1
    option listen-port $BITROT_PORT
    subvolumes bitrot-locks
end-volume
VOL
cat > "$W/net-bitrot-volume.vol" <<VOL
volume bitrot-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $BITROT_PORT
    option remote-subvolume bitrot-locks
end-volume
VOL
brickd --volfile "$W/brick-net-bitrot.vol" --log-file "$W/brickd-bitrot.log" --pid-file "$W/brickd-bitrot.pid" &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$BITROT_PORT) 2>/dev/null && break; sleep 0.1; done
mkdir -p "$W/mnt-net-bitrot"
mount.brickfs --volfile "$W/net-bitrot-volume.vol" "$W/mnt-net-bitrot"
BITROT_TARGETS=(brickfs-net1-bitrot="$W/mnt-net-bitrot")
# ---- end of bitrot block ----

# Replica 3: three brickd processes over loopback TCP, each brick on its own Btrfs image,
# the brick graph brickd's way (locks, index, posix), cluster/replicate in the mount.
listening() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rep_brick() { # i -> starts brickd for brick-r$i on port BASE_PORT+1+i
  local i=$1 port=$((BASE_PORT + 1 + $1))
  cat > "$W/brick-r$i.vol" <<VOL
volume r$i-posix
    type storage/posix
    option directory $W/brick-r$i
end-volume
volume r$i-index
    type features/index
    subvolumes r$i-posix
end-volume
volume r$i
    type features/locks
    subvolumes r$i-index
end-volume
volume r$i-server
    type protocol/server
    option listen-host 127.0.0.1
    option listen-port $port
    subvolumes r$i
end-volume
VOL
  brickd --volfile "$W/brick-r$i.vol" --log-file "$W/brickd-r$i.log" --pid-file "$W/brickd-r$i.pid" &
  listening "$port" || { echo "bench/run.sh: brickd r$i does not listen on $port" >&2; exit 1; }
}
: > "$W/rep3-volume.vol"
for i in 0 1 2; do
  rep_brick "$i"
  cat >> "$W/rep3-volume.vol" <<VOL
volume rep3-client-$i
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $((BASE_PORT + 1 + i))
    option remote-subvolume r$i
end-volume
VOL
done
cat >> "$W/rep3-volume.vol" <<VOL
volume rep3
    type cluster/replicate
    subvolumes rep3-client-0 rep3-client-1 rep3-client-2
end-volume
VOL
mkdir -p "$W/mnt-rep3-volume"
mount.brickfs --volfile "$W/rep3-volume.vol" "$W/mnt-rep3-volume"

dotnet bench/bin/Release/net10.0/brickfs-bench.dll "$@" \
  btrfs="$W/local" brickfs-local="$W/mnt-local-volume" brickfs-net1="$W/mnt-net-volume" brickfs-rep3="$W/mnt-rep3-volume" "${BITROT_TARGETS[@]}"

for a in "$@"; do [ "$a" = --locks ] && exit 0; done

# Heal after a brick's return: brick r2 misses one big file, then brickfs-shd --once copies it.
HEAL_MIB=1024
for a in "$@"; do [ "$a" = --quick ] && HEAL_MIB=256; done
dotnet build mgmt/shd/Brickfs.Shd.csproj -c Release --nologo -v q >/dev/null
kill "$(cat "$W/brickd-r2.pid")"; rm -f "$W/brickd-r2.pid"
dd if=/dev/urandom of="$W/mnt-rep3-volume/heal-me" bs=1M count="$HEAL_MIB" conv=fsync status=none
rep_brick 2
sync; echo 3 > /proc/sys/vm/drop_caches
start=$(date +%s.%N)
dotnet mgmt/shd/bin/Release/net10.0/brickfs-shd.dll --volfile "$W/rep3-volume.vol" --once 2>"$W/shd.log"
end=$(date +%s.%N)
cmp -s "$W/brick-r0/heal-me" "$W/brick-r2/heal-me" || { echo "bench/run.sh: heal-me differs on r2 after heal" >&2; exit 1; }
awk -v m="$HEAL_MIB" -v s="$start" -v e="$end" 'BEGIN { printf "heal of a %d MiB file after a brick'"'"'s return (brickfs-shd --once, whole pass): %.1f s, %.0f MiB/s\n", m, e - s, m / (e - s) }'
