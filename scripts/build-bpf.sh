#!/usr/bin/env bash
# Compiles every bpf/*.bpf.c into bpf/*.bpf.o, then generates
# src/codecs/generated.ts. BPF C must not see glibc headers (they pull 32-bit
# stubs under -target bpf), so only the kernel uapi headers and libbpf's are
# on the include path.
set -euo pipefail
cd "$(dirname "$0")/.."
arch_inc="/usr/include/$(gcc -dumpmachine)"
# Programs that walk kernel structs (the socket iterators) need the running
# kernel's types; CO-RE relocations keep them correct across kernels.
if [ ! -s bpf/vmlinux.h ] || [ /sys/kernel/btf/vmlinux -nt bpf/vmlinux.h ]; then
	bpftool btf dump file /sys/kernel/btf/vmlinux format c >bpf/vmlinux.h.tmp
	mv bpf/vmlinux.h.tmp bpf/vmlinux.h
fi
for src in bpf/*.bpf.c; do
	out="${src%.c}.o"
	clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 \
		-I bpf -I "$arch_inc" -c "$src" -o "$out"
done
# The TypeScript mirror of bpf/l3iso.h (src/codecs/generated.ts, committed so
# a fresh clone type-checks before any build): rewritten when it changed. In
# CI a stale committed copy fails the build instead of being fixed silently.
if [ -n "${CI:-}" ]; then
	node scripts/gen-layout.js --check
else
	node scripts/gen-layout.js
fi
