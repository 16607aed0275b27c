#!/usr/bin/env bash
# Brings a fresh Debian machine (as root) to the point where l3iso builds and
# runs: system packages, bpffs, node modules, build. Idempotent and quiet when
# there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: must run as root (loads BPF programs, creates cgroups and netns)" >&2
	exit 1
fi

need_pkgs=()
command -v clang >/dev/null || need_pkgs+=(clang llvm)
[ -e /usr/include/bpf/bpf_helpers.h ] || need_pkgs+=(libbpf-dev)
ldconfig -p | grep -q 'libbpf.so.1 ' || need_pkgs+=(libbpf1)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v bpftool >/dev/null || need_pkgs+=(bpftool)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v gcc >/dev/null || need_pkgs+=(gcc)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v setcap >/dev/null || need_pkgs+=(libcap2-bin)
# Real applications the integration tests run in cells (test/integration/apps*).
# getent comes with libc-bin, which every Debian has.
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
command -v ethtool >/dev/null || need_pkgs+=(ethtool)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	# The tests start their own nginx and redis, with their own config and
	# data in temp dirs, inside a test netns: the packages' postinst must not
	# start them as host services (policy-rc.d 101 = "do not start").
	added_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		added_policy=1
	fi
	rc=0
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; } || rc=$?
	[ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
	[ "$rc" -eq 0 ] || exit "$rc"
fi
# Installed before this script ran, or by hand: keep them off as services.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	for svc in nginx redis-server; do
		if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
			say "disabling the $svc host service (the tests run their own)"
			systemctl disable --now --quiet "$svc" || true
		fi
	done
fi

if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
	say "mounting bpffs at /sys/fs/bpf"
	mkdir -p /sys/fs/bpf
	mount -t bpf bpf /sys/fs/bpf
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	say "installing node modules"
	# Not `npm ci`: the registry this project installs from lacks rollup's
	# optional builds for other platforms, so no lock file can list them and
	# `npm ci` refuses the lock. `npm install` honours the locked versions.
	npm install --no-audit --no-fund --loglevel=error
fi
# Fail here, not in the middle of a test, if the native FFI modules are broken.
node -e "require('@2060.io/ffi-napi'); require('@2060.io/ref-napi')"

say "building"
npm run --silent build
