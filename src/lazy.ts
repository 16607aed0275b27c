/**
 * Modules loaded when first used, so each verb pays only for what it runs
 * (prom-client alone costs ~30 ms, libbpf's FFI ~20 ms, pino ~15 ms). The
 * one place that calls require(): a dynamic import() of CommonJS would go
 * through the ESM loader, slower than the load it saves.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
export const agentClient = (): typeof import('./agent/client') => require('./agent/client');
export const agentServer = (): typeof import('./agent/server') => require('./agent/server');
export const metricsModule = (): typeof import('./engine/metrics') => require('./engine/metrics');
export const privilege = (): typeof import('./engine/privilege') => require('./engine/privilege');
export const logModule = (): typeof import('./log') => require('./log');
