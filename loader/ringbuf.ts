// Consumer side of a BPF_MAP_TYPE_RINGBUF map (Linux 5.8+) through libbpf's
// ring_buffer API. Records are copied into Buffers the caller owns: the
// memory libbpf hands to the callback is the kernel's shared ring and is
// reused as soon as the callback returns.
//
// Nothing here blocks unless asked to: `consume()` drains what is there and
// returns at once, so a timer can call it and keep the event loop (and
// SIGINT) alive. `poll(ms)` waits in epoll_wait and blocks the JS thread for
// up to `ms`.
import ffi = require('@2060.io/ffi-napi');
import ref = require('@2060.io/ref-napi');
import { MapType } from './constants';
import { BpfError, check } from './errors';
import { NULL, isNull, lastErrno, libbpf, type Ptr } from './libbpf';
import type { BpfMap } from './map';

const EINVAL = 22;

// The ffi trampoline of each open ring buffer. libbpf calls into it, so it
// must not be garbage collected while the ring_buffer exists: it stays here
// from ring_buffer__new until ring_buffer__free.
const liveCallbacks = new Map<RingBuffer, unknown>();

/** Called once per record with a private copy of its bytes. Returning
 * false stops the drain after this record: the ones after it stay in the
 * ring for the next consume (or the next reader). */
export type RingBufferSampleFn = (record: Buffer) => boolean | void;

/** What the callback returns to stop libbpf's drain (it has already moved
 * the consumer position past that record, and only that far). */
const STOP = -125; /* -ECANCELED */

/**
 * A libbpf `struct ring_buffer` reading one ring buffer map. The map fd only
 * needs to live until the constructor returns: libbpf mmaps the ring and
 * keeps its own reference. Call `close()` when done (idempotent).
 */
export class RingBuffer {
  private rb: Ptr | undefined;
  private _errors = 0;
  private _lastError: unknown;
  private _records = 0;

  private constructor(mapFd: number, onSample: RingBufferSampleFn, name: string) {
    const callback = ffi.Callback(
      'int',
      ['pointer', 'pointer', 'size_t'],
      (_ctx: Ptr, data: Ptr, size: number): number => {
        // An exception must never unwind through libbpf's C frames; a
        // negative return stops the drain, so only an explicit false does.
        try {
          this._records++;
          const n = Number(size);
          const copy = Buffer.from(ref.reinterpret(data, n, 0));
          if (onSample(copy) === false) return STOP;
        } catch (err) {
          this._errors++;
          this._lastError = err;
        }
        return 0;
      },
    );
    const rb = libbpf.ring_buffer__new(mapFd, callback as unknown as Ptr, NULL, NULL);
    if (isNull(rb)) throw new BpfError('ring_buffer__new', lastErrno() || EINVAL, name);
    liveCallbacks.set(this, callback);
    this.rb = rb;
  }

  /**
   * Opens a consumer on `map` (a BpfMap of type RINGBUF, or a raw map fd).
   * Wrong map type: BpfError 'EINVAL'.
   */
  static open(map: BpfMap | number, onSample: RingBufferSampleFn): RingBuffer {
    if (typeof map === 'number') return new RingBuffer(map, onSample, `fd ${map}`);
    if (map.type !== MapType.RINGBUF) {
      throw new BpfError('ring_buffer__new', EINVAL, `${map.name} is not a ring buffer map`);
    }
    return new RingBuffer(map.fd, onSample, map.name);
  }

  private get handle(): Ptr {
    if (!this.rb) throw new BpfError('RingBuffer', 9 /* EBADF */, 'ring buffer is closed');
    return this.rb;
  }

  /**
   * Hands every record available now to the callback, without waiting.
   * Returns how many were consumed.
   */
  consume(): number {
    const ret = libbpf.ring_buffer__consume(this.handle);
    if (ret === STOP) return 0; // the callback asked to stop
    return check('ring_buffer__consume', ret);
  }

  /**
   * Waits up to `timeoutMs` (0: not at all, -1: forever) for records, then
   * consumes them. BLOCKS the JS thread while waiting: in a server prefer
   * `consume()` from a timer. EINTR (a signal arrived) counts as 0 records.
   */
  poll(timeoutMs: number): number {
    const ret = libbpf.ring_buffer__poll(this.handle, timeoutMs);
    if (ret === -4 /* EINTR */) return 0;
    return check('ring_buffer__poll', ret);
  }

  /** The epoll fd libbpf waits on (readable when records are pending). */
  get epollFd(): number {
    return check('ring_buffer__epoll_fd', libbpf.ring_buffer__epoll_fd(this.handle));
  }

  /** Records handed to the callback so far. */
  get records(): number {
    return this._records;
  }

  /** Exceptions the callback threw (swallowed, see `lastError`). */
  get errors(): number {
    return this._errors;
  }

  get lastError(): unknown {
    return this._lastError;
  }

  get closed(): boolean {
    return this.rb === undefined;
  }

  /** Frees the ring_buffer (idempotent). Never call it from the callback. */
  close(): void {
    const rb = this.rb;
    if (!rb) return;
    this.rb = undefined;
    libbpf.ring_buffer__free(rb);
    liveCallbacks.delete(this);
  }
}
