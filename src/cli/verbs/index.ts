/**
 * The verbs, one file each (or per group where the grammar groups them:
 * attach/detach, oci-hook's stages), in the order `--help` lists them.
 * Each file parses its arguments, calls the Engine (or the agent), and
 * prints a table or, with --json, one JSON document. Grammar follows
 * iproute2: `l3iso [global options] VERB [options] ARGS`.
 */
import type { Command } from 'commander';
import type { Runner } from '../context';
import { registerAgent } from './agent';
import { registerApply } from './apply';
import { registerAssign } from './assign';
import { registerAttach, registerDetach } from './attach';
import { registerDoctor } from './doctor';
import { registerDown } from './down';
import { registerEvents } from './events';
import { registerExec } from './exec';
import { registerExport } from './export';
import { registerGc } from './gc';
import { registerList } from './list';
import { registerMetrics } from './metrics';
import { registerOciHook } from './oci-hook';
import { registerPolicy } from './policy';
import { registerPool } from './pool';
import { registerRelease } from './release';
import { registerServe } from './serve';
import { registerShow } from './show';
import { registerStats } from './stats';
import { registerStatus } from './status';
import { registerUp } from './up';

type Register = (program: Command, run: Runner) => void;

export const VERBS: readonly Register[] = [
  registerUp,
  registerDown,
  registerAssign,
  registerRelease,
  registerList,
  registerShow,
  registerExec,
  registerPolicy,
  registerPool,
  registerAttach,
  registerDetach,
  registerGc,
  registerDoctor,
  registerStats,
  registerMetrics,
  registerServe,
  registerEvents,
  registerApply,
  registerExport,
  registerStatus,
  registerOciHook,
  registerAgent,
];

export function registerCommands(program: Command, run: Runner): void {
  for (const register of VERBS) register(program, run);
}
