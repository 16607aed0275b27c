/**
 * How the CLI speaks: results on stdout (a table for people, one JSON
 * document with --json), errors as one line on stderr (or a JSON error
 * object on stdout with --json), and an exit status scripts can branch on.
 */
import { L3isoError } from '../errors';
import type { CapabilityWarning } from '../model/capabilities';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Left-aligned columns sized to their widest cell. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export interface ErrorReport {
  code: string;
  message: string;
  hint?: string;
  errno?: string;
}

/** An error another process (the agent) already described: reported as it came. */
export class ReportedError extends Error {
  constructor(readonly report: ErrorReport) {
    super(report.message);
    this.name = 'ReportedError';
  }
}

/**
 * The code, message and hint of any error. A BpfError (loader/) carries its
 * symbolic errno in `code` and lands in the errno branch: no import of the
 * loader here, so printing an error never loads libbpf.
 */
export function describeError(err: unknown): ErrorReport {
  if (err instanceof ReportedError) return err.report;
  if (err instanceof L3isoError) {
    return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    return { code: 'EKERNEL', message: e.message, errno: e.code };
  }
  return { code: 'EINTERNAL', message: err instanceof Error ? err.message : String(err) };
}

/** Reports an error and returns the exit status to use. */
export function reportError(err: unknown, json: boolean): number {
  const report = describeError(err);
  if (json) {
    printJson({ error: report });
  } else {
    // Names in messages and hints (cgroups, comms) may hold line breaks:
    // an error stays one line.
    const oneLine = (t: string) => t.replace(/\s*[\r\n]+\s*/g, ' | ');
    const hint = report.hint ? ` (${oneLine(report.hint)})` : '';
    process.stderr.write(`l3iso: ${oneLine(report.message)}${hint}\n`);
  }
  if (report.code === 'EINTERNAL' && process.env.L3ISO_DEBUG && err instanceof Error) {
    process.stderr.write(`${err.stack}\n`);
  }
  return report.code === 'EUSAGE' ? EXIT_USAGE : EXIT_FAILURE;
}

/** A process in a cell holding a capability that defeats confinement. */
export function warnCapabilities(cell: string, w: CapabilityWarning): void {
  const caps = w.capabilities.map((n) => `CAP_${n.toUpperCase()}`).join(', ');
  process.stderr.write(
    `l3iso: warning: pid ${w.pid} (${w.comm}) in cell ${cell} holds ${caps}: it can escape confinement\n`,
  );
}
