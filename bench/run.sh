#!/usr/bin/env bash
# Benchmark: the same workloads on local Btrfs and on Brickfs volumes, in one run, with ratios.
#   bench/run.sh [--quick] [--distribute] [--locks]
# --locks: only the lock workloads (sqlite3 counter from 1 and 4 processes, fcntl lock round trip).
# --distribute runs the distribute scaling figures instead: one brickd (brickfs-net1) against
# cluster/distribute over three brickd processes (brickfs-dist3), small files from 8 parallel
# workers (all in one directory, then a directory per worker) and ls -l of a 10,000-file directory.
# BRICKFS_BENCH_DIR (default /var/tmp/brickfs-bench) and BRICKFS_BENCH_PORT (default 24199; the
# replica-3 bricks use the next three ports, the bitrot bricks the two before) let two runs on
# one machine stay apart; BRICKFS_BENCH_TARGETS picks targets (see below);
# BRICKFS_BENCH_PREFIX=DIR publishes mount.brickfs and brickd there instead of running install.sh.
# BRICKFS_BENCH_HEAL_MIB sets the size of the healed file (default 1024, 256 with --quick).
# Each target gets its own loop-mounted Btrfs image of the same size on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALING=0
ARGS=()
for a in "$@"; do
  if [ "$a" = --distribute ]; then SCALING=1; else ARGS+=("$a"); fi
done
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: must run as root" >&2; exit 1; }
if [ -n "${BRICKFS_BENCH_PREFIX:-}" ]; then
  # Programs published privately (release build), so a shared /opt/brickfs that other runs
  # are using is left alone.
  scripts/publish.sh "$BRICKFS_BENCH_PREFIX" client-fuse/Brickfs.ClientFuse.csproj brickd/Brickfs.Brickd.csproj
  export PATH="$BRICKFS_BENCH_PREFIX:$PATH"
else
  ./install.sh >/dev/null
fi
dotnet build bench/Brickfs.Bench.csproj -c Release --nologo -v q >/dev/null

W=${BRICKFS_BENCH_DIR:-/var/tmp/brickfs-bench}
BASE_PORT=${BRICKFS_BENCH_PORT:-24199}
# BRICKFS_BENCH_TARGETS="NAME NAME ..." runs only those targets, in that order, the first being
# the baseline of the ratios (e.g. "brickfs-net1-bitrot-off brickfs-net1-bitrot" for the cost
# of checksumming); default: every target with local Btrfs first. The heal figure needs brickfs-rep3.
# brickfs-dist3 is only in the --distribute run unless named here.
ALL_TARGETS="btrfs brickfs-local brickfs-net1 brickfs-rep3 brickfs-net1-bitrot-off brickfs-net1-bitrot brickfs-dist3"
DEFAULT_TARGETS="btrfs brickfs-local brickfs-net1 brickfs-rep3 brickfs-net1-bitrot-off brickfs-net1-bitrot"
[ "$SCALING" = 1 ] && DEFAULT_TARGETS="brickfs-net1 brickfs-dist3"
TARGETS=${BRICKFS_BENCH_TARGETS:-$DEFAULT_TARGETS}
for t in $TARGETS; do
  case " $ALL_TARGETS " in *" $t "*) ;; *) echo "bench/run.sh: unknown target $t (known: $ALL_TARGETS)" >&2; exit 1;; esac
