/**
 * Bulk connect/disconnect of N containers: N single calls against the library's connectMany /
 * disconnectMany, plus a bench-only prototype of a bulk veth delete by device group, to size
 * what sharing the RCU grace period would give.
 */
import { deleteNamedNetns, type Request } from '../../src/index.js';
import type { Env, Slot } from './methods.js';
import { makeSlots, settle } from './runner.js';
import { nowMs } from './stats.js';

const CHUNK = 32;
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const IFLA_IFNAME = 3;
const IFLA_GROUP = 27;
/** Device group used to delete many veths with one RTM_DELLINK (`ip link del group N`). */
const BULK_GROUP = 0x7b5e;

/** An ifinfomsg request with raw attributes, for what the library has no builder for (IFLA_GROUP). */
function rawLink(type: number, index: number, attrs: readonly [number, Buffer][]): Request {
  const size = 16 + attrs.reduce((n, [, d]) => n + ((4 + d.length + 3) & ~3), 0);
  return {
    type,
    flags: 0,
    size,
    write(buf, off) {
      buf.fill(0, off, off + size);
      buf.writeInt32LE(index, off + 4);
      let o = off + 16;
      for (const [t, d] of attrs) {
        buf.writeUInt16LE(4 + d.length, o);
        buf.writeUInt16LE(t, o + 2);
        d.copy(buf, o + 4);
        o += (4 + d.length + 3) & ~3;
      }
    },
  };
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}; // requests of a pipelined batch, to keep the replies under the socket's receive buffer

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

async function connectSequential(env: Env, slots: readonly Slot[], mapping: boolean): Promise<void> {
  for (const s of slots) s.id = (await env.nets.connect(env.network, { name: s.ns }, mapping ? { ports: [`${s.hostPort}:80`] } : {})).id;
}

/** A timed bulk run: total ms, and for connectMany the chunk size that worked and the failures before it. */
export interface BulkRun {
  ms: number;
  chunk: number;
  errors: string[];
}

async function cleanup(env: Env, slots: readonly Slot[]): Promise<void> {
  for (const s of slots) deleteNamedNetns(s.ns);
  await settle(env);
  for (const s of slots) if (s.id) await env.nets.disconnect(env.network, s.id);
}

/**
 * Times connecting `n` fresh containers (cleanup untimed). 'many' calls connectMany with all of
 * them; when that fails (e.g. ENOBUFS) it is recorded and retried in halves, on fresh containers.
 */
export async function bulkConnect(env: Env, n: number, mapping: boolean, mode: 'sequential' | 'many'): Promise<BulkRun> {
  const errors: string[] = [];
  for (let chunk = n; ; chunk = Math.ceil(chunk / 2)) {
    const slots = makeSlots(n);
    const t0 = nowMs();
    try {
      if (mode === 'sequential') await connectSequential(env, slots, mapping);
      else {
        for (const part of chunks(slots, chunk)) {
          const recs = await env.nets.connectMany(env.network, part.map((s) => ({ container: { name: s.ns }, opts: mapping ? { ports: [`${s.hostPort}:80`] } : {} })));
          recs.forEach((r, i) => (part[i]!.id = r.id));
        }
      }
      const ms = nowMs() - t0;
      await cleanup(env, slots);
      return { ms, chunk, errors };
    } catch (e) {
      const err = e as Error & { code?: string };
      errors.push(`connectMany(${chunk}): ${err.code ?? err.name}: ${err.message.split('\n')[0]}`);
      env.nets.close(); // a failed batch can leave replies queued on the host socket: start afresh
      await cleanup(env, slots);
      if (mode === 'sequential' || chunk <= 1) throw e;
    }
  }
}

/**
 * Times disconnecting `n` containers whose netns are still alive; returns total ms.
 * 'sequential': n disconnect() calls (each deletes its veth: one RCU grace period each).
 * 'many': one disconnectMany() (the library pipelines the RTM_DELLINKs in one sendto).
 * 'group': every host veth is put in one device group (pipelined), then one RTM_DELLINK by
 *   IFLA_GROUP deletes them all (one unregister_netdevice_many: shared RCU grace periods).
 * 'netns-first': the container's netns are deleted first (container exit), then disconnect().
 */
export async function bulkDisconnect(env: Env, n: number, mode: 'sequential' | 'many' | 'group' | 'netns-first'): Promise<number> {
  const slots = makeSlots(n);
  await connectSequential(env, slots, false);
  const recs = slots.map((s) => env.nets.store.getEndpoint(env.network, s.id!)!);
  const t0 = nowMs();
  if (mode === 'group') {
    const host = env.nets.host;
    for (const part of chunks(recs, CHUNK)) {
      for (const r of host.batch(part.map((e) => rawLink(RTM_NEWLINK, 0, [[IFLA_IFNAME, Buffer.from(`${e.hostIfname}\0`)], [IFLA_GROUP, u32(BULK_GROUP)]])))) if (r.error) throw r.error;
    }
    const [del] = host.batch([rawLink(RTM_DELLINK, 0, [[IFLA_GROUP, u32(BULK_GROUP)]])]);
    if (del?.error) throw del.error;
  } else if (mode === 'netns-first') {
    for (const s of slots) deleteNamedNetns(s.ns);
    await settle(env);
  }
  if (mode === 'many') await env.nets.disconnectMany(env.network, slots.map((s) => s.id!));
  else for (const s of slots) await env.nets.disconnect(env.network, s.id!);
  const ms = nowMs() - t0;
  if (mode !== 'netns-first') for (const s of slots) deleteNamedNetns(s.ns);
  await settle(env);
  return ms;
}
