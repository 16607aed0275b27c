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
# crash-point tests kill the CLI before chosen syscalls (strace -e inject)
command -v strace >/dev/null || need_pkgs+=(strace)
# real servers in cells: release --force must not make them spin
command -v nginx >/dev/null || need_pkgs+=(nginx)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
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
