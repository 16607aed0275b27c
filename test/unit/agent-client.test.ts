// The CLI's agent client: "no agent" means a connect that really did not
// complete within its bound, not a stall of the CLI's own event loop (a
// loaded host descheduling it), which would make the CLI silently do
// the agent's work itself.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callAgent, CONNECT_TIMEOUT_MS } from '../../src/agent/client';
import { PIN_DIR_HEADER } from '../../src/agent/api';

describe('callAgent', () => {
  let dir: string;
  let server: http.Server;
  let requests: number;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-client-'));
    requests = 0;
    server = http.createServer((req, res) => {
      requests++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ pinDir: req.headers[PIN_DIR_HEADER] }));
    });
    await new Promise<void>((r) => server.listen(path.join(dir, 'agent.sock'), r));
  });
  afterEach(async () => {
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Blocks this process's event loop, as a descheduled CLI would be. */
  const stall = (ms: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
  };

  it('answers through the agent', async () => {
    const a = await callAgent(path.join(dir, 'agent.sock'), '/sys/fs/bpf/x', 'GET', '/healthz');
    expect(a).toEqual({ ok: true, body: { pinDir: '/sys/fs/bpf/x' } });
  });

  it('a stall longer than the connect bound does not turn into "no agent"', async () => {
    const pending = callAgent(path.join(dir, 'agent.sock'), '/sys/fs/bpf/x', 'GET', '/healthz');
    stall(CONNECT_TIMEOUT_MS * 2);
    expect(await pending).toMatchObject({ ok: true });
    expect(requests).toBe(1);
  });

  it('no socket: no agent', async () => {
    expect(await callAgent(path.join(dir, 'none.sock'), '/x', 'GET', '/healthz')).toBeUndefined();
  });
});
