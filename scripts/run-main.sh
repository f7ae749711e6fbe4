#!/usr/bin/env bash
# The main job, as a new user would run Brickfs: install, start brickfs-mgmtd, create and start a
# replica-3 volume over three loop-mounted Btrfs disks, mount it with `mount -t brickfs`, run
# sqlite3 on it, and print what to try next. Everything stays up afterwards.
#   scripts/run-main.sh          tear down a previous run (if any), then set everything up
#   scripts/run-main.sh down     tear everything down: mount, volume, mgmtd, bricks, disks
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=/var/lib/brickfs/demo           # mgmtd's state, the disk images, pid files
DISKS=/srv/brickfs/demo               # disk i is mounted at $DISKS/b$i; the brick is its subvolume $DISKS/b$i/brick
MNT=${MNT:-/mnt/brickfs}
LOG=/var/log/brickfs
PORT=24007                            # mgmtd's default port, so HOST:/VOL needs no port
VOL=demo
CTL=(brickctl --server "127.0.0.1:$PORT" --timeout 60)

say() { echo "run-main: $*"; }

# Stops the process in pid file $1 if it is still the program named $2 (never a reused pid).
stop_pidfile() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

unmount() { if mountpoint -q "$1"; then umount "$1" 2>/dev/null || umount -l "$1"; fi; }

down() {
  unmount "$MNT"
  # Read-only snapshot mounts of the demo volume (127.0.0.1:/snaps/SNAP/demo), wherever they are.
  grep -E "^127\.0\.0\.1:/snaps/[^ ]+/$VOL " /proc/mounts | cut -d' ' -f2 | while read -r m; do unmount "$m"; done || true
  # mgmtd stops its brickd processes when it gets SIGTERM; the volume definition goes with $STATE.
  stop_pidfile "$STATE/mgmtd.pid" brickfs-mgmtd
  # Bricks an mgmtd that died without SIGTERM left behind.
  for f in "$STATE"/mgmtd/run/*.pid; do [ -e "$f" ] && stop_pidfile "$f" brickd; done
  # What the single-brick version of this script left running.
  stop_pidfile "$STATE/brickd.pid" brickd
  unmount /srv/brickfs/b1
  for i in 1 2 3; do unmount "$DISKS/b$i"; done
  rm -rf "$STATE"
  say "down: nothing of the demo is running or mounted"
}

if [ "${1:-}" = down ]; then down; exit 0; fi
if [ $# -gt 0 ]; then echo "usage: $0 [down]" >&2; exit 2; fi

./install.sh
down

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "run-main: something already listens on 127.0.0.1:$PORT (a brickfs-mgmtd service?); stop it first" >&2
  exit 1
fi

mkdir -p "$STATE" "$DISKS" "$MNT" "$LOG"
bricks=()
for i in 1 2 3; do
  img=$STATE/disk$i.img
  truncate -s 2G "$img"
  mkfs.btrfs -q -f "$img" >/dev/null
  mkdir -p "$DISKS/b$i"
  mount -o loop "$img" "$DISKS/b$i"
  bricks+=("127.0.0.1:$DISKS/b$i/brick")
done
say "three Btrfs disks ($STATE/disk{1,2,3}.img) mounted at $DISKS/b{1,2,3}"

setsid brickfs-mgmtd --state-dir "$STATE/mgmtd" --listen "127.0.0.1:$PORT" --brick-listen 127.0.0.1 --secret-file /etc/brickfs/secret \
  </dev/null >>"$LOG/mgmtd-demo.log" 2>&1 &
echo $! > "$STATE/mgmtd.pid"
for _ in $(seq 300); do "${CTL[@]}" --timeout 2 volume list >/dev/null 2>&1 && break; sleep 0.1; done
"${CTL[@]}" volume list >/dev/null
say "brickfs-mgmtd (pid $(cat "$STATE/mgmtd.pid")) answers on 127.0.0.1:$PORT; state in $STATE/mgmtd, log $LOG/mgmtd-demo.log"

# All three copies on one host is a demo, not a deployment: `force` says we know.
"${CTL[@]}" volume create "$VOL" replica 3 "${bricks[@]}" force
"${CTL[@]}" volume start "$VOL"
for port in $("${CTL[@]}" --json volume info "$VOL" | grep -o '"port": [0-9]*' | grep -o '[0-9]*$'); do
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
"${CTL[@]}" volume status "$VOL"

mount -t brickfs "127.0.0.1:/$VOL" "$MNT"
say "mounted: $(grep " $MNT " /proc/mounts)"

DB=$MNT/demo.db
rows=1000
{
  echo "PRAGMA journal_mode=DELETE;"
  echo "PRAGMA synchronous=FULL;"
  echo "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
  for i in $(seq 1 $rows); do echo "INSERT INTO t(v) VALUES('row $i');"; done
} > "$STATE/inserts.sql"
start=$(date +%s%N)
sqlite3 "$DB" < "$STATE/inserts.sql" >/dev/null
end=$(date +%s%N)
say "sqlite3: $rows insert transactions (journal_mode=DELETE, synchronous=FULL) in $(( (end - start) / 1000000 )) ms"
say "integrity_check: $(sqlite3 "$DB" 'PRAGMA integrity_check;')"
say "rows: $(sqlite3 "$DB" 'SELECT count(*) FROM t;')"
for i in 1 2 3; do say "copy on brick $i: $(stat -c '%s bytes' "$DISKS/b$i/brick/demo.db")"; done
"${CTL[@]}" volume heal "$VOL" info | grep -E '^(Brick|Number)' | paste - - | sed 's/^/run-main: heal info: /'

cat <<EOF

Volume $VOL (replica 3) is mounted at $MNT and stays up. Things to try:
  brickctl volume info $VOL                      # the definition;  volume status $VOL: bricks, pids, free space
  brickctl volume heal $VOL info                 # pending heals per brick
  brickctl snapshot create s1 $VOL               # read-only Btrfs snapshot of every brick (writes pause ~ms)
  brickctl snapshot activate s1 && mkdir -p /mnt/s1 && mount -t brickfs 127.0.0.1:/snaps/s1/$VOL /mnt/s1   # browse it read-only
  kill \$(brickctl --json volume status $VOL | grep -o '"pid": [0-9]*' | head -1 | grep -o '[0-9]*$')   # a brick dies; mgmtd restarts it, the mount keeps working
  echo "127.0.0.1:/$VOL $MNT brickfs defaults,_netdev 0 0" >> /etc/fstab      # mount at boot (mount $MNT)
  sqlite3 $DB 'SELECT count(*) FROM t'
  $0 down                           # tear it all down
EOF
