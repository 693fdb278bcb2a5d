/**
 * Event-loop rows of the bench: what the JS thread stalls while the kernel works. Disconnects
 * through Networks (the bridge layer's slow paths go through rt.promises) against the same
 * kernel calls made with the synchronous API; a 20,000-route dump through rt.promises against
 * the synchronous dump; 100 disconnects in flight at once against 100 one after another, and the
 * raw veth deletions that explain the ratio (one socket, one socket each, one group); and the
 * stall of an idle event loop, the machine's own noise floor, measured in the same run.
 */
import { createSocket } from 'node:dgram';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { Conntrack, Networks, Rtnl, createNamedNetns, deleteNamedNetns, linkRequests, openRtnlIn, routeRequests, type EndpointRecord, type NetnsHandle } from '../../src/index.js';
import { verdict, type Verdict } from './report.js';
import { stallOf, type Stall as Measured } from './stall.js';
import { fmtMs } from './stats.js';

type Stall = Measured & { gcMs?: number };

/** Like stallOf, with the longest garbage-collection pause seen meanwhile (the stall it explains). */
async function stallGc(run: () => Promise<void> | void): Promise<Stall> {
  let gcMs = 0;
  const obs = new PerformanceObserver((list) => {
    // The full collection stallOf forces before the run is not one the run caused.
    for (const e of list.getEntries()) {
      const flags = (e as PerformanceEntry & { detail?: { flags?: number } }).detail?.flags ?? 0;
      if ((flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) === 0) gcMs = Math.max(gcMs, e.duration);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    const s = await stallOf(run);
    // GC entries are delivered on a later turn.
    await sleep(1);
    return { ...s, gcMs };
  } finally {
    obs.disconnect();
  }
}

/** A stall as printed: the longest gap, what the process itself spent of it when known, and the 99th percentile. */
function fmtStall(s: Measured): string {
  return `${fmtMs(s.stallMs)} ms${s.ownMs !== undefined ? ` (own ${fmtMs(s.ownMs)} ms)` : ''}${s.cpuMs !== undefined ? ` [cpu ${fmtMs(s.cpuMs)} ms]` : ''}${s.p99Ms !== undefined ? ` [p99 ${fmtMs(s.p99Ms)} ms]` : ''}`;
}

/** What the process itself spent of its longest stall, or why that is not known. */
function fmtOwn(s: Measured): string {
  return s.ownMs !== undefined ? `${fmtMs(s.ownMs)} ms` : 'not measured (no /proc schedstat)';
}

/** The worst of several runs: the longest stall of any, and the total time. */
function worst(xs: readonly Stall[]): Stall {
  const own = xs.every((x) => x.ownMs !== undefined) ? Math.max(...xs.map((x) => x.ownMs as number)) : undefined;
  const p99 = xs.every((x) => x.p99Ms !== undefined) ? Math.max(...xs.map((x) => x.p99Ms as number)) : undefined;
  const cpu = xs.every((x) => x.cpuMs !== undefined) ? Math.max(...xs.map((x) => x.cpuMs as number)) : undefined;
  return { stallMs: Math.max(...xs.map((x) => x.stallMs)), ownMs: own, cpuMs: cpu, p99Ms: p99, ms: xs.reduce((n, x) => n + x.ms, 0), gcMs: Math.max(0, ...xs.map((x) => x.gcMs ?? 0)) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A network of its own, and containers (named netns) connected to it on demand. */
class Bed {
  readonly nets = new Networks({ stateDir: '/run/tsnetlink/bench-async' });
  readonly network = 'asyncbench';
  private made = 0;
  private readonly live = new Set<string>();

  async open(): Promise<void> {
    await this.nets.create({ name: this.network, subnet: '10.77.0.1/16' });
  }

  /** Connects `n` fresh containers, and gives each a tracked UDP flow, so every disconnect has conntrack entries to forget. */
  async connect(n: number): Promise<EndpointRecord[]> {
    const names = Array.from({ length: n }, () => `ab${this.made++}`);
    for (const name of names) {
      createNamedNetns(name).close();
      this.live.add(name);
    }
    const recs: EndpointRecord[] = [];
    for (let i = 0; i < names.length; i += 32) recs.push(...(await this.nets.connectMany(this.network, names.slice(i, i + 32).map((name) => ({ container: { name } })))));
    const sock = createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, resolve));
    for (const r of recs) for (const a of r.addresses) if (a.family === 4) await new Promise((resolve) => sock.send('x', 9, a.ip, resolve));
    await new Promise<void>((resolve) => sock.close(() => resolve()));
    return recs;
  }

  /** Deletes the containers' netns (their records are gone by then). */
  dropContainers(): void {
    for (const name of this.live) deleteNamedNetns(name);
    this.live.clear();
  }

  async close(): Promise<void> {
    try {
      await this.nets.remove(this.network, { force: true });
    } finally {
      this.nets.close();
      this.dropContainers();
    }
  }
}

/**
 * What a disconnect does in the kernel, made with the synchronous API: the host veth down, its
 * deletion, and a dump of the conntrack table with a delete of the container's entries.
 */
function syncKernelCalls(rt: Rtnl, rec: EndpointRecord): void {
  rt.batch([linkRequests.setDownRequest(rec.hostIfname)]);
  rt.linkDel(rec.hostIfname);
  const ips = new Set(rec.addresses.map((a) => a.ip));
  const ct = Conntrack.open();
  try {
    ct.deleteEntries(ct.list({ family: 4 }).filter((e) => ips.has(e.orig.src) || ips.has(e.reply.src)));
  } finally {
    ct.close();
  }
}

/**
 * `rounds` rounds of `per` disconnects one after another through Networks, each round followed
 * by `per` endpoints whose kernel side is removed with the synchronous calls (their records
 * are then dropped by an untimed disconnect), and by an idle wait as long as the async round.
 */
async function disconnectStalls(bed: Bed, rounds: number, per: number): Promise<{ promises: Stall; sync: Stall; idle: Stall; entries: number }> {
  const a: Stall[] = [];
  const s: Stall[] = [];
  const idle: Stall[] = [];
  const rt = Rtnl.open();
  let entries = 0;
  try {
    for (let i = 0; i < rounds; i++) {
      const left = await bed.connect(per);
      const right = await bed.connect(per);
      const ct = Conntrack.open();
      entries += ct.count();
      ct.close();
      const one = await stallGc(async () => {
        for (const r of left) await bed.nets.disconnect(bed.network, r.id);
      });
      a.push(one);
      // A turn of the event loop between two disconnects, as between two requests a server answers.
      s.push(
        await stallOf(async () => {
          for (const r of right) {
            syncKernelCalls(rt, r);
            await new Promise((resolve) => setImmediate(resolve));
          }
        }),
      );
      for (const r of right) await bed.nets.disconnect(bed.network, r.id);
      idle.push(await stallOf(async () => void (await sleep(one.ms))));
      bed.dropContainers();
    }
  } finally {
    rt.close();
  }
  return { promises: worst(a), sync: worst(s), idle: worst(idle), entries: Math.round(entries / rounds) };
}

/** Disconnects of `n` endpoints one after another against all at once (Promise.all), interleaved; total ms of each. */
async function disconnectConcurrency(bed: Bed, rounds: number, n: number): Promise<{ sequential: number; concurrent: number; concurrentStallMs: number; concurrentOwnMs: number | undefined }> {
  let sequential = 0;
  let concurrent = 0;
  let stall = 0;
  let own: number | undefined;
  for (let i = 0; i < rounds; i++) {
    const seq = await bed.connect(n);
    sequential += (
      await stallOf(async () => {
        for (const r of seq) await bed.nets.disconnect(bed.network, r.id);
      })
    ).ms;
    const conc = await bed.connect(n);
    const c = await stallOf(async () => {
      await Promise.all(conc.map((r) => bed.nets.disconnect(bed.network, r.id)));
    });
    concurrent += c.ms;
    stall = Math.max(stall, c.stallMs);
    if (c.ownMs !== undefined) own = Math.max(own ?? 0, c.ownMs);
    bed.dropContainers();
  }
  return { sequential: sequential / rounds, concurrent: concurrent / rounds, concurrentStallMs: stall, concurrentOwnMs: own };
}

/**
 * The kernel side of the ratio: `n` veths deleted through rt.promises one after another, all at
 * once on one socket (pipelined into one sendto), all at once each on a socket of its own (as
 * concurrent disconnects do), and in one RTM_DELLINK of a device group; total ms of each.
 */
async function rawDeletes(ns: NetnsHandle, n: number): Promise<Record<'sequential' | 'oneSocket' | 'ownSockets' | 'group', number>> {
  const rt = openRtnlIn(ns);
  const make = (): string[] => {
    const names = Array.from({ length: n }, (_, i) => `rd${i}`);
    rt.batchOrThrow(names.map((v, i) => linkRequests.addVethRequest(v, { name: `re${i}` }, { up: true })));
    return names;
  };
  const timed = async (f: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  try {
    const a = make();
    const sequential = await timed(async () => {
      for (const v of a) await rt.promises.linkDel(v);
    });
    const b = make();
    const oneSocket = await timed(() => Promise.all(b.map((v) => rt.promises.linkDel(v))));
    const c = make();
    const socks = c.map(() => openRtnlIn(ns));
    const ownSockets = await timed(() => Promise.all(c.map((v, i) => socks[i]!.promises.linkDel(v))));
    for (const s of socks) s.close();
    const d = make();
    rt.batchOrThrow(d.map((v) => linkRequests.setGroupRequest(v, 4242)));
    const group = await timed(() => rt.promises.batch([linkRequests.deleteGroupRequest(4242)]));
    return { sequential, oneSocket, ownSockets, group };
  } finally {
    rt.close();
  }
}

/**
 * A dump of `count` routes through rt.promises handing each over (`each`, nothing kept); then
 * through the sync API and through rt.promises keeping them (routeList's list), interleaved: the
 * longest stall and the time of each.
 */
async function routeDumpStalls(ns: NetnsHandle, count: number, rounds: number): Promise<{ routes: number; sync: Stall; promises: Stall; each: Stall }> {
  const rt = openRtnlIn(ns, { receiveBufferSize: 8 << 20 });
  try {
    rt.linkSetUp('lo');
    const reqs = rt.resolve(Array.from({ length: count }, (_, i) => routeRequests.addRouteRequest({ dst: `10.${(i >> 16) + 100}.${(i >> 8) & 255}.${i & 255}/32`, oif: 'lo', table: 100 })));
    for (let i = 0; i < reqs.length; i += 4096) rt.batchOrThrow(reqs.slice(i, i + 4096));
    const s: Stall[] = [];
    const p: Stall[] = [];
    const e: Stall[] = [];
    let routes = count;
    // The dumps that keep nothing go first: after lists of 20,000 routes were kept, the young
    // generation V8 sized for them stays large, and a later dump's scavenge pays for that.
    for (let i = 0; i < rounds + 1; i++) {
      const one = await stallGc(async () => {
        let n = 0;
        await rt.promises.routeList({ family: 4, table: 100 }, { each: () => void n++ });
        routes = Math.min(routes, n);
      });
      // The first round warms the JIT and the page cache.
      if (i > 0) e.push(one);
    }
    for (let i = 0; i < rounds + 1; i++) {
      const one = await stallGc(() => {
        routes = Math.min(routes, rt.routeList({ family: 4, table: 100 }).length);
      });
      const two = await stallGc(async () => {
        routes = Math.min(routes, (await rt.promises.routeList({ family: 4, table: 100 })).length);
      });
      if (i > 0) {
        s.push(one);
        p.push(two);
      }
    }
    return { routes, sync: worst(s), promises: worst(p), each: worst(e) };
  } finally {
    rt.close();
  }
}

/** Runs the event-loop rows; returns printable lines, verdicts and the figures for latest.json. */
export async function asyncBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: Record<string, unknown> }> {
  const cfg = quick ? { rounds: 2, per: 25, concN: 30, concRounds: 1, routes: 20_000, dumpRounds: 3 } : { rounds: 4, per: 25, concN: 100, concRounds: 2, routes: 20_000, dumpRounds: 6 };
  const names = ['nlbench-async-routes', 'nlbench-async-veths'];
  const handles = names.map((n) => createNamedNetns(n));
  const bed = new Bed();
  try {
    await bed.open();
    // Warm-up: JIT, the first firewall calls.
    await disconnectStalls(bed, 1, 5);
    const disc = await disconnectStalls(bed, cfg.rounds, cfg.per);
    const dump = await routeDumpStalls(handles[0]!, cfg.routes, cfg.dumpRounds);
    const conc = await disconnectConcurrency(bed, cfg.concRounds, cfg.concN);
    const raw = await rawDeletes(handles[1]!, cfg.concN);
    const n = cfg.rounds * cfg.per;
    const ratio = conc.sequential / conc.concurrent;
    const lines = [
      `Event loop${quick ? ' --quick' : ''} (longest gap of monitorEventLoopDelay's 1 ms timer, less the 1 ms; "own": the same gaps less the time the JS thread waited for a CPU, from /proc schedstat; [cpu]: the most CPU the JS thread used between two runs of that timer (its own work, GC included, no waits); [p99]: the 99th percentile of the gaps, less the 1 ms, the worst round's; an idle wait is the machine's own floor)`,
      `  longest stall during ${n} disconnects through Networks, one after another (~${disc.entries} conntrack entries in the table): ${fmtStall(disc.promises)} (${fmtMs(disc.promises.ms / n)} ms each; longest GC pause ${fmtMs(disc.promises.gcMs ?? 0)} ms); the same kernel calls made synchronously (down, delete, conntrack dump and delete): ${fmtStall(disc.sync)} (${fmtMs(disc.sync.ms / n)} ms each); an idle wait as long: ${fmtStall(disc.idle)}`,
      `  longest stall during a dump of ${dump.routes} routes: rt.promises kept in a list ${fmtStall(dump.promises)} (${fmtMs(dump.promises.ms / cfg.dumpRounds)} ms a dump; longest GC pause ${fmtMs(dump.promises.gcMs ?? 0)} ms), rt.promises handed over one by one (each) ${fmtStall(dump.each)} (${fmtMs(dump.each.ms / cfg.dumpRounds)} ms a dump; longest GC pause ${fmtMs(dump.each.gcMs ?? 0)} ms), sync ${fmtStall(dump.sync)} (${fmtMs(dump.sync.ms / cfg.dumpRounds)} ms a dump)`,
      `  ${cfg.concN} disconnects through Networks: one after another ${fmtMs(conc.sequential)} ms, all at once ${fmtMs(conc.concurrent)} ms (${ratio.toFixed(2)}x; longest stall ${fmtMs(conc.concurrentStallMs)} ms${conc.concurrentOwnMs !== undefined ? `, own ${fmtMs(conc.concurrentOwnMs)} ms` : ''})`,
      `  ${cfg.concN} veth deletes through rt.promises: one after another ${fmtMs(raw.sequential)} ms, all at once on one socket ${fmtMs(raw.oneSocket)} ms, on a socket each ${fmtMs(raw.ownSockets)} ms, one device group ${fmtMs(raw.group)} ms`,
    ];
    const q = quick ? `${cfg.concN}, not 100 (--quick)` : undefined;
    const verdicts = [
      verdict(`longest event-loop stall during ${n} disconnects through Networks`, disc.promises.stallMs, 2, 'max', 'ms', `own ${fmtOwn(disc.promises)}, cpu ${fmtMs(disc.promises.cpuMs ?? NaN)} ms, p99 ${fmtMs(disc.promises.p99Ms ?? NaN)} ms; same kernel calls made synchronously: ${fmtMs(disc.sync.stallMs)} ms; an idle wait as long: ${fmtStall(disc.idle)}`),
      verdict(`longest event-loop stall during a dump of ${dump.routes} routes through rt.promises, kept in a list`, dump.promises.stallMs, 2, 'max', 'ms', `own ${fmtOwn(dump.promises)}, cpu ${fmtMs(dump.promises.cpuMs ?? NaN)} ms, p99 ${fmtMs(dump.promises.p99Ms ?? NaN)} ms; sync: ${fmtMs(dump.sync.stallMs)} ms; longest GC pause during it ${fmtMs(dump.promises.gcMs ?? 0)} ms`),
      verdict(`longest event-loop stall during a dump of ${dump.routes} routes through rt.promises, handed over one by one (each)`, dump.each.stallMs, 2, 'max', 'ms', `own ${fmtOwn(dump.each)}, cpu ${fmtMs(dump.each.cpuMs ?? NaN)} ms, p99 ${fmtMs(dump.each.p99Ms ?? NaN)} ms; an idle wait: ${fmtStall(disc.idle)}`),
      verdict(`${cfg.concN} disconnects through Networks in flight at once / one after another, speed-up`, ratio, 5, 'min', 'x', q),
    ];
    return { lines, verdicts, json: { disconnectStalls: disc, routeDump: dump, concurrency: { ...conc, n: cfg.concN }, rawDeletes: { ...raw, n: cfg.concN } } };
  } finally {
    await bed.close();
    for (const h of handles) h.close();
    for (const n of names) deleteNamedNetns(n);
  }
}
