#!/bin/sh
# Builds the current-PyTorch peer for `frugal bench`: a Debian trixie chroot with PyTorch 2.6
# (python3-torch), OpenBLAS (pthread build) and tcmalloc, plus g++ / python3-dev / libtorch-dev
# so that torch.compile (inductor's C++ backend) works. Run as root on Debian/Ubuntu:
#
#   sh bench/peer/setup-trixie.sh [DIR]        # DIR defaults to /var/tmp/frugal-trixie
#
# The chroot lives outside the repository and is never committed. The bench finds it through
# FRUGAL_PEER_CHROOT (or the default DIR) and runs bench/peer/model.py inside it with
# `chroot DIR /usr/bin/python3 ...` (bench/peer-node.ts); the older bookworm PyTorch 1.13 from
# bench/peer/setup.sh stays a second column. Safe to re-run: an existing chroot is reused and
# only missing packages are installed. Not part of CI.
set -e
DIR=${1:-/var/tmp/frugal-trixie}
# The mirror apt uses on this host (first deb.debian.org-style URI), else Debian's own.
MIRROR=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
  grep -oE 'https?://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ')
MIRROR=${MIRROR:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null 2>&1 || { apt-get update && apt-get install -y debootstrap; }
if [ ! -x "$DIR/usr/bin/python3" ]; then
  echo "debootstrap trixie into $DIR from $MIRROR"
  debootstrap --variant=minbase --include=python3,python3-numpy trixie "$DIR" "$MIRROR"
fi

# /proc, /dev and /sys inside the chroot (torch reads /proc/cpuinfo and /sys for the CPU topology).
for m in proc dev sys; do
  mountpoint -q "$DIR/$m" || mount --bind "/$m" "$DIR/$m"
done
cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true

chroot "$DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update
chroot "$DIR" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  python3-torch libopenblas0-pthread libtcmalloc-minimal4t64 \
  g++ python3-dev python3-setuptools libtorch-dev
chroot "$DIR" /usr/bin/python3 -c 'import torch; print("torch", torch.__version__, "in", "'"$DIR"'")'
