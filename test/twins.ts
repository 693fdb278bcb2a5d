/**
 * Checks a family handle's promise twin against its synchronous form on the fake kernel: every
 * operation (listed from the family's operations class, so one without a case fails) called both
 * ways on two fresh handles must send the same messages and give the same result or the same
 * error; and every operation in flight at once on one handle must each get its own answer.
 */
import * as assert from 'uvu/assert';
import type { Test } from 'uvu';
import { ack, dial, type Handler } from '../src/netlink/core/testing.js';
import type { RawMessage } from '../src/netlink/core/message.js';
import type { NetlinkSocket, SocketOptions } from '../src/netlink/core/socket.js';
import { NetlinkError } from '../src/errors.js';

/** A value with sequence numbers and port ids dropped and bytes as hex, for comparing two runs. */
export function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (typeof v === 'function') return 'function';
  if (Array.isArray(v)) {
    const extra = Object.keys(v).filter((k) => !/^\d+$/.test(k));
    const items = v.map(plain);
    return extra.length ? { items, ...Object.fromEntries(extra.map((k) => [k, plain((v as unknown as Record<string, unknown>)[k])])) } : items;
  }
  if (v instanceof Error) return { class: v.constructor.name, message: v.message, ...(plain({ ...v }) as object) };
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'seq' && k !== 'pid').map(([k, x]) => [k, plain(x)]));
  return v;
}

/** The messages sent, as text without sequence numbers and port ids. */
export const wire = (sent: RawMessage[]): string[] => sent.map((m) => `${m.type} ${m.flags.toString(16)} ${m.payload.toString('hex')}`);

/** What a family gives the generic checks. */
export interface Family {
  name: string;
  /** The operation names, read from the family's operations class. */
  operations: readonly string[];
  /** The synchronous handle on a socket; its `promises` is the twin under test. */
  make: (socket: NetlinkSocket) => object;
  /** Valid arguments for each operation (the kernel below answers them). */
  args: Record<string, () => unknown[]>;
  /** A kernel answering like the real one, from captured replies. */
  kernel: Handler;
  /** Options for the fake socket (the family's message names). */
  socket?: SocketOptions;
  /** Operations that send nothing to fail on with their arguments here (they succeed against a refusing kernel). */
  neverRefused?: readonly string[];
}

type Outcome = { value: unknown } | { error: unknown };

/** Calls operation `name` on a handle of either form, catching what it throws or rejects with. */
async function call(h: object, name: string, args: unknown[]): Promise<Outcome> {
  try {
    return { value: await (h as Record<string, (...a: unknown[]) => unknown>)[name]!(...args) };
  } catch (error) {
    return { error };
  }
}

/** Runs `name` on a fresh synchronous handle and on a fresh promise twin, each on its own fake socket. */
async function both(f: Family, name: string, handler: Handler): Promise<{ sync: Outcome; async: Outcome; syncWire: string[]; asyncWire: string[] }> {
  const a = dial(handler, f.socket);
  const b = dial(handler, f.socket);
  const sync = await call(f.make(a), name, f.args[name]!());
  const async = await call((f.make(b) as { promises: object }).promises, name, f.args[name]!());
  return { sync, async, syncWire: wire(a.transport.sent), asyncWire: wire(b.transport.sent) };
}

/** A kernel that refuses everything with `errno` and an extended-ack message. */
const refusing = (errno: number): Handler => (req) => [ack(req, errno, { message: 'fake: refused', offset: 20 })];

/** Registers the generic checks of one family on `test`. */
export function twinTests(test: Test, f: Family): void {
  test(`${f.name}: every operation has a case, and both forms are defined`, () => {
    assert.equal(Object.keys(f.args).sort(), [...f.operations]);
    const h = f.make(dial(f.kernel, f.socket)) as Record<string, unknown> & { promises: Record<string, unknown> };
    for (const n of f.operations) {
      assert.type(h[n], 'function', n);
      assert.type(h.promises[n], 'function', n);
    }
  });

  for (const name of f.operations) {
    test(`${f.name}.${name}: the promise form sends the same bytes and returns the same result`, async () => {
      const r = await both(f, name, f.kernel);
      assert.equal(r.asyncWire, r.syncWire);
      assert.ok(r.syncWire.length > 0, 'something was sent');
      assert.equal(plain(r.async), plain(r.sync));
      assert.ok('value' in r.sync, `${name} failed: ${String((r.sync as { error?: unknown }).error)}`);
      // A list compared empty to empty would prove little: the kernels here answer with captured objects.
      if (Array.isArray(r.sync.value)) assert.ok(r.sync.value.length > 0, `${name} returned nothing`);
    });
    test(`${f.name}.${name}: the promise form rejects with the error the sync form throws`, async () => {
      const r = await both(f, name, refusing(1));
      assert.equal(r.asyncWire, r.syncWire);
      assert.equal(plain(r.async), plain(r.sync));
      if (!f.neverRefused?.includes(name)) assert.instance((r.async as { error?: unknown }).error, NetlinkError, name);
    });
  }

  test(`${f.name}: every operation three times in flight at once on one handle, each with its own answer`, async () => {
    const want = new Map<string, unknown>();
    for (const n of f.operations) want.set(n, plain(await call(f.make(dial(f.kernel, f.socket)), n, f.args[n]!())));
    const p = (f.make(dial(f.kernel, f.socket)) as { promises: object }).promises;
    const jobs = [0, 1, 2].flatMap(() => f.operations.map(async (n) => [n, plain(await call(p, n, f.args[n]!()))] as const));
    for (const [n, got] of await Promise.all(jobs)) assert.equal(got, want.get(n), n);
  });
}
