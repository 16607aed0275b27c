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
command -v tini >/dev/null || need_pkgs+=(tini)
command -v ethtool >/dev/null || need_pkgs+=(ethtool)
# crash-point tests kill the CLI before chosen syscalls (strace -e inject)
command -v strace >/dev/null || need_pkgs+=(strace)
# Real applications the integration tests run in cells (test/integration/apps*).
# getent comes with libc-bin, which every Debian has.
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
# Container runtimes for the OCI hook tests, systemd-analyze for the unit
# files, promtool (only packaged with the prometheus server) for the rules.
command -v runc >/dev/null || need_pkgs+=(runc)
command -v podman >/dev/null || need_pkgs+=(podman)
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# The Kubernetes API schema the manifests are checked against, offline (the
# official client's generated models), for Debian's own python3.
/usr/bin/python3 -c 'import kubernetes.client' 2>/dev/null || need_pkgs+=(python3-kubernetes)
# Services these packages ship: the tests start their own instances (own
# config and data in temp dirs, inside a test netns), so none may run on the
# host.
host_units=(nginx.service redis-server.service prometheus.service podman.service
	podman.socket podman-restart.service podman-auto-update.service
	podman-auto-update.timer docker.service docker.socket containerd.service)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	# policy-rc.d refuses every start during the install (invoke-rc.d and
	# deb-systemd-invoke honour it: 101 = "do not start").
	made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
	[ "$made_policy" -eq 0 ] || { rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
fi
# Installed before this script ran, or by hand: keep them off as services.
# disable works without a running systemd; stop only with one.
if command -v systemctl >/dev/null; then
	systemctl disable "${host_units[@]}" >/dev/null 2>&1 || true
	[ ! -d /run/systemd/system ] || systemctl stop "${host_units[@]}" >/dev/null 2>&1 || true
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
