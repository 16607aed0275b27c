/**
 * Operational logs go to stderr (stdout belongs to command output and
 * --json): JSON lines by default, human lines on a TTY.
 */
import pino, { type Logger } from 'pino';

function makeLogger(): Logger {
  const level = process.env.L3ISO_LOG_LEVEL ?? 'info';
  if (process.stderr.isTTY) {
    return pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' },
      },
    });
  }
  return pino({ level }, pino.destination(2));
}

export const log: Logger = makeLogger();
