/**
 * The agent's one Engine. Opened on first use (the agent may start before
 * `up`) and opened again when the pin dir it holds was taken down (or down
 * and up again) meanwhile: the agent outlives engines, never the reverse.
 */
import { Engine } from '../engine/engine';

export class EngineHolder {
  private engine: Engine | undefined;

  constructor(readonly pinDir: string) {}

  get(): Engine {
    if (this.engine && !this.engine.current) this.close();
    this.engine ??= Engine.open(this.pinDir, { write: true });
    return this.engine;
  }

  isUp(): boolean {
    return Engine.isUp(this.pinDir);
  }

  close(): void {
    this.engine?.close();
    this.engine = undefined;
  }
}