done
wanted() { case " $TARGETS " in *" $1 "*) return 0;; *) return 1;; esac; }
# A FUSE mount whose brick is gone fails stat (ENOTCONN), so mountpoint(1) cannot tell: ask /proc/mounts.
mounted() { grep -q " $1 " /proc/mounts; }
unmount() { if mounted "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi; }
cleanup() {
  for m in "$W/mnt-local-volume" "$W/mnt-net-volume" "$W/mnt-rep3-volume" "$W/mnt-net-bitrot" "$W/mnt-net-bitrot-off" "$W/mnt-dist3-volume"; do unmount "$m"; done
  for f in "$W"/brickd*.pid; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
  for m in "$W/local" "$W/brick-local" "$W/brick-net" "$W/brick-r0" "$W/brick-r1" "$W/brick-r2" "$W/brick-net-bitrot" "$W/brick-net-bitrot-off" "$W/brick-d0" "$W/brick-d1" "$W/brick-d2"; do unmount "$m"; done
}
trap cleanup EXIT
cleanup
mkdir -p "$W"
img() { # name -> mounted btrfs dir
  rm -f "$W/$1.img"; truncate -s 6G "$W/$1.img"; mkfs.btrfs -q -f "$W/$1.img" >/dev/null 2>&1
  mkdir -p "$W/$1"; mount -o loop "$W/$1.img" "$W/$1"
}
listening() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
declare -A DIRS

if wanted btrfs; then img local; DIRS[btrfs]="$W/local"; fi

# Local volume: the graph in the mount process over storage/posix on its own Btrfs image.
if wanted brickfs-local; then
  img brick-local
  sed "s#/srv/brickfs/local#$W/brick-local#" volfiles/local-posix.vol > "$W/local-volume.vol"
  mkdir -p "$W/mnt-local-volume"
  mount.brickfs --volfile "$W/local-volume.vol" "$W/mnt-local-volume"
  DIRS[brickfs-local]="$W/mnt-local-volume"
fi

# Network volume: one brickd over loopback TCP, brick on its own Btrfs image.
if wanted brickfs-net1; then
  img brick-net
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
  listening "$PORT" || { echo "bench/run.sh: brickd net1 does not listen on $PORT" >&2; exit 1; }
  mkdir -p "$W/mnt-net-volume"
  mount.brickfs --volfile "$W/net-volume.vol" "$W/mnt-net-volume"
  DIRS[brickfs-net1]="$W/mnt-net-volume"
fi

# Bitrot: brickfs-net1-bitrot and brickfs-net1-bitrot-off are the same volume (one brickd over
# loopback, own Btrfs image, the brick graph brickd's way with features/bitrot) with
# features/bitrot on and off, so the two figures give the cost of checksumming.
bitrot_brick() { # name port enable
  local name=$1 port=$2 enable=$3
  img "brick-$name"
  cat > "$W/brick-$name.vol" <<VOL
volume $name-posix
    type storage/posix
    option directory $W/brick-$name
end-volume
volume $name-bitrot
    type features/bitrot
    option enable $enable
    subvolumes $name-posix
end-volume
volume $name-index
    type features/index
    subvolumes $name-bitrot
end-volume
volume $name-locks
    type features/locks
    subvolumes $name-index
end-volume
volume $name-server
    type protocol/server
    option listen-host 127.0.0.1
    option listen-port $port
    subvolumes $name-locks
end-volume
VOL
  cat > "$W/$name-volume.vol" <<VOL
volume $name-client
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $port
    option remote-subvolume $name-locks
end-volume
VOL
  brickd --volfile "$W/brick-$name.vol" --log-file "$W/brickd-$name.log" --pid-file "$W/brickd-$name.pid" &
  listening "$port" || { echo "bench/run.sh: brickd $name does not listen on $port" >&2; exit 1; }
  mkdir -p "$W/mnt-$name"
  mount.brickfs --volfile "$W/$name-volume.vol" "$W/mnt-$name"
}
if wanted brickfs-net1-bitrot; then bitrot_brick net-bitrot $((BASE_PORT - 1)) on; DIRS[brickfs-net1-bitrot]="$W/mnt-net-bitrot"; fi
if wanted brickfs-net1-bitrot-off; then bitrot_brick net-bitrot-off $((BASE_PORT - 2)) off; DIRS[brickfs-net1-bitrot-off]="$W/mnt-net-bitrot-off"; fi

# start_brick NAME PORT [index]: brickd serving $W/brick-NAME as brick NAME on PORT, stacked as
# brickd stacks bricks (features/locks, features/index when asked, storage/posix).
start_brick() {
  local n=$1 port=$2 below="$1-posix"
  {
    printf 'volume %s-posix\n    type storage/posix\n    option directory %s\nend-volume\n' "$n" "$W/brick-$n"
    if [ "${3:-}" = index ]; then
      printf 'volume %s-index\n    type features/index\n    subvolumes %s\nend-volume\n' "$n" "$below"
      below="$n-index"
    fi
    printf 'volume %s\n    type features/locks\n    subvolumes %s\nend-volume\n' "$n" "$below"
    printf 'volume %s-server\n    type protocol/server\n    option listen-host 127.0.0.1\n    option listen-port %s\n    subvolumes %s\nend-volume\n' "$n" "$port" "$n"
  } > "$W/brick-$n.vol"
  brickd --volfile "$W/brick-$n.vol" --log-file "$W/brickd-$n.log" --pid-file "$W/brickd-$n.pid" &
  listening "$port" || { echo "bench/run.sh: brickd $n does not listen on $port" >&2; exit 1; }
}
rep_brick() { start_brick "r$1" $((BASE_PORT + 1 + $1)) index; } # i -> brickd for brick-r$i on port BASE_PORT+1+i
# client_volume NAME TYPE FIRST_PORT BRICK_PREFIX: mounts $W/mnt-NAME-volume, the cluster
# translator TYPE over three protocol/clients of bricks BRICK_PREFIX0..2 on FIRST_PORT..+2.
client_volume() {
  local name=$1 type=$2 first=$3 prefix=$4
  : > "$W/$name-volume.vol"
  for i in 0 1 2; do
    cat >> "$W/$name-volume.vol" <<VOL
volume $name-client-$i
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port $((first + i))
    option remote-subvolume $prefix$i
end-volume
VOL
  done
  cat >> "$W/$name-volume.vol" <<VOL
volume $name
    type $type
    subvolumes $name-client-0 $name-client-1 $name-client-2
end-volume
VOL
  mkdir -p "$W/mnt-$name-volume"
  mount.brickfs --volfile "$W/$name-volume.vol" "$W/mnt-$name-volume"
  DIRS[brickfs-$name]="$W/mnt-$name-volume"
}
# Replica 3: three brickd processes over loopback TCP, each brick on its own Btrfs image,
# the brick graph brickd's way (locks, index, posix), cluster/replicate in the mount.
if wanted brickfs-rep3; then
  for i in 0 1 2; do img "brick-r$i"; rep_brick "$i"; done
  client_volume rep3 cluster/replicate $((BASE_PORT + 1)) r
fi

# Distribute over three bricks: three brickd processes over loopback TCP (ports BASE_PORT+4..6),
# each brick on its own Btrfs image, cluster/distribute in the mount.
if wanted brickfs-dist3; then
  for i in 0 1 2; do img "brick-d$i"; start_brick "d$i" $((BASE_PORT + 4 + i)); done
  client_volume dist3 cluster/distribute $((BASE_PORT + 4)) d
fi

BENCH_ARGS=()
for t in $TARGETS; do BENCH_ARGS+=("$t=${DIRS[$t]}"); done
MODE=()
[ "$SCALING" = 1 ] && MODE=(--scaling)
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
dotnet bench/bin/Release/net10.0/brickfs-bench.dll "${MODE[@]}" "${ARGS[@]}" "${BENCH_ARGS[@]}"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
[ "$SCALING" = 1 ] && exit 0
for a in "${ARGS[@]}"; do [ "$a" = --locks ] && exit 0; done
wanted brickfs-rep3 || exit 0

# Heal after a brick's return: brick r2 misses one big file, then brickfs-shd --once copies it.
HEAL_MIB=1024
for a in "${ARGS[@]}"; do [ "$a" = --quick ] && HEAL_MIB=256; done
HEAL_MIB=${BRICKFS_BENCH_HEAL_MIB:-$HEAL_MIB}
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
