/**
 * tsnetlink benchmark (issue 4): connect latency against iproute2 and the CNI bridge plugin,
 * the kernel floor, scale with endpoints and mappings on the bridge, bulk (connectMany) and disconnect.
 *
 *   npm run bench              full run (a few minutes)
 *   npm run bench -- --quick   CI smoke run (small counts, well under a minute)
 *
 * It must run inside scripts/sandbox.mjs (a throwaway net + mount namespace): it creates a
 * bridge, thousands of netns, iptables rules and sysctls. Every figure also goes to
 * bench/results/latest.json, and connect p50 against endpoints to an SVG chart.
 */
import { mkdirSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Networks } from '../src/index.js';
import { bulkConnect, bulkDisconnect } from './lib/bulk.js';
import { machineFacts } from './lib/facts.js';
import { methods, type Env, type Method } from './lib/methods.js';
import { table, verdict, verdictLine, type Verdict } from './lib/report.js';
import { addBackground, dropBackground, measureDisconnect, measureFloor, sampleInterleaved, type FloorResult, type MethodResult } from './lib/runner.js';
import { fmtMs, Progress, round, summarize, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';
import { netlinkBench } from './lib/netlink.js';
import { nftBench } from './lib/nft.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
if (args.includes('--help') || args.includes('-h')) {
  console.log('usage: npm run bench [-- --quick]   (runs dist/bench/bench.js inside scripts/sandbox.mjs, as root)');
  process.exit(0);
}
if (process.env.TSNETLINK_IN_SANDBOX === '1' && args.includes('--netlink')) {
  // Only the netlink rows (issue 8): npm run bench -- --netlink [--quick]
  const r = await netlinkBench(QUICK);
  console.log([...r.lines, '', 'Targets (issue 8):', ...r.verdicts.map(verdictLine)].join('\n'));
  process.exit(0);
}
if (process.env.TSNETLINK_IN_SANDBOX === '1' && args.includes('--nft')) {
  // Only the firewall-backend rows (issue 11): npm run bench -- --nft [--quick]
  const r = await nftBench(QUICK);
  console.log([...r.lines, '', 'Targets (issue 11):', ...r.verdicts.map(verdictLine)].join('\n'));
  process.exit(0);
}
if (process.env.TSNETLINK_IN_SANDBOX !== '1') {
  console.error('bench: refusing to run outside the sandbox (it creates bridges, netns and iptables rules).\n  use: npm run bench [-- --quick]   or: node scripts/sandbox.mjs node dist/bench/bench.js [--quick]');
  process.exit(2);
}

const CFG = QUICK
  ? { n: 20, batch: 10, warm: 2, floorN: 20, discN: 10, bulkN: 20, levels: [0, 50], scaleN: 10, mapLevels: [1, 50], mapN: 10 }
  : { n: 200, batch: 25, warm: 5, floorN: 200, discN: 50, bulkN: 100, levels: [0, 100, 500, 1000], scaleN: 50, mapLevels: [1, 100, 1000], mapN: 50 };
const NETWORK = 'tsnbench0';
const STATE_DIR = '/run/tsnetlink/bench';
/** A Linux bridge has at most 1023 ports (BR_MAX_PORTS 1024); beyond that RTM_NEWLINK fails with EXFULL. */
const BRIDGE_PORTS = 1023;
const RESULTS = new URL('../../bench/results/', import.meta.url); // dist/bench/bench.js -> bench/results/

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type Row = { summary: Summary | null; error?: string; skipped?: string };

function rowOf(m: Method, r: MethodResult | undefined): Row {
  if (m.skip !== undefined) return { summary: null, skipped: m.skip };
  const s = r && r.samples.length > 0 ? roundSummary(summarize(r.samples)) : null;
  return { summary: s, ...(r?.error !== undefined ? { error: r.error } : {}) };
}

function roundSummary(s: Summary): Summary {
  return { n: s.n, p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), mean: round(s.mean), min: round(s.min), max: round(s.max) };
}

function rss(): number {
  gc();
  gc();
  return process.memoryUsage().rss;
}

