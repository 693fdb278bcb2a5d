/**
 * The batch row of the netlink bench: creating 1,000 links in one go through tsnetlink against
 * `ip -batch` sending the same RTM_NEWLINK requests. Each sample runs in a fresh netns, the ways
 * interleaved (their order rotating every round), so both pay the same kernel work and the same
 * leftovers of the previous namespace's cleanup; what differs is each side's own user-space work.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNamedNetns, deleteNamedNetns, linkRequests, openRtnlIn, type Request, type Rtnl } from '../../src/index.js';
import { run } from './exec.js';
import { verdict, type Verdict } from './report.js';
import { fmtMs, round, summarize } from './stats.js';
import { gc } from './stall.js';


/** One set of links to create: the requests tsnetlink builds and the `ip -batch` lines for the same messages. */
interface Workload {
  label: string;
  links: number;
  requests: () => Request[];
  ipLines: string[];
}

function workloads(count: number): Workload[] {
  const ids = Array.from({ length: count }, (_, i) => i);
  return [
    {
      label: `${count} veth pairs`,
      links: 2 * count,
      requests: () => ids.map((i) => linkRequests.addVethRequest(`va${i}`, { name: `vb${i}` })),
      ipLines: ids.map((i) => `link add va${i} type veth peer name vb${i}`),
    },
    {
      // Not bridges: the kernel takes ~16 s to tear down a netns with 1,000 of them.
      label: `${count} ifbs`,
      links: count,
      requests: () => ids.map((i) => linkRequests.addLinkRequest(`ifb${i}`, 'ifb')),
      ipLines: ids.map((i) => `link add ifb${i} type ifb`),
    },
  ];
}

type Way = 'batch' | 'promises' | 'ip';
const WAYS: readonly Way[] = ['batch', 'promises', 'ip'];

/** Figures of one workload: the p50 of each way (ms), and ip's own start (an empty batch) for its in-process share. */
export interface BatchFigures {
  label: string;
  links: number;
  samples: number;
  batch: number;
  promises: number;
  ip: number;
  ipStart: number;
  ipInProcess: number;
  /** p50 wait for the previous sample's namespace to be torn down (see settle). */
  settleMs: number;
}

/**
 * Times one way in a fresh netns. tsnetlink's time covers what its caller does: build the
 * requests, open the socket in the netns, send them all and read every ack. ip's is the process,
 * spawn to exit (what a user of `ip -batch` pays); `ip -batch` of an empty file gives its start.
 */
async function sample(way: Way, w: Workload, file: string, ns: string): Promise<{ ms: number; startMs?: number }> {
  const h = createNamedNetns(ns);
  try {
    if (way === 'ip') {
      const t0 = performance.now();
      run('ip', ['-n', ns, '-batch', file]);
      const ms = performance.now() - t0;
      const t1 = performance.now();
      run('ip', ['-n', ns, '-batch', '/dev/null']);
      return { ms, startMs: performance.now() - t1 };
    }
    gc();
    const t0 = performance.now();
    const rt = openRtnlIn(h);
    try {
      if (way === 'batch') rt.batchOrThrow(w.requests());
      else for (const r of await rt.promises.batch(w.requests())) if (r.error) throw r.error;
      return { ms: performance.now() - t0 };
    } finally {
      rt.close();
    }
  } finally {
    h.close();
    deleteNamedNetns(ns);
  }
}

/**
 * Waits until the kernel has torn down the namespaces of earlier samples: it does so on a
 * workqueue holding the RTNL lock, and a sample started meanwhile would wait for it inside its
 * requests. An MTU set on the probe's lo takes the same lock: three quick ones in a row (under
 * 1 ms each) mean the lock is free; after 10 s the sample runs anyway.
 */
async function settle(probe: Rtnl): Promise<number> {
  const t0 = performance.now();
  for (let quick = 0; quick < 3 && performance.now() - t0 < 10_000; ) {
    await new Promise((r) => setTimeout(r, 50));
    const t = performance.now();
    probe.batchOrThrow([linkRequests.setMtuRequest(1, 65535)]);
    quick = performance.now() - t < 1 ? quick + 1 : 0;
  }
  return performance.now() - t0;
}

