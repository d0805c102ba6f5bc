#!/bin/sh
# Installs the PyTorch peer for `frugal bench` (Debian/Ubuntu, run as root):
#   python3-torch (PyTorch for /usr/bin/python3), OpenBLAS (otherwise torch uses the netlib
#   reference BLAS, ~30x slower) and tcmalloc (glibc malloc makes torch train ~2x slower here).
# Not part of CI; the bench suites run Frugal alone when torch is missing.
set -e
apt-get update
apt-get install -y python3-torch python3-numpy libopenblas0-pthread libgoogle-perftools4
/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)'