/** Open fds of this process as "fd -> target". */
function openFds(): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.add(`${fd} -> ${readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      /* the fd of the directory listing itself */
    }
  }
  return out;
}

function commandLine(): string {
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `node ${process.argv.slice(1).join(' ')}`;
}

async function main(): Promise<void> {
  const progress = new Progress();
  const t0 = Date.now();
  const fds0 = openFds();
  const facts = machineFacts(commandLine());
  const nets = new Networks({ stateDir: STATE_DIR });
  const net = await nets.create({ name: NETWORK, subnet: '10.88.0.1/16' });
  const env: Env = { nets, network: net.name, bridge: net.bridge, subnet: net.subnet, gateway: net.gateway, prefix: net.prefix, cniDataDir: '/run/tsnetlink/bench-cni', background: 0 };
  const all = methods(env);
  const pick = (keys: readonly string[]) => all.filter((m) => keys.includes(m.key));

  // Warm-up: JIT, page cache of the binaries, the first iptables-restore that creates chains.
  await sampleInterleaved(env, all, CFG.warm, CFG.warm, progress, 'warm-up');
  await sampleInterleaved(env, pick(['tsn', 'tsnport']), CFG.warm * 6, CFG.warm * 3, progress, 'warm-up');

  // 1. Connect latency, every method interleaved, bridge empty.
  const main = await sampleInterleaved(env, all, CFG.n, CFG.batch, progress, 'connect latency');
  const rows = new Map(all.map((m) => [m.key, rowOf(m, main.get(m.key))]));
  const p50 = (k: string) => rows.get(k)?.summary?.p50 ?? NaN;

  // 2. The floor: time inside the kernel calls against the total.
  const floor = await measureFloor(env, CFG.floorN, progress);
  const floorPort = await measureFloor(env, CFG.discN, progress, true);

  // 5. Disconnect, single (netns alive: the veth is deleted by us; netns gone: only state).
  const discLive = roundSummary(summarize(await measureDisconnect(env, CFG.discN, 'live', progress, 'disconnect')));
  const discGone = roundSummary(summarize(await measureDisconnect(env, CFG.discN, 'gone', progress, 'disconnect')));

  // 4. Bulk: N single connects against one connectMany (and the same for disconnect).
  const bulk: Record<string, number> = {};
  const bulkNotes: string[] = [];
  for (const [key, mapping, mode] of [['seqPort', true, 'sequential'], ['manyPort', true, 'many'], ['seq', false, 'sequential'], ['many', false, 'many']] as const) {
    progress.update('bulk connect', `${CFG.bulkN} containers ${mode}${mapping ? ' with one mapping' : ''}`);
    const r = await bulkConnect(env, CFG.bulkN, mapping, mode);
    bulk[key] = round(r.ms);
    if (r.errors.length) bulkNotes.push(`${mapping ? 'with mappings' : 'without mappings'}: ${r.errors.join('; ')}; measured as connectMany in chunks of ${r.chunk}`);
  }
  for (const mode of ['sequential', 'many', 'group', 'netns-first'] as const) {
    progress.update('bulk disconnect', `${CFG.bulkN} containers ${mode}`);
    try {
      bulk[`disc-${mode}`] = round(await bulkDisconnect(env, CFG.bulkN, mode));
    } catch (e) {
      bulk[`disc-${mode}`] = NaN;
      bulkNotes.push(`disconnect ${mode}: ${(e as Error).message.split('\n')[0]}`);
      env.nets.close();
    }
  }

  // 3a. Scale with endpoints on the bridge (background endpoints without mappings).
  const scaleKeys = ['tsn', 'ip', 'ipbatch', 'cni'];
  const scale: { endpoints: number; connect: Record<string, Row>; disconnect: Summary; floor: FloorResult }[] = [
    { endpoints: 0, connect: Object.fromEntries(scaleKeys.map((k) => [k, rows.get(k)!])), disconnect: discLive, floor },
  ];
  const rss0 = rss();
  const heap0 = process.memoryUsage().heapUsed;
  let bg: Awaited<ReturnType<typeof addBackground>> = [];
  for (const level of CFG.levels.filter((l) => l > 0)) {
    const phase = `scale: ${level} endpoints`;
    bg = bg.concat(await addBackground(env, level - env.background, false, progress, phase));
    const batch = Math.min(CFG.batch, BRIDGE_PORTS - level);
    const r = await sampleInterleaved(env, pick(scaleKeys), CFG.scaleN, batch, progress, phase);
    const disconnect = roundSummary(summarize(await measureDisconnect(env, CFG.scaleN, 'live', progress, phase, batch)));
    const f = await measureFloor(env, batch, progress);
    scale.push({ endpoints: level, connect: Object.fromEntries(pick(scaleKeys).map((m) => [m.key, rowOf(m, r.get(m.key))])), disconnect, floor: f });
  }
  const topLevel = CFG.levels[CFG.levels.length - 1]!;
  const rssPer1000 = ((rss() - rss0) / topLevel) * 1000;
  const heapPer1000 = ((process.memoryUsage().heapUsed - heap0) / topLevel) * 1000;
  await dropBackground(env, bg, progress, 'scale: cleanup');

  // 3b. Cost of a port-mapping change (connect with one mapping) with N mappings in place.
  const mapScale: { mappings: number; connect: Row; restore: Row; mappingSteps: number; floor: FloorResult }[] = [];
  bg = [];
  for (const level of CFG.mapLevels) {
    const phase = `scale: ${level} mappings`;
    bg = bg.concat(await addBackground(env, level - env.background, true, progress, phase));
    const batch = Math.min(CFG.batch, BRIDGE_PORTS - level);
    const r = await sampleInterleaved(env, pick(['tsnport', 'restore']), CFG.mapN, batch, progress, phase);
    // The mapping's own steps, apart from the veth whose cost grows with the bridge (see 3a).
    const f = await measureFloor(env, batch, progress, true);
    const mappingSteps = round(['reserve ports', 'start port mappings', 'port mappings'].reduce((t, k) => t + (f.steps[k] ?? NaN), 0));
    mapScale.push({ mappings: level, connect: rowOf(all.find((m) => m.key === 'tsnport')!, r.get('tsnport')), restore: rowOf(all.find((m) => m.key === 'restore')!, r.get('restore')), mappingSteps, floor: f });
  }
  await dropBackground(env, bg, progress, 'scale: cleanup');

  progress.update('teardown');
  await nets.remove(net.name, { force: true });
  nets.close();
  const fds1 = openFds();
  const leaks = { fds: fds1.size - fds0.size, fdTargets: [...fds1].filter((f) => !fds0.has(f)), netns: readdirSync('/run/netns').length };
  progress.done();

  // ------------------------------------------------------------------ targets
  const mapTop = mapScale[mapScale.length - 1]!;
  const map1 = mapScale[0]!;
  const tsnTop = scale[scale.length - 1]!.connect.tsn?.summary?.p50;
  const quickNote = QUICK ? ' (--quick: smaller counts than the target names)' : '';
  const targets: Verdict[] = [
    verdict('tsnetlink connect p50 (no mappings)', p50('tsn'), 1.0, 'max', 'ms'),
    verdict('ip x8 sequence / tsnetlink connect, p50', p50('ip') / p50('tsn'), 15, 'min', 'x'),
    verdict('CNI bridge ADD / tsnetlink connect, p50', p50('cni') / p50('tsn'), 8, 'min', 'x', rows.get('cni')?.skipped),
    verdict('library overhead share of connect (1 - kernel time / total)', floor.overheadShare, 0.15, 'max', '%'),
    verdict('connect with one mapping / one iptables-restore, p50', p50('tsnport') / p50('restore'), 1.3, 'max', 'x'),
    verdict(`connect p50 at ${topLevel} endpoints / at 0`, (tsnTop ?? NaN) / p50('tsn'), 1.5, 'max', 'x', QUICK ? `at ${topLevel}, not 1000${quickNote}` : undefined),
    verdict(`port-mapping change (connect -p p50) at ${mapTop.mappings} mappings / at ${map1.mappings}`, (mapTop.connect.summary?.p50 ?? NaN) / (map1.connect.summary?.p50 ?? NaN), 2, 'max', 'x',
      `includes the veth's growth with ${mapTop.mappings} bridge ports${QUICK ? `; not 1000${quickNote}` : ''}`),
    verdict(`port-mapping change (mapping steps only) at ${mapTop.mappings} mappings / at ${map1.mappings}`, mapTop.mappingSteps / map1.mappingSteps, 2, 'max', 'x', 'reserve ports + starting iptables-restore + waiting for it after the netlink steps'),
    verdict(`connectMany of ${CFG.bulkN} with one mapping each: throughput vs ${CFG.bulkN} single connects`, bulk.seqPort! / bulk.manyPort!, 3, 'min', 'x',
      [QUICK ? `${CFG.bulkN}, not 100${quickNote}` : '', bulkNotes.length ? 'connectMany of all at once failed, see Bulk' : ''].filter(Boolean).join('; ') || undefined),
  ];

  // ------------------------------------------------------------------ output
  const out: string[] = [];
  const ratio = (k: string, ref: string) => (Number.isFinite(p50(k) / p50(ref)) ? `${(p50(k) / p50(ref)).toFixed(2)}x` : '-');
  out.push(`tsnetlink bench${QUICK ? ' --quick' : ''}: ${String(facts.date)}, kernel ${String(facts.kernel)}, ${String(facts.cpus)} CPUs, ${String(facts.iptables)}, node ${process.version}`);
  out.push('');
  out.push(`Connect latency, ms (fresh netns per sample, ${CFG.n} samples per method, interleaved, bridge with 0 endpoints)`);
  out.push(table(['method', 'procs', 'n', 'p50', 'p90', 'p99', 'p50 / tsnetlink'], all.map((m) => {
    const r = rows.get(m.key)!;
    const s = r.summary;
    const ref = m.mapping ? 'tsnport' : 'tsn';
    const note = r.skipped ? `skipped: ${r.skipped}` : r.error ? `error: ${r.error.slice(0, 60)}` : ratio(m.key, ref);
    return [m.label, String(m.procs), String(s?.n ?? 0), fmtMs(s?.p50), fmtMs(s?.p90), fmtMs(s?.p99), note];
  })));
  out.push('  (mapping rows compare with "tsnetlink connect -p"; above 1x the baseline is slower)');
  out.push('');
  out.push(`Floor (tsnetlink connect, ${floor.samples} samples, kernelClock on): total p50 ${fmtMs(floor.totalP50)} ms, inside sendto/recv/poll/setns/socket p50 ${fmtMs(floor.kernelP50)} ms`);
  out.push(`  kernel share ${(floor.kernelShare * 100).toFixed(1)}%, library overhead ${(floor.overheadShare * 100).toFixed(1)}%, ${floor.callsPerConnect.toFixed(1)} timed FFI calls per connect`);
  const byCall = Object.entries(floor.kernelByCall);
  if (byCall.length) out.push(`  inside the kernel, ms per connect: ${byCall.map(([k, v]) => `${k} ${fmtMs(v.msPerConnect)} (${v.callsPerConnect}x)`).join(', ')}`);
  const stepList = Object.entries(floor.steps);
  if (stepList.length) out.push(`  steps, p50 ms: ${stepList.map(([k, v]) => `${k} ${fmtMs(v)}`).join(', ')}`);
  const portSteps = Object.entries(floorPort.steps);
  if (portSteps.length) out.push(`  connect -p (${floorPort.samples} samples, total p50 ${fmtMs(floorPort.totalP50)}), steps p50 ms: ${portSteps.map(([k, v]) => `${k} ${fmtMs(v)}`).join(', ')}`);
  out.push('');
  out.push(`Disconnect, ms: single p50 ${fmtMs(discLive.p50)} / p90 ${fmtMs(discLive.p90)} / p99 ${fmtMs(discLive.p99)} (netns alive, ${discLive.n} samples); after the netns was deleted p50 ${fmtMs(discGone.p50)}`);
  out.push('');
  out.push(`Bulk, ${CFG.bulkN} containers`);
  out.push(table(['operation', 'total ms', 'per container', 'per second'], [
    ['connect x1 mapping, single calls', bulk.seqPort!], ['connectMany x1 mapping', bulk.manyPort!], ['connect, single calls', bulk.seq!], ['connectMany', bulk.many!],
    ['disconnect, single calls', bulk['disc-sequential']!], ['disconnectMany', bulk['disc-many']!],
    ['delete by device group (bench prototype)', bulk['disc-group']!], ['netns deleted first, then disconnect', bulk['disc-netns-first']!],
  ].map(([l, t]) => [String(l), fmtMs(Number(t)), fmtMs(Number(t) / CFG.bulkN), (CFG.bulkN / (Number(t) / 1000)).toFixed(0)])));
  for (const n of bulkNotes) out.push(`  FAILED ${n}`);
  out.push('  group prototype: IFLA_GROUP set on every host veth (one sendto), then one RTM_DELLINK by group (shares the RCU grace period)');
  out.push('');
  out.push('Scale: p50 ms by endpoints already on the bridge');
  out.push(table(['method', ...scale.map((s) => String(s.endpoints)), `${topLevel}/0`], [
    ...pick(scaleKeys).map((m) => [m.label, ...scale.map((s) => fmtMs(s.connect[m.key]?.summary?.p50)), `${((scale[scale.length - 1]!.connect[m.key]?.summary?.p50 ?? NaN) / (scale[0]!.connect[m.key]?.summary?.p50 ?? NaN)).toFixed(2)}x`]),
    ['tsnetlink disconnect', ...scale.map((s) => fmtMs(s.disconnect.p50)), `${(scale[scale.length - 1]!.disconnect.p50 / scale[0]!.disconnect.p50).toFixed(2)}x`],
    ...(['total', 'kernel', 'create veth', 'configure container'] as const).map((k) => {
      const v = (s: (typeof scale)[number]) => (k === 'total' ? s.floor.totalP50 : k === 'kernel' ? s.floor.kernelP50 : s.floor.steps[k] ?? NaN);
      return [`  tsnetlink ${k === 'total' ? 'connect, kernelClock on' : k === 'kernel' ? 'time inside the kernel' : `step "${k}"`}`, ...scale.map((s) => fmtMs(v(s))), `${(v(scale[scale.length - 1]!) / v(scale[0]!)).toFixed(2)}x`];
    }),
  ]));
  out.push(`  process memory per 1000 endpoints (delta 0 -> ${topLevel}, after gc): RSS ${(rssPer1000 / 2 ** 20).toFixed(2)} MiB, JS heap ${(heapPer1000 / 2 ** 20).toFixed(2)} MiB${QUICK ? ' (too few endpoints in --quick for a stable figure)' : ''}`);
  out.push('Port-mapping change: p50 ms by mappings in place');
  out.push(table(['what', ...mapScale.map((s) => String(s.mappings)), `${mapTop.mappings}/${map1.mappings}`], [
    ['tsnetlink connect -p', ...mapScale.map((s) => fmtMs(s.connect.summary?.p50)), `${((mapTop.connect.summary?.p50 ?? NaN) / (map1.connect.summary?.p50 ?? NaN)).toFixed(2)}x`],
    ['  of which the mapping steps', ...mapScale.map((s) => fmtMs(s.mappingSteps)), `${(mapTop.mappingSteps / map1.mappingSteps).toFixed(2)}x`],
    ['iptables-restore alone', ...mapScale.map((s) => fmtMs(s.restore.summary?.p50)), `${((mapTop.restore.summary?.p50 ?? NaN) / (map1.restore.summary?.p50 ?? NaN)).toFixed(2)}x`],
  ]));
  out.push('');
  out.push('Targets (issue 4):');
  for (const v of targets) out.push(verdictLine(v));
  out.push(`  info: connectMany without mappings vs single connects: ${(bulk.seq! / bulk.many!).toFixed(2)}x; disconnectMany vs single: ${(bulk['disc-sequential']! / bulk['disc-many']!).toFixed(2)}x`);
  out.push(`  info: connect -p / iptables-restore run through the library's restore(): ${(p50('tsnport') / p50('restorelib')).toFixed(2)}x`);
  out.push('');
  out.push(`Leaks within the run: ${leaks.fds} fds${leaks.fdTargets.length ? ` (${leaks.fdTargets.join(', ')})` : ''}, ${leaks.netns} netns. Took ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  const nl = await netlinkBench(QUICK);
  out.push('', ...nl.lines, '', 'Targets (issue 8):', ...nl.verdicts.map(verdictLine));
  const nf = await nftBench(QUICK);
  out.push('', ...nf.lines, '', 'Targets (issue 11):', ...nf.verdicts.map(verdictLine));
  const text = out.join('\n');
  console.log(text);

  const json = {
    facts, quick: QUICK, config: CFG, netlink: nl.json, nftables: nf.json,
    connect: Object.fromEntries(all.map((m) => [m.key, { label: m.label, procs: m.procs, mapping: m.mapping, ...rows.get(m.key)! }])),
    floorWithMapping: floorPort,
    floor,
    disconnect: { single: discLive, afterNetnsDeleted: discGone },
    bulk: { containers: CFG.bulkN, totalsMs: bulk, failures: bulkNotes },
    scale: { endpoints: scale, rssBytesPer1000Endpoints: Math.round(rssPer1000), heapBytesPer1000Endpoints: Math.round(heapPer1000), mappings: mapScale },
    targets, leaks, durationSec: Math.round((Date.now() - t0) / 1000), table: text,
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(new URL(QUICK ? 'quick.json' : 'latest.json', RESULTS), JSON.stringify(json, null, 2) + '\n');
  const svg = lineChart('tsnetlink: connect p50 against endpoints on the bridge', `${String(facts.date).slice(0, 10)}, kernel ${String(facts.kernel)}, ${String(facts.cpus)} CPUs${QUICK ? ', --quick' : ''}`,
    pick(scaleKeys).map((m) => ({ label: m.label, points: scale.map((s) => ({ x: s.endpoints, y: s.connect[m.key]?.summary?.p50 ?? NaN })) })));
  writeFileSync(new URL(QUICK ? 'connect-vs-endpoints.quick.svg' : 'connect-vs-endpoints.svg', RESULTS), svg);
  console.error(`wrote ${new URL(QUICK ? 'quick.json' : 'latest.json', RESULTS).pathname}`);
}

main().catch((e: unknown) => {
  process.stderr.write('\n');
  console.error('bench failed:', e);
  process.exit(1);
});
