// OCI state and io.l3iso.* annotations: everything the hook acts on is
// validated before anything changes.
import { describe, expect, it } from 'vitest';
import { cellRequest, parseOciState, unifiedCgroupOf } from '../../src/runtime/oci-state';

const base = { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 42, bundle: '/b' };

describe('parseOciState', () => {
  it('reads the runtime-spec fields and the annotations', () => {
    const s = parseOciState(JSON.stringify({ ...base, annotations: { a: 'b' } }));
    expect(s).toEqual({ ...base, annotations: { a: 'b' } });
  });

  it('pid 0 or absent (poststop) is no pid', () => {
    expect(parseOciState(JSON.stringify({ ...base, pid: 0 })).pid).toBeUndefined();
    expect(parseOciState(JSON.stringify({ ...base, pid: undefined })).pid).toBeUndefined();
  });

  it.each([
    ['not JSON', 'nope', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['no id', JSON.stringify({ ...base, id: undefined }), /"id" must be a string/],
    ['an id with a slash', JSON.stringify({ ...base, id: '../x' }), /is not valid/],
    ['a negative pid', JSON.stringify({ ...base, pid: -1 }), /"pid"/],
    ['a non-string annotation', JSON.stringify({ ...base, annotations: { a: 1 } }), /annotation a/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseOciState(text)).toThrow(message);
  });
});

describe('cellRequest', () => {
  it('no io.l3iso.* annotation: nothing to do', () => {
    expect(cellRequest({ 'org.opencontainers.image.title': 'x' })).toBeUndefined();
  });

  it('addresses and allow-from are comma lists (spaces ignored)', () => {
    expect(
      cellRequest({
        'io.l3iso.addresses': '192.0.2.1, 2001:db8::1',
        'io.l3iso.allow-from': '198.51.100.0/24',
      }),
    ).toEqual({ addresses: ['192.0.2.1', '2001:db8::1'], allowFrom: ['198.51.100.0/24'] });
  });

  it('a pool, with a count (default 1)', () => {
    expect(cellRequest({ 'io.l3iso.pool': 'web' })).toEqual({ pool: { name: 'web', count: 1 } });
    expect(
      cellRequest({
        'io.l3iso.pool': 'web',
        'io.l3iso.pool-count': '3',
        'io.l3iso.allow-from': '198.51.100.0/24',
      }),
    ).toEqual({ pool: { name: 'web', count: 3 }, allowFrom: ['198.51.100.0/24'] });
  });

  it.each([
    [{ 'io.l3iso.addresses': '192.0.2.1', 'io.l3iso.pool': 'web' }, /exclude each other/],
    [{ 'io.l3iso.pool': ' ' }, /io\.l3iso\.pool is empty/],
    [{ 'io.l3iso.pool-count': '2' }, /pool-count needs io\.l3iso\.pool/],
    [{ 'io.l3iso.pool': 'web', 'io.l3iso.pool-count': '0' }, /must be a positive integer/],
    [{ 'io.l3iso.pool': 'web', 'io.l3iso.pool-count': 'two' }, /must be a positive integer/],
    [{ 'io.l3iso.adresses': '192.0.2.1' }, /unknown annotation io\.l3iso\.adresses/],
    [{ 'io.l3iso.allow-from': '198.51.100.0/24' }, /needs io\.l3iso\.addresses or io\.l3iso\.pool/],
    [{ 'io.l3iso.addresses': ' , ' }, /io\.l3iso\.addresses is empty/],
  ])('refuses %o', (annotations, message) => {
    expect(() => cellRequest(annotations)).toThrow(message);
  });
});

describe('unifiedCgroupOf', () => {
  it('takes the 0:: line of a hybrid host', () => {
    expect(unifiedCgroupOf('2:cpu:/a\n1:name=systemd:/a\n0::/l3/ctr\n')).toBe('/l3/ctr');
  });
  it('none on a v1-only host', () => {
    expect(unifiedCgroupOf('2:cpu:/a\n1:name=systemd:/a\n')).toBeUndefined();
  });
});
