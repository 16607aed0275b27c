/**
 * Operational logs go to stderr (stdout belongs to command output and
 * --json): JSON lines by default, human lines on a TTY. The logger (pino,
 * and pino-pretty's worker on a TTY) is built on first use: most verbs
 * never log, and they need not pay for loading it.
 */
import type { Logger } from 'pino';

function makeLogger(): Logger {
  const pino = require('pino') as typeof import('pino');
  const level = process.env.L3ISO_LOG_LEVEL ?? 'info';
  if (process.stderr.isTTY) {
    return pino.pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' },
      },
    });
  }
  return pino.pino({ level }, pino.destination(2));
}

let real: Logger | undefined;

export const log: Logger = new Proxy({} as Logger, {
  get(_target, key) {
    real ??= makeLogger();
    const v: unknown = Reflect.get(real, key, real);
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(real) : v;
  },
});
