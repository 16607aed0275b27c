/**
 * An Engine held for a long-lived process's life (the agent's, the fleet
 * host's): opening one costs more FFI round trips than the verb it serves,
 * and a pool's free addresses are kept per Engine (pools/free.ts). The
 * process may start before `up`, and outlives engines: the Engine is opened
 * on first use, and again when it no longer holds the engine: a down (or down
 * and up) of the pin dir, or a lost map that `up --repair` re-created,
 * whose old fd the Engine would otherwise go on writing. A verb that finds
 * the engine going (ENOT_UP, EPIN_*) runs once more on a new Engine; when
 * the pin dir is still no engine, that open refuses and the caller gets its
 * error, as a fresh CLI would.
 */
import { L3isoError } from '../errors';
import { Engine } from './engine';

const GONE = new Set(['ENOT_UP', 'EPIN_PARTIAL', 'EPIN_DIR']);

export class HeldEngine {
  private engine: Engine | undefined;
  private identity = '';

  constructor(readonly pinDir: string) {}

  get(): Engine {
    const now = Engine.pinsIdentity(this.engine?.layout ?? this.pinDir);
    if (this.engine && now !== this.identity) this.close();
    if (!this.engine) {
      // The identity is taken before the open: pins replaced in between
      // are seen at the next call.
      this.engine = Engine.open(this.pinDir, { write: true });
      this.identity = now;
    }
    return this.engine;
  }

  run<T>(fn: (e: Engine) => T): T {
    try {
      return fn(this.get());
    } catch (err) {
      if (!(err instanceof L3isoError && GONE.has(err.code))) throw err;
      this.close();
      return fn(this.get());
    }
  }

  isUp(): boolean {
    return Engine.isUp(this.pinDir);
  }

  close(): void {
    this.engine?.close();
    this.engine = undefined;
  }
}
