/**
 * The two handles of a family, made from one class of operations (generators, core/op.ts): a
 * synchronous handle whose methods run each operation with runSync, and its `promises` twin whose
 * methods of the same names run it with runAsync, as Node pairs `fs` and `fs.promises`. A family
 * writes its operations once; defineOperations puts both forms on its two handle classes, so
 * neither can miss one.
 */
import { runAsync, runSync, type Op } from './op.js';
import type { NetlinkSocket } from './socket.js';

/** The operations of T, each returning its result directly (run by runSync). */
export type SyncMethods<T> = { [K in keyof T]: T[K] extends (...a: infer A) => Op<infer V> ? (...a: A) => V : never };

/** The operations of T, each returning a promise of its result (run by runAsync). */
export type PromiseMethods<T> = { [K in keyof T]: T[K] extends (...a: infer A) => Op<infer V> ? (...a: A) => Promise<V> : never };

/** What a handle of either form holds: the socket its operations run on, and the object that has them. */
export interface OpHost {
  readonly socket: NetlinkSocket;
  readonly ops: object;
}

/** Every method of an operations class and its bases (constructors left out), sorted. */
export function operationNames(ops: abstract new (...a: never[]) => object): string[] {
  const names = new Set<string>();
  for (let p: object | null = ops.prototype as object; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const n of Object.getOwnPropertyNames(p)) if (n !== 'constructor') names.add(n);
  }
  return [...names].sort();
}

/**
 * Defines each operation named in `names` on both handle classes: on `sync` it runs the
 * operation of the handle's `ops` with blocking calls, on `promises` with the socket's queued
 * async ones.
 */
export function defineOperations(names: readonly string[], sync: { prototype: OpHost }, promises: { prototype: OpHost }): void {
  const op = (h: OpHost, name: string, args: unknown[]): Op<unknown> => (h.ops as Record<string, (...a: unknown[]) => Op<unknown>>)[name]!.apply(h.ops, args);
  for (const name of names) {
    Object.defineProperty(sync.prototype, name, {
      configurable: true,
      writable: true,
      value: function (this: OpHost, ...args: unknown[]): unknown {
        return runSync(this.socket, op(this, name, args));
      },
    });
    Object.defineProperty(promises.prototype, name, {
      configurable: true,
      writable: true,
      value: function (this: OpHost, ...args: unknown[]): Promise<unknown> {
        return runAsync(this.socket, op(this, name, args));
      },
    });
  }
}

/** The promise form of a family's handle: the operations of `ops` on `socket`, each returning a promise. */
export class PromiseHandle<O extends object> implements OpHost {
  /** Wraps an open socket; a synchronous handle on the same socket shares its queue. */
  constructor(
    readonly socket: NetlinkSocket,
    readonly ops: O,
  ) {}

  /** Closes the socket once every queued operation has settled. */
  close(): void {
    this.socket.close();
  }
}

/**
 * The synchronous form of a family's handle. Its `promises` is the twin on the same socket and
 * operations (caches included), made on first use: calls made while others are in flight are
 * queued, and the synchronous methods refuse to run until the queue is empty.
 */
export class SyncHandle<O extends object, P> implements OpHost {
  #promises: P | undefined;

  /** `twin` makes the promise form from the socket and the operations. */
  constructor(
    readonly socket: NetlinkSocket,
    readonly ops: O,
    private readonly twin: new (socket: NetlinkSocket, ops: O) => P,
  ) {}

  /** The same operations returning promises, on the same socket (like `fs.promises`). */
  get promises(): P {
    return (this.#promises ??= new this.twin(this.socket, this.ops));
  }

  /** Closes the socket (once queued async work has run). */
  close(): void {
    this.socket.close();
  }
}
