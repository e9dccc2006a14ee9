#!/usr/bin/env bash
# The main job on a fresh machine: builds nosd and runs `nosd demo`, which makes
# a lab of network namespaces, starts the router on its embedded defaults (sled
# config store, x86 dataplane over AF_PACKET), shows pings crossing it and cleans
# up. Pass --keep to leave the lab running until Ctrl-C. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in ip:iproute2 ping:iputils-ping ethtool:ethtool; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --bins
exec ./target/release/nosd demo "$@"
