#!/usr/bin/env bash
# The main job: set up the machine, put a brick on a loop-mounted Btrfs image, mount the
# volume with FUSE and run sqlite3 on it. Leaves the volume mounted at $MNT.
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh

STATE=/var/lib/brickfs/demo
BRICK=/srv/brickfs/local
MNT=${MNT:-/mnt/brickfs}
IMG=$STATE/local.img

# Clean up a previous run.
if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
if mountpoint -q "$BRICK"; then umount "$BRICK" 2>/dev/null || umount -l "$BRICK"; fi
mkdir -p "$STATE" "$BRICK" "$MNT"
rm -f "$IMG"
truncate -s 4G "$IMG"
mkfs.btrfs -q -f "$IMG"
mount -o loop "$IMG" "$BRICK"
echo "brick: $IMG (btrfs) mounted at $BRICK"

mount.brickfs --volfile volfiles/local-posix.vol "$MNT"
echo "volume mounted at $MNT:"
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
echo "done; the volume stays mounted at $MNT (umount $MNT to stop it)"
