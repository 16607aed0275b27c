/**
 * Announcement: the blocks a fleet host holds, as static routes for BIRD 2.
 * The agent writes two include files (one per address family, since a BIRD
 * static protocol has one channel) and asks BIRD to reload with `birdc
 * configure`. The operator's bird.conf includes them in static protocols
 * and exports those to BGP (README "Fleet"). The routes are `blackhole`:
 * BIRD only announces them; the host's AnyIP route (`up --managed-prefix`)
 * is what delivers the addresses locally.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { L3isoError } from '../errors';
import { rangeText, type Range } from '../pools/cidr';

export interface BirdOptions {
  /** directory of l3iso4.conf and l3iso6.conf */
  dir: string;
  /** birdc's control socket (default: birdc's own default) */
  socket?: string;
  /** the birdc binary */
  birdc?: string;
  host: string;
}

export function birdIncludes(host: string, blocks: readonly { range: Range }[]): [string, string] {
  const of = (family: 4 | 6) =>
    [
      `# written by the l3iso agent of host ${host}: the blocks it holds`,
      ...blocks
        .filter((b) => b.range.family === family)
        .map((b) => `route ${rangeText(b.range)} blackhole;`),
      '',
    ].join('\n');
  return [of(4), of(6)];
}

function writeIfChanged(file: string, text: string): boolean {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    /* absent: write it */
  }
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
  return true;
}

function birdc(o: BirdOptions, args: string[]): Promise<string> {
  const argv = [...(o.socket ? ['-s', o.socket] : []), ...args];
  return new Promise((resolve, reject) => {
    execFile(o.birdc ?? 'birdc', argv, { timeout: 10_000 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.trim();
      if (err)
        reject(
          new L3isoError(
            'EKERNEL',
            `birdc ${args.join(' ')} failed: ${out.split('\n').pop() || err.message}`,
          ),
        );
      else resolve(out);
    });
  });
}

/** Writes the include files and reloads BIRD when they changed. */
export async function announceBird(
  o: BirdOptions,
  blocks: readonly { range: Range }[],
): Promise<boolean> {
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o755 });
  const [v4, v6] = birdIncludes(o.host, blocks);
  const a = writeIfChanged(path.join(o.dir, 'l3iso4.conf'), v4);
  const b = writeIfChanged(path.join(o.dir, 'l3iso6.conf'), v6);
  if (!a && !b) return false;
  const out = await birdc(o, ['configure']);
  // "Reconfigured", "Reconfiguration in progress", or an error about the config.
  if (!/Reconfigur/.test(out))
    throw new L3isoError('EKERNEL', `birdc configure: ${out.split('\n').pop() ?? out}`);
  return true;
}
