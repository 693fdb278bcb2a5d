/**
 * The CRI rows: containerd's CRI plugin driven as the kubelet drives it (test/e2e/cri-lib.ts: a
 * containerd 1.6 of the bench's own, a pause image built from busybox-static, a CRI client over
 * gRPC), one pod with one hostPort per sample: RunPodSandbox with the port mapping, then
 * StopPodSandbox and RemovePodSandbox, each call timed. Three runtime handlers of one containerd,
 * each with a CNI configuration directory of its own, take turns sample by sample in a rotating
 * order:
 *
 * - the stock chain as containerd's own Kubernetes conflist has it (bridge + host-local, then
 *   portmap with the portMappings capability);
 * - tsnetlink through a resident engine serving the plugin's state directory (the shim as
 *   installed, its default client);
 * - tsnetlink without an engine (TSNETLINK_ENGINE=off, set by a one-line sh wrapper).
 *
 * Every pod's networking is checked untimed before it is stopped (its address and its hostPort on
 * the node's uplink address answer from the node), so a row cannot time a failure. Each network keeps a
 * keeper pod, so a sample measures a pod, not the network's creation (the stock bridge stays too).
 * Rounds of their own then run with every top-level plugin behind a wrapper that logs how long
 * each call took, to split RunPodSandbox between the plugin calls and containerd's own work.
 * containerd, its shims and pause processes, the engine and the netns are ended on every path.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { createNamedNetns, deleteNamedNetns, openNetns, withNetns, type NetnsHandle } from '../../src/index.js';
import { probeTcp } from '../../test/helpers.js';
import { PLUGIN, STOCK } from '../../test/e2e/cni-lib.js';
import { haveRuntime, hideUnifiedCgroup } from '../../test/e2e/cni-runtimes.js';
import { Cri } from '../../test/e2e/cri-lib.js';
import { startEngineProcess, stopEngineProcess } from './engine.js';
import { fmtRatio, table, verdict, type Verdict } from './report.js';
import { fmtMs, round, summarize } from './stats.js';

const STATE = '/run/tsnetlink-cri-bench';
/**
 * The node's address on its uplink (a veth whose other end is in an outside netns), where the
 * checks reach each hostPort from the node itself: through the OUTPUT chain, which both chains
 * map, and never through FORWARD, whose policy earlier sections of a full run may have set to
 * DROP (the stock conflist has no firewall plugin to open it).
 */
const NODE = '192.0.2.1';
const OUTSIDE = '192.0.2.2';
const OUTSIDE_NS = 'cribout';
const UPLINK = 'tsncriup0';
/** The pod's own port behind each hostPort. */
const POD_PORT = 80;

/** One row: a runtime handler, its conflist, and the top-level plugins its ADD runs. */
interface Row {
  key: string;
  label: string;
  conflist: unknown;
  /** The conflist's plugin types, in order (host-local runs under bridge and is not top-level). */
  plugins: string[];
}

/** A tsnetlink conflist as cri.e2e writes one, on a bridge and range of its own. */
function tsnConflist(type: string, name: string, bridge: string, subnet: string): unknown {
  return {
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type,
        bridge,
        isGateway: true,
        ipMasq: true,
        // The stock rows on the same node need FORWARD to pass their hostPort traffic; a node's
        // own firewall decides that, so the plugin leaves the policy alone.
        forwardPolicy: 'keep',
        ipam: { type: 'tsnetlink', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
        capabilities: { portMappings: true },
      },
    ],
  };
}

