/**
 * Modules loaded when first used, so each verb pays only for what it runs
 * (prom-client alone costs ~30 ms, libbpf's FFI ~20 ms, pino ~15 ms). The
 * one place that calls require(): a dynamic import() of CommonJS would go
 * through the ESM loader, slower than the load it saves.
 */
export const agentClient = (): typeof import('./agent/client') => require('./agent/client');
export const agentServer = (): typeof import('./agent/server') => require('./agent/server');
export const metricsModule = (): typeof import('./engine/metrics') => require('./engine/metrics');
export const privilege = (): typeof import('./engine/privilege') => require('./engine/privilege');
export const logModule = (): typeof import('./log') => require('./log');
export const cellsModule = (): typeof import('./engine/cells') => require('./engine/cells');
export const holdersModule = (): typeof import('./engine/holders') => require('./engine/holders');
export const execModule = (): typeof import('./engine/exec') => require('./engine/exec');
export const featuresModule = (): typeof import('./engine/features') =>
  require('./engine/features');
export const inventoryModule = (): typeof import('./engine/inventory') =>
  require('./engine/inventory');
export const stateModule = (): typeof import('./engine/state') => require('./engine/state');
export const lifecycleModule = (): typeof import('./engine/lifecycle') =>
  require('./engine/lifecycle');
export const policyModule = (): typeof import('./engine/policy') => require('./engine/policy');
export const preexistingModule = (): typeof import('./engine/preexisting') =>
  require('./engine/preexisting');
export const uplinkModule = (): typeof import('./engine/uplink') => require('./engine/uplink');
export const ociHookModule = (): typeof import('./runtime/oci-hook') =>
  require('./runtime/oci-hook');
export const ociStateModule = (): typeof import('./runtime/oci-state') =>
  require('./runtime/oci-state');
export const countersModule = (): typeof import('./engine/counters') =>
  require('./engine/counters');
export const eventsModule = (): typeof import('./engine/events') => require('./engine/events');
export const serveModule = (): typeof import('./engine/serve') => require('./engine/serve');
export const statsModule = (): typeof import('./engine/stats') => require('./engine/stats');
export const pathsModule = (): typeof import('./engine/paths') => require('./engine/paths');
/**
 * Before the engine's first call: libbpf narrates (e.g. netlink's EEXIST for
 * a qdisc that is already there); failures reach the user as typed errors,
 * so its prose is debug.
 */
export function prepareEngine(): void {
  const loader = require('../loader') as typeof import('../loader');
  const { log } = logModule();
  loader.setLibbpfLogger((level, msg) => log.debug({ libbpf: level }, msg.trimEnd()));
}
export const poolsModule = (): typeof import('./pools/pools') => require('./pools/pools');
/** Fleet mode only (`agent --etcd`): the etcd client is never loaded otherwise. */
export const fleetModule = (): typeof import('./fleet/host') => require('./fleet/host');
export const announceModule = (): typeof import('./fleet/announce') => require('./fleet/announce');
