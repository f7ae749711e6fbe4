#!/usr/bin/env bash
# Installs what Brickfs needs on a Debian 12 machine and installs the Brickfs programs.
# Idempotent: safe to run again; rebuilds and reinstalls the programs every time.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then echo "install.sh: must run as root" >&2; exit 1; fi

PKGS=(btrfs-progs fio fuse3 attr acl sqlite3 libxxhash0 iproute2 psmisc util-linux procps kmod systemd etcd-server e2fsprogs)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null; then echo "install.sh: the .NET 10 SDK (dotnet) is required" >&2; exit 1; fi

# Kernel pieces: FUSE device and Btrfs (both built in or as modules).
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || { echo "install.sh: /dev/fuse is missing (no FUSE in this kernel)" >&2; exit 1; }
# FUSE over io_uring (kernel 6.14+): mount.brickfs uses per-CPU io_uring queues when the fuse
# module offers them (-o fuse-transport=auto), which only happens with enable_uring=Y. Set it now
# and for every later load of the module; kernels without the parameter keep /dev/fuse.
if [ -w /sys/module/fuse/parameters/enable_uring ]; then
    echo Y > /sys/module/fuse/parameters/enable_uring
    echo "options fuse enable_uring=1" > /etc/modprobe.d/brickfs-fuse.conf
fi
grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null || true

PREFIX=/opt/brickfs
mkdir -p "$PREFIX/lib" /var/log/brickfs /var/lib/brickfs
# Built as every installed copy is (scripts/publish.sh: Release, ReadyToRun for this machine).
scripts/publish.sh "$PREFIX/lib" client-fuse/Brickfs.ClientFuse.csproj brickd/Brickfs.Brickd.csproj \
  mgmt/mgmtd/*.csproj mgmt/brickctl/*.csproj mgmt/shd/*.csproj

for prog in brickd brickfs-mgmtd brickctl brickfs-shd; do ln -sf "$PREFIX/lib/$prog" "/usr/local/bin/$prog"; done
ln -sf "$PREFIX/lib/mount.brickfs" /usr/local/bin/mount.brickfs
# mount(8) looks for /sbin/mount.TYPE; on merged-/usr Debian /sbin is /usr/sbin.
ln -sf "$PREFIX/lib/mount.brickfs" /sbin/mount.brickfs
# The shared secret brickfs-mgmtd (the unit, run-main.sh) requires and brickctl sends; made once, root only.
if [ ! -s /etc/brickfs/secret ]; then
  mkdir -p /etc/brickfs
  (umask 077; head -c 24 /dev/urandom | base64 > /etc/brickfs/secret)
fi
install -m 0644 mgmt/systemd/brickfs-mgmtd.service /etc/systemd/system/brickfs-mgmtd.service
install -m 0644 mgmt/systemd/brickfs-shd@.service /etc/systemd/system/brickfs-shd@.service
# etcd-server is for clusters (brickfs-mgmtd --etcd-endpoints, see mgmt/CLUSTER.md); its Debian
# unit is enabled by the package but a standalone server does not need it running.
# brickfs-mgmtd.service reads MGMTD_ARGS from /etc/brickfs/mgmtd.env (cluster mode, see
# mgmt/CLUSTER.md); a commented template once, never over an administrator's file.
if [ ! -e /etc/brickfs/mgmtd.env ]; then
  cat > /etc/brickfs/mgmtd.env <<'ENV'
# Options brickfs-mgmtd.service appends to its command line (they override the unit's).
# Cluster mode: this node's address and the etcd client URLs, its own member first, e.g.
#MGMTD_ARGS=--node-address 10.0.0.11 --etcd-endpoints http://10.0.0.11:2379,http://10.0.0.12:2379,http://10.0.0.13:2379
ENV
fi
# Only where systemd runs (not in a plain container): make it see the (new) units.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "install.sh: installed brickd, mount.brickfs, brickfs-mgmtd, brickctl, brickfs-shd from $PREFIX/lib; units brickfs-mgmtd.service, brickfs-shd@.service"
