import { defineConfig } from 'vitest/config';

// Integration tests create network namespaces, cgroups and pinned BPF state;
// they run one file at a time so that two files never race on `ip netns`.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