const ROWS: Row[] = [
  {
    key: 'stock',
    label: 'stock chain (bridge + host-local, portmap)',
    plugins: ['bridge', 'portmap'],
    // containerd's own conflist for Kubernetes nodes (script/setup/install-cni), IPv4 only.
    conflist: {
      cniVersion: '1.0.0',
      name: 'cribstock',
      plugins: [
        { type: 'bridge', bridge: 'cribstock0', isGateway: true, ipMasq: true, promiscMode: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.93.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
  },
  { key: 'engine', label: 'tsnetlink via engine (shim, default client)', plugins: ['tsnetlink'], conflist: tsnConflist('tsnetlink', 'cribeng', 'cribeng0', '10.94.0.0/24') },
  { key: 'noengine', label: 'tsnetlink without engine', plugins: ['tsnetlink-noengine'], conflist: tsnConflist('tsnetlink-noengine', 'cribnoe', 'cribnoe0', '10.92.0.0/24') },
];

/** The plugin binaries the bin directory holds: name -> what runs. */
const REAL: Record<string, string> = {
  bridge: join(STOCK, 'bridge'),
  'host-local': join(STOCK, 'host-local'),
  portmap: join(STOCK, 'portmap'),
  loopback: join(STOCK, 'loopback'),
  tsnetlink: PLUGIN,
};
/** The plugins whose calls the wrapped rounds time: every top-level plugin of every row, and loopback. */
const TIMED = ['bridge', 'portmap', 'loopback', 'tsnetlink', 'tsnetlink-noengine'];

/** How long at least one of the intervals was running, ms. */
function unionMs(intervals: readonly { from: number; to: number }[]): number {
  let total = 0;
  let end = -Infinity;
  for (const { from, to } of [...intervals].sort((a, b) => a.from - b.from)) {
    if (to <= end) continue;
    total += to - Math.max(from, end);
    end = to;
  }
  return total;
}

/** Every number of `o` rounded for the JSON record. */
function roundAll(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v)]));
}

/** One sample of a row: ms per CRI call. */
interface Sample {
  /** The pod's sandbox id (CNI_CONTAINERID). */
  id: string;
  run: number;
  stop: number;
  remove: number;
}

/**
 * Fills the CRI's plugin directory: the stock plugins and the shim as symlinks (as installed), or,
 * `wrapped`, the top-level ones behind a sh wrapper that appends "COMMAND PLUGIN CONTAINERID
 * START END" (microseconds of the realtime clock) to `log`. tsnetlink-noengine is always a wrapper that sets TSNETLINK_ENGINE=off.
 */
function fillBinDir(binDir: string, log: string, wrapped: boolean): void {
  const noEngine = join(binDir, 'tsnetlink-noengine.real');
  writeFileSync(noEngine, `#!/bin/sh\nTSNETLINK_ENGINE=off\nexport TSNETLINK_ENGINE\nexec ${PLUGIN}\n`, { mode: 0o755 });
  const real = { ...REAL, 'tsnetlink-noengine': noEngine };
  for (const [name, target] of Object.entries(real)) {
    const path = join(binDir, name);
    rmSync(path, { force: true });
    if (wrapped && TIMED.includes(name)) {
      writeFileSync(path, `#!/bin/sh\ns=$(date +%s%N)\n${target}\nrc=$?\ne=$(date +%s%N)\necho "$CNI_COMMAND ${name} $CNI_CONTAINERID $(( s / 1000 )) $(( e / 1000 ))" >> ${log}\nexit $rc\n`, { mode: 0o755 });
    } else {
      symlinkSync(target, path);
    }
  }
}

/** A pod sandbox config as the kubelet sends it, with one TCP hostPort. */
function podConfig(name: string, hostPort: number): unknown {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'bench', attempt: 0 },
    hostname: name,
    port_mappings: hostPort > 0 ? [{ protocol: 'TCP', container_port: POD_PORT, host_port: hostPort }] : [],
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } } },
  };
}

/**
 * Untimed: the pod's address and its hostPort on the node's uplink address answer from the node (a
 * server of this process listening inside the pod's netns answers with the pod's name).
 */
