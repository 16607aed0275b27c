#!/usr/bin/env bash
# Installs what only the benchmarks use (CI does not pay for it): the tools
# operators measure with, and rsvg-convert for the chart. Idempotent.
set -euo pipefail
need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v sockperf >/dev/null || need+=(sockperf)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v ethtool >/dev/null || need+=(ethtool)
command -v rsvg-convert >/dev/null || need+=(librsvg2-bin)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
	echo "[bench] installing ${need[*]}" >&2
	apt-get update -qq
	# iperf3's package asks whether to start a daemon: it must not.
	echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections 2>/dev/null || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
