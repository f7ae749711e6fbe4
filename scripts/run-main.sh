#!/usr/bin/env bash
# The main job: set up the machine, put a brick on a loop-mounted Btrfs image, serve it with a
# real brickd over TCP, mount the volume with FUSE and run sqlite3 on it. Leaves the brick
# running and the volume mounted at $MNT.
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh

STATE=/var/lib/brickfs/demo
BRICK=/srv/brickfs/b1          # as in volfiles/brick-b1.vol
MNT=${MNT:-/mnt/brickfs}
IMG=$STATE/b1.img
LOG=/var/log/brickfs

# Clean up a previous run.
if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
if [ -f "$STATE/brickd.pid" ]; then kill "$(cat "$STATE/brickd.pid")" 2>/dev/null || true; sleep 0.5; fi
if mountpoint -q "$BRICK"; then umount "$BRICK" 2>/dev/null || umount -l "$BRICK"; fi
mkdir -p "$STATE" "$BRICK" "$MNT" "$LOG"
rm -f "$IMG"
truncate -s 4G "$IMG"
mkfs.btrfs -q -f "$IMG"
mount -o loop "$IMG" "$BRICK"
echo "brick: $IMG (btrfs) mounted at $BRICK"

setsid brickd --volfile volfiles/brick-b1.vol --log-file "$LOG/brick-b1.log" --pid-file "$STATE/brickd.pid" \
  </dev/null >/dev/null 2>&1 &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/24100) 2>/dev/null && break; sleep 0.1; done
echo "brickd serving $BRICK on 127.0.0.1:24100 (pid $(cat "$STATE/brickd.pid"))"

mount.brickfs --volfile volfiles/net1.vol "$MNT"
echo "volume net1 mounted at $MNT:"
grep " $MNT " /proc/mounts

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
echo "sqlite3: $rows insert transactions (journal_mode=DELETE, synchronous=FULL) in $(( (end - start) / 1000000 )) ms"
echo "integrity_check: $(sqlite3 "$DB" 'PRAGMA integrity_check;')"
echo "rows: $(sqlite3 "$DB" 'SELECT count(*) FROM t;')"
ls -la "$MNT"
echo "done; the volume stays mounted at $MNT (umount $MNT; kill \$(cat $STATE/brickd.pid) to stop)"