async function checkPod(c: Cri, id: string, name: string, hostPort: number): Promise<string> {
  const st = await c.status(id);
  if (!st.ip || !st.netns) throw new Error(`${name}: no address or netns in PodSandboxStatus (ip "${st.ip}", netns "${st.netns}")`);
  const ns = openNetns({ path: st.netns });
  let server: net.Server | undefined;
  try {
    server = withNetns(ns, () => net.createServer((s) => s.end(name)).listen(POD_PORT));
    await new Promise((r) => server!.once('listening', r));
    const direct = await probeTcp(undefined, st.ip, POD_PORT, 3000);
    if (direct !== name) throw new Error(`${name}: its address ${st.ip}:${POD_PORT} from the node answered "${direct}"`);
    const viaHostPort = await probeTcp(undefined, NODE, hostPort, 3000);
    if (viaHostPort !== name) throw new Error(`${name}: hostPort ${NODE}:${hostPort} from the node answered "${viaHostPort}"`);
    return st.ip;
  } finally {
    server?.close();
    ns.close();
  }
}

/** One pod of a row: RunPodSandbox (timed), the networking check (untimed), StopPodSandbox and RemovePodSandbox (timed). */
async function onePod(c: Cri, row: Row, name: string, hostPort: number): Promise<Sample> {
  const t0 = performance.now();
  const { pod_sandbox_id: id } = await c.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(name, hostPort), runtime_handler: row.key });
  const run = performance.now() - t0;
  try {
    await checkPod(c, id, name, hostPort);
  } catch (e) {
    await c.stopPod(id).catch(() => undefined);
    await c.removePod(id).catch(() => undefined);
    throw e;
  }
  const t1 = performance.now();
  await c.stopPod(id);
  const t2 = performance.now();
  await c.removePod(id);
  return { id, run, stop: t2 - t1, remove: performance.now() - t2 };
}

/** Runs `rounds` samples of every row (plus a dropped warm-up round), rotating the order each round. */
async function rounds(c: Cri, n: number, tag: string, firstPort: number): Promise<Record<string, Sample[]>> {
  const out: Record<string, Sample[]> = Object.fromEntries(ROWS.map((r) => [r.key, []]));
  let port = firstPort;
  for (let i = -1; i < n; i++) {
    const order = ROWS.map((_, j) => ROWS[(j + i + ROWS.length) % ROWS.length]!);
    for (const row of order) {
      const s = await onePod(c, row, `${row.key}-${tag}${i + 1}`, port++);
      if (i >= 0) out[row.key]!.push(s);
    }
  }
  return out;
}

