/**
 * Constants the CLI needs to register its verbs (option defaults, choices),
 * apart from the modules that use them: registering `l3iso --help` must not
 * load libbpf, prom-client or the runtime code.
 */
export type UplinkMode = 'native' | 'generic' | 'tc';
export const UPLINK_MODES: readonly UplinkMode[] = ['native', 'generic', 'tc'];
export const DEFAULT_LISTEN = '127.0.0.1:9469';
export const DEFAULT_HOOKS_DIR = '/usr/share/containers/oci/hooks.d';
