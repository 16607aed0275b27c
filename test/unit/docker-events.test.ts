// The docker events lines the agent's watcher acts on, and those it ignores.
import { describe, expect, it } from 'vitest';
import { dockerEventsArgs, parseDockerEvent } from '../../src/runtime/docker-events';

const ID = 'a'.repeat(63) + '1';
const line = (o: object) => JSON.stringify(o);

describe('docker events', () => {
  it('asks docker for JSON lines of container die and destroy events, since a time on restart', () => {
    expect(dockerEventsArgs()).toEqual([
      'events',
      '--format',
      '{{json .}}',
      '--filter',
      'type=container',
      '--filter',
      'event=die',
      '--filter',
      'event=destroy',
    ]);
    expect(dockerEventsArgs(1700000000).slice(-2)).toEqual(['--since', '1700000000']);
  });

  it('reads a container die or destroy event', () => {
    const ev = { Type: 'container', Action: 'die', Actor: { ID: ID, Attributes: {} }, time: 17 };
    expect(parseDockerEvent(line(ev))).toEqual({ container: ID, action: 'die', time: 17 });
    expect(parseDockerEvent(line({ ...ev, Action: 'destroy', time: undefined }))).toEqual({
      container: ID,
      action: 'destroy',
    });
  });

  it.each([
    ['not JSON', '{"Type":'],
    ['another type', line({ Type: 'network', Action: 'destroy', Actor: { ID } })],
    ['another action', line({ Type: 'container', Action: 'start', Actor: { ID } })],
    [
      'an id that is no docker id',
      line({ Type: 'container', Action: 'die', Actor: { ID: '../x' } }),
    ],
    ['no actor', line({ Type: 'container', Action: 'die' })],
  ])('ignores %s', (_what, text) => {
    expect(parseDockerEvent(text)).toBeUndefined();
  });
});