/** The CRI rows and their target; a named reason instead when containerd or the stock plugins are missing, and the error (`failed`) when the rows could not be measured. */
export async function criBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: unknown; failed?: string }> {
  const target = 'CRI RunPodSandbox (one hostPort) via engine / stock chain';
  const missingBins = haveRuntime(['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'busybox', 'tar']);
  const missingPlugins = ['bridge', 'host-local', 'portmap', 'loopback'].filter((p) => !existsSync(join(STOCK, p)));
  if (missingBins.length > 0 || missingPlugins.length > 0) {
    const why = `not run: ${[...missingBins, ...missingPlugins.map((p) => `${STOCK}/${p}`)].join(', ')} missing`;
    return { lines: [`CRI (containerd): ${why}`], verdicts: [verdict(target, null, 0.8, 'max', 'x', why)], json: { skipped: why } };
  }
  const n = quick ? 3 : 20;
  const profileN = quick ? 2 : 10;
  const load0 = os.loadavg()[0]!;
  const containerdVersion = spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[2] ?? 'unknown';
  hideUnifiedCgroup();
  mkdirSync(STATE, { recursive: true, mode: 0o700 });
  let engine: Awaited<ReturnType<typeof startEngineProcess>> | undefined;
  let cri: Cri | undefined;
  let outside: NetnsHandle | undefined;
  const keepers: string[] = [];
  try {
    engine = await startEngineProcess(STATE);
    // The uplink: the node's address on a veth whose other end is in an outside netns.
    outside = createNamedNetns(OUTSIDE_NS);
    const ip = (...a: string[]): void => {
      const r = spawnSync('ip', a, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr}`);
    };
    ip('link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUTSIDE_NS);
    ip('addr', 'add', `${NODE}/24`, 'dev', UPLINK);
    ip('link', 'set', UPLINK, 'up');
    ip('-n', OUTSIDE_NS, 'addr', 'add', `${OUTSIDE}/24`, 'dev', 'eth0');
    ip('-n', OUTSIDE_NS, 'link', 'set', 'eth0', 'up');
    ip('-n', OUTSIDE_NS, 'link', 'set', 'lo', 'up');
    cri = await Cri.start({ handlers: ROWS.map((r) => ({ name: r.key, conflist: r.conflist })), firewall: process.env['TSNETLINK_FIREWALL'], env: { TSNETLINK_STATE_DIR: STATE } });
    const log = join(cri.dir, 'plugin-times.log');
    fillBinDir(cri.binDir, log, false);
    // A keeper pod per network (untimed), so no sample creates or removes a network.
    for (const row of ROWS) {
      const { pod_sandbox_id: id } = await cri.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(`${row.key}-keeper`, 0), runtime_handler: row.key });
      keepers.push(id);
    }
    const main = await rounds(cri, n, 's', 30000);
    // Rounds of their own with every top-level plugin timed by a wrapper.
    fillBinDir(cri.binDir, log, true);
    const profiled = await rounds(cri, profileN, 'p', 31000);
    fillBinDir(cri.binDir, log, false);
    const calls = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')) : [];
    const load1 = os.loadavg()[0]!;
    // What the engine's drift watcher did meanwhile (the stock chain's iptables commits are another process's changes).
    let engineDrift = 'unknown';
    const st = spawnSync('curl', ['-s', '--max-time', '5', '--unix-socket', join(STATE, 'engine.sock'), 'http://tsnetlink/v1/status'], { encoding: 'utf8' });
    try {
      const d = (JSON.parse(st.stdout) as { drift?: { triggers: number; checks: number; repairs: number } }).drift;
      if (d) engineDrift = `${d.triggers} events, ${d.checks} checks, ${d.repairs} repairs`;
    } catch {
      // curl missing or no answer: unknown
    }

    const stat = (k: string, f: (s: Sample) => number) => summarize(main[k]!.map(f));
    const runOf = (s: Sample) => s.run;
    const teardownOf = (s: Sample) => s.stop + s.remove;
    const p50 = (k: string, f: (s: Sample) => number) => stat(k, f).p50;
    // The wrapped rounds, pod by pod: the time inside plugin calls (the union of their intervals,
    // as go-cni may run the loopback network beside the pod's), the network's own plugins and
    // loopback apart, and the rest of the CRI call, which is containerd's.
    const callsOf = (cmd: string, id: string, plugins?: readonly string[]): { from: number; to: number }[] =>
      calls.filter((x) => x[0] === cmd && x[2] === id && (plugins === undefined || plugins.includes(x[1]!))).map((x) => ({ from: Number(x[3]) / 1000, to: Number(x[4]) / 1000 }));
    const profile = ROWS.map((r) => {
      const split = (cmd: string, total: (s: Sample) => number) => {
        const per = profiled[r.key]!.map((s) => {
          const inPlugins = unionMs(callsOf(cmd, s.id));
          return { total: total(s), inPlugins, own: unionMs(callsOf(cmd, s.id, r.plugins)), loopback: unionMs(callsOf(cmd, s.id, ['loopback'])), rest: total(s) - inPlugins, calls: callsOf(cmd, s.id, [r.plugins[0]!]).length };
        });
        const p = (f: (x: (typeof per)[number]) => number) => summarize(per.map(f)).p50;
        return { total: p((x) => x.total), inPlugins: p((x) => x.inPlugins), own: p((x) => x.own), loopback: p((x) => x.loopback), rest: p((x) => x.rest), calls: Math.max(0, ...per.map((x) => x.calls)) };
      };
      return { key: r.key, label: r.label, add: split('ADD', runOf), del: split('DEL', teardownOf) };
    });
    const lines = [
      `CRI (containerd ${containerdVersion}'s CRI plugin over gRPC, the kubelet's calls): one pod with one hostPort per sample, ${n} samples per row, rows interleaved (rotating order), a keeper pod on every network; each pod's address and hostPort checked (untimed) before it is stopped`,
      table(
        ['CRI call, ms', 'RunPodSandbox p50', 'p90', 'vs stock', 'Stop p50', 'Remove p50', 'Stop+Remove p50', 'p90', 'vs stock'],
        ROWS.map((r) => [
          r.label,
          fmtMs(p50(r.key, runOf)), fmtMs(stat(r.key, runOf).p90), fmtRatio(p50(r.key, runOf) / p50('stock', runOf)),
          fmtMs(p50(r.key, (s) => s.stop)), fmtMs(p50(r.key, (s) => s.remove)),
          fmtMs(p50(r.key, teardownOf)), fmtMs(stat(r.key, teardownOf).p90), fmtRatio(p50(r.key, teardownOf) / p50('stock', teardownOf)),
        ]),
      ),
      '',
      `Where the time goes, ms (rounds of their own, ${profileN} per row, every top-level plugin behind a sh wrapper that logs when each call starts and ends; p50 of each column, pod by pod)`,
      table(
        ['', 'RunPodSandbox', 'in plugins', 'network ADD', 'loopback ADD', 'containerd', 'Stop+Remove', 'in plugins', 'network DELs', 'loopback DELs', 'containerd'],
        profile.map((p) => [
          p.label,
          fmtMs(p.add.total), fmtMs(p.add.inPlugins), fmtMs(p.add.own), fmtMs(p.add.loopback), fmtMs(p.add.rest),
          fmtMs(p.del.total), fmtMs(p.del.inPlugins), `${fmtMs(p.del.own)} (${p.del.calls}x)`, fmtMs(p.del.loopback), fmtMs(p.del.rest),
        ]),
      ),
      `  (in plugins: the time any plugin call of the pod was running; containerd: the CRI call's time outside them; host-local runs inside bridge; the engine's drift watcher meanwhile: ${engineDrift})`,
      `  load average (1 min) ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`,
    ];
    const verdicts = [
      verdict(target, p50('engine', runOf) / p50('stock', runOf), 0.8, 'max', 'x'),
    ];
    const summ = (k: string, f: (s: Sample) => number) => {
      const x = stat(k, f);
      return { p50: round(x.p50), p90: round(x.p90), min: round(x.min), max: round(x.max) };
    };
    const json = {
      n, profileN, containerd: containerdVersion, load: [round(load0), round(load1)], engineDrift,
      rows: Object.fromEntries(ROWS.map((r) => [r.key, { label: r.label, run: summ(r.key, runOf), stop: summ(r.key, (s) => s.stop), remove: summ(r.key, (s) => s.remove), stopRemove: summ(r.key, teardownOf) }])),
      profile: Object.fromEntries(profile.map((p) => [p.key, { add: roundAll(p.add), del: roundAll(p.del) }])),
    };
    return { lines, verdicts, json };
  } catch (e) {
    // Reported in place, so that a failure here does not take the full run's other sections with it.
    const why = `FAILED: ${(e as Error).message}`;
    return { lines: [`CRI (containerd): ${why}`], verdicts: [verdict(target, null, 0.8, 'max', 'x', why.split('\n')[0])], json: { failed: (e as Error).message }, failed: (e as Error).message };
  } finally {
    for (const id of keepers) {
      await cri?.stopPod(id).catch(() => undefined);
      await cri?.removePod(id).catch(() => undefined);
    }
    // Stops and removes whatever pod is left, stops containerd, kills its shims and pauses by PID.
    await cri?.stop();
    if (engine) await stopEngineProcess(engine.proc);
    outside?.close();
    spawnSync('ip', ['link', 'del', UPLINK]);
    spawnSync('ip', ['link', 'del', 'cribstock0']);
    try {
      deleteNamedNetns(OUTSIDE_NS);
    } catch {
      // never made, or gone
    }
  }
}
