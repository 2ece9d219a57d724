#!/usr/bin/env bash
# Make sure Fashion-MNIST's IDX files are on this machine before the chapters run.
# Found (GENVIZ_FASHION_MNIST, Debian's dataset-fashion-mnist, or data/fashion-mnist): nothing to do.
# As root with apt-get: install the Debian package. With GENVIZ_DOWNLOAD=1: download it into
# data/fashion-mnist (MD5-checked). Otherwise: say how to get it.
set -u
python=${1:-python3}
if "$python" -c "from genviz_lib import data; data.find_fashion_mnist(download=False)" 2>/dev/null; then
  exit 0
fi
if [ -z "${GENVIZ_FASHION_MNIST:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST is missing: installing the Debian package dataset-fashion-mnist"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || echo "could not install dataset-fashion-mnist" >&2
  "$python" -c "from genviz_lib import data; data.find_fashion_mnist(download=False)" 2>/dev/null && exit 0
fi
# Downloads only when asked for (GENVIZ_DOWNLOAD=1); otherwise this prints the ways to get the data.
"$python" -c "from genviz_lib import data; print('Fashion-MNIST is in', data.find_fashion_mnist())" \
  || echo "Chapters 1-5 need Fashion-MNIST and will stop at their first cell without it." >&2
exit 0
