/**
 * Netlink library rows of the bench, each a ratio against a peer measured in the same run:
 * importing the package against a bare `node -e 0`; decoding a dump of 5,000 links against
 * receiving the same dump raw (and `ip -j link show` for scale); and a monitor draining a burst
 * of route events, with a buffer large enough for no loss and with the kernel's default one.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createNamedNetns, deleteNamedNetns, linkRequests, routeRequests, monitor, openRtnlIn, type NetnsHandle } from '../../src/index.js';
import { table, verdict, type Verdict } from './report.js';
import { decodePayload } from '../../src/netlink/core/message.js';
import { linkMessage } from '../../src/netlink/route/schemas.js';
import { fmtMs, round, summarize } from './stats.js';
import { batchBench } from './batch.js';
import { gc, stallOf, type Stall } from './stall.js';

/** What `import('tsnetlink')` loads: the package's main, the bundled entry (dist/bench/lib/ -> dist/bundle/). */
const INDEX = fileURLToPath(new URL('../../bundle/index.js', import.meta.url));

function median(xs: number[]): number {
  return summarize(xs).p50;
}


/** Times `f` from a collected heap, so no row pays for the garbage of the one before it. */
function time(f: () => void): number {
  gc();
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

/** Wall time of a child process, spawn to exit. */
function spawnMs(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return performance.now() - t0;
}

function importCost(n: number): { bare: number; imported: number; koffiLoaded: boolean } {
  const bare: number[] = [];
  const imp: number[] = [];
  // Exit 3 (which fails the row) if importing mapped koffi's native addon: the import must not load it.
  const script = `await import(${JSON.stringify(INDEX)}); if ((await import('node:fs')).readFileSync('/proc/self/maps', 'utf8').includes('koffi.node')) process.exit(3);`;
  for (let i = 0; i < n + 2; i++) {
    const b = spawnMs(process.execPath, ['-e', '0']);
    const m = spawnMs(process.execPath, ['--input-type=module', '-e', script]);
    if (i >= 2) {
      bare.push(b);
      imp.push(m);
    }
  }
  return { bare: median(bare), imported: median(imp), koffiLoaded: false };
}

async function linkDump(ns: NetnsHandle, name: string, pairs: number, n: number): Promise<{ links: number; raw: number; decoded: number; tree: number; ip: number }> {
  const rt = openRtnlIn(ns, { receiveBufferSize: 8 << 20 });
  try {
    for (let i = 0; i < pairs; i += 500) rt.batchOrThrow(Array.from({ length: Math.min(500, pairs - i) }, (_, j) => linkRequests.addVethRequest(`a${i + j}`, { name: `b${i + j}` })));
    const req = linkRequests.dumpRequest();
    const raw: number[] = [];
    const dec: number[] = [];
    const tree: number[] = [];
    const ipj: number[] = [];
    let links = 0;
    for (let i = 0; i < n + 2; i++) {
      const r = time(() => rt.socket.dump(req, () => undefined));
      const d = time(() => (links = rt.linkList().length));
      const t = time(() => rt.socket.dump(req, (m) => decodePayload(linkMessage, m.payload)));
      const p = spawnMs('ip', ['-n', name, '-j', 'link', 'show']);
      if (i >= 2) {
        raw.push(r);
        dec.push(d);
        tree.push(t);
        ipj.push(p);
      }
    }
    return { links, raw: median(raw), decoded: median(dec), tree: median(tree), ip: median(ipj) };
  } finally {
    rt.close();
  }
}

/** Sends `count` route adds in one go (the JS thread is busy, so events pile up in the monitor's socket), then times the monitor draining them. */
async function monitorBurst(ns: NetnsHandle, base: number, count: number, receiveBufferSize: number): Promise<{ received: number; resyncs: number; ms: number; perSecond: number }> {
  const rt = openRtnlIn(ns);
  const m = monitor({ groups: ['route'], netns: ns, receiveBufferSize });
  try {
    const reqs = Array.from({ length: count }, (_, i) => routeRequests.addRouteRequest({ dst: `${base + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`, oif: 'lo', table: 100 }));
    const resolved = rt.resolve(reqs);
    for (let i = 0; i < resolved.length; i += 4096) rt.batchOrThrow(resolved.slice(i, i + 4096));
    let received = 0;
    let resyncs = 0;
    let first = 0;
    let last = 0;
    const done = new Promise<void>((resolve) => {
      const quiet = () => setTimeout(() => (performance.now() - last > 200 ? resolve() : quiet()), 50);
      m.on('event', (e) => {
        if (!first) first = performance.now();
        last = performance.now();
        if (e.type === 'resync') resyncs++;
        else if (e.type === 'new') received++;
        if (received >= count) resolve();
      });
      last = performance.now();
      quiet();
    });
    await done;
    const ms = last - first;
    return { received, resyncs, ms, perSecond: ms > 0 ? received / (ms / 1000) : NaN };
  } finally {
    await m.close();
    rt.close();
  }
}

/**
 * `count` veths deleted one after another through the sync API and through rt.promises, then
 * all at once through rt.promises: the longest event-loop stall of each (a veth delete waits for
 * an RCU grace period inside sendmsg) and the total time.
 */
async function deleteStalls(ns: NetnsHandle, count: number): Promise<Record<'sync' | 'promises' | 'concurrent', Stall>> {
  const rt = openRtnlIn(ns);
  const make = (): string[] => {
    const names = Array.from({ length: count }, (_, i) => `st${i}`);
    rt.batchOrThrow(names.map((n, i) => linkRequests.addVethRequest(n, { name: `su${i}` }, { up: true })));
    return names;
  };
  try {
    const a = make();
    const sync = await stallOf(() => {
      for (const n of a) rt.linkDel(n);
    });
    const b = make();
    const promises = await stallOf(async () => {
      for (const n of b) await rt.promises.linkDel(n);
    });
    const c = make();
    const concurrent = await stallOf(async () => {
      await Promise.all(c.map((n) => rt.promises.linkDel(n)));
    });
    return { sync, promises, concurrent };
  } finally {
    rt.close();
  }
}

/** Runs the netlink rows; returns printable lines, verdicts and the figures for latest.json. */
export async function netlinkBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: Record<string, unknown> }> {
  const cfg = quick ? { importN: 8, pairs: 500, dumpN: 8, events: 20_000 } : { importN: 30, pairs: 2500, dumpN: 20, events: 100_000 };
  const imp = importCost(cfg.importN);
  const names = ['nlbench-links', 'nlbench-events', 'nlbench-stall'];
  const handles = names.map((n) => createNamedNetns(n));
  try {
    const dump = await linkDump(handles[0]!, names[0]!, cfg.pairs, cfg.dumpN);
    const host = openRtnlIn(handles[1]!);
    host.linkSetUp('lo');
    host.close();
    const big = await monitorBurst(handles[1]!, 10, cfg.events, 512 << 20);
    const small = await monitorBurst(handles[1]!, 60, cfg.events, 212_992);
    const stalls = await deleteStalls(handles[2]!, 50);
    const batch = await batchBench(quick);
    const importMs = imp.imported - imp.bare;
    const q = quick ? ' (--quick: fewer than the target names)' : '';
    const lines = [
      `Netlink library${quick ? ' --quick' : ''}`,
      table(
        ['what', 'ms', 'vs'],
        [
          ['node -e 0', fmtMs(imp.bare), ''],
          ["node -e \"await import('tsnetlink')\"", fmtMs(imp.imported), `+${fmtMs(importMs)} ms (koffi not loaded)`],
          [`dump of ${dump.links} links, received raw`, fmtMs(dump.raw), '1.00x'],
          [`dump of ${dump.links} links, decoded to Link objects (linkList)`, fmtMs(dump.decoded), `${(dump.decoded / dump.raw).toFixed(2)}x raw`],
          [`dump of ${dump.links} links, every attribute decoded (Link.raw)`, fmtMs(dump.tree), `${(dump.tree / dump.raw).toFixed(2)}x raw`],
          [`ip -j link show (${dump.links} links, process included)`, fmtMs(dump.ip), `${(dump.ip / dump.decoded).toFixed(2)}x decoded`],
        ],
      ),
      `  monitor, burst of ${cfg.events} route events queued in the socket, then drained: ${big.received} received, ${big.resyncs} resyncs, ${fmtMs(big.ms)} ms = ${Math.round(big.perSecond)} events/s (SO_RCVBUF 512 MiB)`,
      `  longest event-loop stall during 50 veth deletes: sync ${fmtMs(stalls.sync.stallMs)} ms (${fmtMs(stalls.sync.ms)} ms in all), rt.promises one at a time ${fmtMs(stalls.promises.stallMs)} ms${stalls.promises.ownMs !== undefined ? ` (own ${fmtMs(stalls.promises.ownMs)} ms)` : ''}${stalls.promises.cpuMs !== undefined ? ` [cpu ${fmtMs(stalls.promises.cpuMs)} ms]` : ''} (${fmtMs(stalls.promises.ms)} ms), rt.promises all at once ${fmtMs(stalls.concurrent.stallMs)} ms (${fmtMs(stalls.concurrent.ms)} ms)`,
      `  same burst with the kernel's default 208 KiB buffer: ${small.received} received (${cfg.events - small.received} lost), ${small.resyncs} resync event${small.resyncs === 1 ? '' : 's'}, drained at ${Math.round(small.perSecond)} events/s`,
      ...batch.lines,
    ];
    const verdicts = [
      verdict("import('tsnetlink') cost above node -e 0", importMs, 15, 'max', 'ms'),
      verdict(`dump of ${dump.links} links: Link objects (every Link field; attribute tree on first access) / raw receive`, dump.decoded / dump.raw, 1.5, 'max', 'x', quick ? `${dump.links} links, not 5000${q}` : undefined),
      verdict(`dump of ${dump.links} links: every attribute decoded / raw receive`, dump.tree / dump.raw, 1.5, 'max', 'x', quick ? `${dump.links} links, not 5000${q}` : undefined),
      verdict('longest event-loop stall during 50 veth deletes through rt.promises', stalls.promises.stallMs, 2, 'max', 'ms', `cpu ${fmtMs(stalls.promises.cpuMs ?? NaN)} ms; sync: ${fmtMs(stalls.sync.stallMs)} ms`),
      verdict('monitor throughput with no loss / 50,000 events/s', big.received === cfg.events && big.resyncs === 0 ? big.perSecond / 50_000 : null, 1, 'min', 'x', `${Math.round(big.perSecond)} events/s, ${big.received}/${cfg.events} received`),
      ...batch.verdicts,
    ];
    return { lines, verdicts, json: { import: { ...imp, deltaMs: round(importMs) }, dump, monitor: { noLoss: big, defaultBuffer: small, events: cfg.events }, deleteStalls: stalls, batch: batch.json } };
  } finally {
    for (const h of handles) h.close();
    for (const n of names) deleteNamedNetns(n);
  }
}
