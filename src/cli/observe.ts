/**
 * Observability verbs: stats, metrics, serve, events.
 */
import type { Command } from 'commander';
import type { Runner } from './commands';

export function registerObserveCommands(_program: Command, _run: Runner): void {
  // filled in by the observability work
}
