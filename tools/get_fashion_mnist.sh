#!/usr/bin/env bash
# Make sure Fashion-MNIST's IDX files are on this machine (Debian package dataset-fashion-mnist).
# As root it installs the package when the files are missing; otherwise it says how to get them.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -n "${GENVIZ_FASHION_MNIST:-}" ] && [ -f "$GENVIZ_FASHION_MNIST/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST is missing: installing the Debian package dataset-fashion-mnist"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || { echo "could not install dataset-fashion-mnist" >&2; exit 1; }
  exit 0
fi
echo "Fashion-MNIST is missing from $dir. Install it with 'sudo apt-get install dataset-fashion-mnist'," >&2
echo "or set GENVIZ_FASHION_MNIST to a folder with the four IDX .gz files. Chapters that use it will fail." >&2
exit 0
