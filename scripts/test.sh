#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing
# (iproute2, ping, socat, ethtool, FRR, GoBGP and DPDK (libdpdk-dev, dpdk,
# pkg-config) from Debian packages, and the
# gNMI client pygnmi from PyPI into target/pygnmi-venv; needs root, as do the
# end-to-end tests, which build network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in ip:iproute2 ping:iputils-ping socat:socat ethtool:ethtool vtysh:frr gobgpd:gobgpd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
# python3 -m venv needs ensurepip, which Debian ships in python3-venv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# DPDK for the dataplane's `dpdk` feature: headers and pkg-config file
# (libdpdk-dev) and the driver plugins (dpdk).
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libdpdk 2>/dev/null || need+=(libdpdk-dev)
dpkg -s dpdk >/dev/null 2>&1 || need+=(dpdk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the tests need ${need[*]} and root to install them (and to build namespaces)" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests build network namespaces and need root" >&2
  exit 1
fi

# pygnmi (a third-party gNMI client) for nosd/tests/gnmi_pygnmi.rs, in a
# virtual environment so the system Python is left alone.
venv=target/pygnmi-venv
if ! "$venv/bin/python3" -c 'import pygnmi' >/dev/null 2>&1; then
  echo "== installing pygnmi from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'pygnmi==0.8.15'
fi

if [ "${CI:-}" = "true" ]; then
  # A clean clone builds everything once: incremental caches only cost disk.
  export CARGO_INCREMENTAL=0
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
  echo "== cargo clippy (DPDK)"
  cargo clippy -p dataplane -p dpdk-sys --all-targets --features dataplane/dpdk -- -D warnings
fi

echo "== cargo test"
cargo test --workspace "$@"

# The DPDK I/O: the dataplane's tests with the feature (ring/null ports
# checked frame by frame against a model), and the namespace scenarios with
# the router's ports on DPDK net_af_packet devices.
echo "== cargo test (DPDK)"
cargo test -p dataplane --features dpdk --lib --test dpdk_ring
cargo test -p nosd --features dataplane/dpdk --test namespace_routing -- dpdk
