#!/usr/bin/env bash
# Benchmark: the same workloads on local Btrfs and on Brickfs volumes, in one run, with ratios.
#   bench/run.sh [--quick]
# Each target gets its own loop-mounted Btrfs image of the same size on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: must run as root" >&2; exit 1; }
./install.sh >/dev/null
dotnet build bench/Brickfs.Bench.csproj -c Release --nologo -v q >/dev/null

W=/var/tmp/brickfs-bench
# A FUSE mount whose brick is gone fails stat (ENOTCONN), so mountpoint(1) cannot tell: ask /proc/mounts.
mounted() { grep -q " $1 " /proc/mounts; }
unmount() { if mounted "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi; }
cleanup() {
  for m in "$W/mnt-local-volume" "$W/mnt-net-volume"; do unmount "$m"; done
  [ -f "$W/brickd.pid" ] && kill "$(cat "$W/brickd.pid")" 2>/dev/null || true
  for m in "$W/local" "$W/brick-local" "$W/brick-net"; do unmount "$m"; done
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

# Local volume: the graph in the mount process over storage/posix on its own Btrfs image.
sed "s#/srv/brickfs/local#$W/brick-local#" volfiles/local-posix.vol > "$W/local-volume.vol"
mkdir -p "$W/mnt-local-volume"
mount.brickfs --volfile "$W/local-volume.vol" "$W/mnt-local-volume"

# Network volume: one brickd over loopback TCP, brick on its own Btrfs image.
PORT=24199
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

dotnet bench/bin/Release/net10.0/brickfs-bench.dll "$@" \
  btrfs="$W/local" brickfs-local="$W/mnt-local-volume" brickfs-net1="$W/mnt-net-volume" "${BITROT_TARGETS[@]}"