/** Counts the links of a netns made by one way, so that a way that created nothing can never look fast. */
function checkCount(w: Workload, file: string): void {
  const ns = 'nlbench-batch-check';
  const h = createNamedNetns(ns);
  try {
    run('ip', ['-n', ns, '-batch', file]);
    const ipCount = JSON.parse(run('ip', ['-n', ns, '-j', 'link', 'show'])).length - 1;
    if (ipCount !== w.links) throw new Error(`ip -batch made ${ipCount} links, not ${w.links}`);
  } finally {
    h.close();
    deleteNamedNetns(ns);
  }
  const h2 = createNamedNetns(ns);
  try {
    const rt = openRtnlIn(h2);
    rt.batchOrThrow(w.requests());
    const n = rt.linkList().length - 1;
    rt.close();
    if (n !== w.links) throw new Error(`rt.batchOrThrow made ${n} links, not ${w.links}`);
  } finally {
    h2.close();
    deleteNamedNetns(ns);
  }
}

async function measure(w: Workload, samples: number, probe: Rtnl): Promise<BatchFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'nlbench-batch-'));
  const file = join(dir, 'links.batch');
  writeFileSync(file, `${w.ipLines.join('\n')}\n`);
  try {
    checkCount(w, file);
    const ms: Record<Way, number[]> = { batch: [], promises: [], ip: [] };
    const starts: number[] = [];
    const inProcess: number[] = [];
    const settles: number[] = [];
    // One warm-up round, then `samples` rounds, each in a different order.
    for (let r = -1; r < samples; r++) {
      for (let k = 0; k < WAYS.length; k++) {
        const way = WAYS[(k + Math.max(r, 0)) % WAYS.length]!;
        settles.push(await settle(probe));
        const s = await sample(way, w, file, 'nlbench-batch');
        if (r < 0) continue;
        ms[way].push(s.ms);
        if (s.startMs !== undefined) {
          starts.push(s.startMs);
          inProcess.push(s.ms - s.startMs);
        }
      }
    }
    const p50 = (xs: number[]) => summarize(xs).p50;
    return { label: w.label, links: w.links, samples, batch: p50(ms.batch), promises: p50(ms.promises), ip: p50(ms.ip), ipStart: p50(starts), ipInProcess: p50(inProcess), settleMs: p50(settles) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The batch rows: printable lines, verdicts (p50 tsnetlink / p50 ip -batch, at most 1.2x) and figures. */
export async function batchBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: BatchFigures[] }> {
  const samples = quick ? 3 : 11;
  const figures: BatchFigures[] = [];
  const probeNs = 'nlbench-batch-probe';
  const ph = createNamedNetns(probeNs);
  const probe = openRtnlIn(ph);
  try {
    for (const w of workloads(1000)) figures.push(await measure(w, samples, probe));
  } finally {
    probe.close();
    ph.close();
    deleteNamedNetns(probeNs);
  }
  const lines = figures.flatMap((f) => [
    `  ${f.label} (${f.links} links) created in a fresh netns, p50 of ${f.samples}: ip -batch ${fmtMs(f.ip)} ms (its start, an empty batch: ${fmtMs(f.ipStart)} ms; in-process ${fmtMs(f.ipInProcess)} ms; each sample after the last one's netns teardown, p50 wait ${fmtMs(f.settleMs)} ms)`,
    `    rt.batchOrThrow ${fmtMs(f.batch)} ms = ${(f.batch / f.ip).toFixed(2)}x ip -batch (${(f.batch / f.ipInProcess).toFixed(2)}x its in-process part); rt.promises.batch ${fmtMs(f.promises)} ms = ${(f.promises / f.ip).toFixed(2)}x`,
  ]);
  const q = quick ? `${samples} samples (--quick)` : undefined;
  const verdicts = figures.flatMap((f) => [
    verdict(`${f.label}: rt.batchOrThrow / ip -batch (process included), p50`, f.batch / f.ip, 1.2, 'max', 'x', q),
    verdict(`${f.label}: rt.promises.batch / ip -batch (process included), p50`, f.promises / f.ip, 1.2, 'max', 'x', q),
  ]);
  return { lines, verdicts, json: figures.map((f) => ({ ...f, batch: round(f.batch), promises: round(f.promises), ip: round(f.ip), ipStart: round(f.ipStart), ipInProcess: round(f.ipInProcess), settleMs: round(f.settleMs) })) };
}
