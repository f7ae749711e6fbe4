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
cleanup() {
  for m in "$W/mnt-local-volume" "$W/local" "$W/brick-local"; do
    if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
}
trap cleanup EXIT
cleanup
mkdir -p "$W"
img() { # name -> mounted btrfs dir
  rm -f "$W/$1.img"; truncate -s 6G "$W/$1.img"; mkfs.btrfs -q -f "$W/$1.img"
  mkdir -p "$W/$1"; mount -o loop "$W/$1.img" "$W/$1"
}
img local
img brick-local

# Local volume: the graph in the mount process over storage/posix on its own Btrfs image.
sed "s#/srv/brickfs/local#$W/brick-local#" volfiles/local-posix.vol > "$W/local-volume.vol"
mkdir -p "$W/mnt-local-volume"
mount.brickfs --volfile "$W/local-volume.vol" "$W/mnt-local-volume"

dotnet bench/bin/Release/net10.0/brickfs-bench.dll "$@" \
  btrfs="$W/local" brickfs-local="$W/mnt-local-volume"
