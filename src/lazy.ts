/**
 * Modules loaded when first used, so each verb pays only for what it runs
 * (prom-client alone costs ~30 ms, libbpf's FFI ~20 ms, pino ~15 ms). The
 * one place that calls require(): a dynamic import() of CommonJS would go
 * through the ESM loader, slower than the load it saves.
 */
export const agentClient = (): typeof import('./agent/client') => require('./agent/client');
export const agentServer = (): typeof import('./agent/server') => require('./agent/server');
export const metricsModule = (): typeof import('./observe/metrics') => require('./observe/metrics');
export const privilege = (): typeof import('./dataplane/privilege') =>
  require('./dataplane/privilege');
export const logModule = (): typeof import('./log') => require('./log');
export const cellsModule = (): typeof import('./cells/cells') => require('./cells/cells');
export const holdersModule = (): typeof import('./cells/holders') => require('./cells/holders');
export const execModule = (): typeof import('./exec/exec') => require('./exec/exec');
export const featuresModule = (): typeof import('./doctor/features') =>
  require('./doctor/features');
export const inventoryModule = (): typeof import('./cells/inventory') =>
  require('./cells/inventory');
export const stateModule = (): typeof import('./dataplane/state') => require('./dataplane/state');
export const lifecycleModule = (): typeof import('./engine/lifecycle') =>
  require('./engine/lifecycle');
export const policyModule = (): typeof import('./cells/policy') => require('./cells/policy');
export const preexistingModule = (): typeof import('./dataplane/preexisting') =>
  require('./dataplane/preexisting');
export const uplinkModule = (): typeof import('./dataplane/uplink') =>
  require('./dataplane/uplink');
export const ociHookModule = (): typeof import('./runtime/oci-hook') =>
  require('./runtime/oci-hook');
export const ociRequestModule = (): typeof import('./runtime/oci-request') =>
  require('./runtime/oci-request');
export const ociStateModule = (): typeof import('./runtime/oci-state') =>
  require('./runtime/oci-state');
export const countersModule = (): typeof import('./observe/counters') =>
  require('./observe/counters');
export const eventsModule = (): typeof import('./observe/events') => require('./observe/events');
export const serveModule = (): typeof import('./observe/serve') => require('./observe/serve');
export const statsModule = (): typeof import('./observe/stats') => require('./observe/stats');
export const declarativeApply = (): typeof import('./declarative/apply') =>
  require('./declarative/apply');
export const declarativeExport = (): typeof import('./declarative/export') =>
  require('./declarative/export');
export const declarativeSchema = (): typeof import('./declarative/schema') =>
  require('./declarative/schema');
export const yamlModule = (): typeof import('yaml') => require('yaml');
export const pathsModule = (): typeof import('./dataplane/paths') => require('./dataplane/paths');
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
