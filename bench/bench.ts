/**
 * tsnetlink benchmark: connect latency against iproute2 and the CNI bridge plugin,
 * the kernel floor, scale with endpoints and mappings on the bridge, bulk (connectMany) and disconnect,
 * bursts of CLI connect -p at once against netavark's, and the CNI plugin in Podman's flow against
 * the stock plugin chain.
 *
 *   npm run bench              full run (a few minutes)
 *   npm run bench -- --quick   CI smoke run (small counts, about a minute on an idle 2-CPU machine)
 *   npm run bench -- --check   exits 1 when a target is MISSED (without it the exit code is 0 either way)
 *
 * It must run inside scripts/sandbox.mjs (a throwaway net + mount namespace): it creates a
 * bridge, thousands of netns, iptables rules and sysctls. Every figure also goes to
 * bench/results/latest.json, and connect p50 against endpoints to an SVG chart; bench/results/
 * is untracked, so a run leaves `git status` clean.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Networks } from '../src/index.js';
import { bulkConnect, bulkDisconnect } from './lib/bulk.js';
import { machineFacts } from './lib/facts.js';
import { fdChanges, leakLine, openFds, openLoopReserveFd } from './lib/fds.js';
import { disconnectMethods, methods, type Env, type Method } from './lib/methods.js';
import { closeNetavark, netavarkBinary, netavarkMissing, openNetavark } from './lib/netavark.js';
import { fmtCount, fmtDelta, fmtRatio, levelRow, missedTargets, ratioOf, sumSteps, table, verdict, verdictLine, type Verdict } from './lib/report.js';
import { addBackground, dropBackground, measureDisconnect, measureFloor, sampleDisconnects, sampleInterleaved, type FloorResult, type MethodResult } from './lib/runner.js';
import { fmtMs, Progress, round, summarize, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';
import { netlinkBench } from './lib/netlink.js';
import { asyncBench } from './lib/async.js';
import { measureDualStack } from './lib/dualstack.js';
import { cniPluginBench } from './lib/cni-plugin.js';
import { measureBursts, type BurstResult } from './lib/burst.js';
import { cliMissing } from './lib/processes.js';
import { nftBench } from './lib/nft.js';
import { engineBench } from './lib/engine.js';
import { criBench } from './lib/cri.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const CHECK = args.includes('--check');
const USAGE = 'usage: npm run bench [-- [--quick] [--check] [--netlink] [--cni] [--nft] [--engine] [--cri] [--concurrency]]   (runs dist/bench/bench.js inside scripts/sandbox.mjs, as root)\n  --quick    small counts (the CI smoke run)\n  --check    exit 1 when a target is MISSED\n  --netlink  only the netlink library rows\n  --cni      only the CNI plugin rows (Podman runs containers on both plugins)\n  --nft      only the firewall-backend rows (native nf_tables against iptables-restore)\n  --engine   only the engine rows (CNI and CLI calls through tsnetlink engine, drift repair)\n  --cri      only the CRI rows (containerd RunPodSandbox / StopPodSandbox / RemovePodSandbox on the stock chain and on tsnetlink with and without an engine)\n  --concurrency  only the concurrency rows (bursts of CLI connect -p against netavark setup -p)';
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const unknown = args.filter((a) => !['--quick', '--check', '--netlink', '--cni', '--nft', '--engine', '--cri', '--concurrency'].includes(a));
if (unknown.length > 0) {
  console.error(`bench: unknown argument ${unknown.join(' ')}\n${USAGE}`);
  process.exit(2);
}

/** With --check, 1 when a target was missed (and which, on stderr); otherwise 0, as without --check. */
function checkExitCode(vs: readonly Verdict[]): number {
  const missed = missedTargets(vs);
  if (!CHECK || missed.length === 0) return 0;
  console.error(`bench --check: ${missed.length} target${missed.length === 1 ? '' : 's'} MISSED: ${missed.map((v) => v.target).join('; ')}`);
  return 1;
}
/** A section's rows and its targets, printed alone; `failed` makes the exit code 1 whatever the targets say. */
type Section = { lines: string[]; verdicts: Verdict[]; failed?: string };

/**
 * Runs one section alone (`npm run bench -- --FLAG [--quick] [--check]`) when its flag is given,
 * prints its rows and targets, and exits; `checked` false: its targets never set the exit code.
 */
async function only(flag: string, title: string, run: () => Promise<Section>, checked = true): Promise<void> {
  if (process.env.TSNETLINK_IN_SANDBOX !== '1' || !args.includes(flag)) return;
  const r = await run();
  console.log([...r.lines, '', `Targets, ${title}:`, ...r.verdicts.map(verdictLine)].join('\n'));
  process.exit(r.failed !== undefined ? 1 : checked ? checkExitCode(r.verdicts) : 0);
}
await only('--netlink', 'netlink library', async () => {
  const r = await netlinkBench(QUICK);
  const a = await asyncBench(QUICK);
  return { lines: [...r.lines, ...a.lines], verdicts: [...r.verdicts, ...a.verdicts] };
});
await only('--cni', 'CNI plugin', () => cniPluginBench(QUICK));
await only('--nft', 'firewall backends', () => nftBench(QUICK), false);
await only('--engine', 'engine', () => engineBench(QUICK));
await only('--cri', 'CRI', () => criBench(QUICK));
if (process.env.TSNETLINK_IN_SANDBOX !== '1') {
  console.error('bench: refusing to run outside the sandbox (it creates bridges, netns and iptables rules).\n  use: npm run bench [-- --quick]   or: node scripts/sandbox.mjs node dist/bench/bench.js [--quick]');
  process.exit(2);
}

const CFG = QUICK
  ? { n: 20, batch: 10, warm: 2, floorN: 20, discN: 10, bulkN: 20, levels: [0, 50], scaleN: 10, mapLevels: [1, 50], mapN: 10, dsN: 10, dsLevel: 50, burstN: 10, burstRounds: 1 }
  : { n: 200, batch: 25, warm: 5, floorN: 200, discN: 50, bulkN: 100, levels: [0, 100, 500, 1000], scaleN: 50, mapLevels: [1, 100, 1000], mapN: 50, dsN: 100, dsLevel: 1000, burstN: 40, burstRounds: 4 };
const NETWORK = 'tsnbench0';
const STATE_DIR = '/run/tsnetlink/bench';
/** A Linux bridge has at most 1023 ports (BR_MAX_PORTS 1024); beyond that RTM_NEWLINK fails with EXFULL. */
const BRIDGE_PORTS = 1023;
/**
 * The connect steps that belong to a port mapping: reserving the host ports, and waiting after the
 * netlink steps for the iptables-restore that started before them.
 */
const MAPPING_STEPS = ['reserve ports', 'port mappings'];
const RESULTS = new URL('../../bench/results/', import.meta.url); // dist/bench/bench.js -> bench/results/

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type Row = { summary: Summary | null; error?: string; skipped?: string };

/** Undo to run when the bench fails midway (the sandbox drops the rest with its namespaces). */
const onFailure: (() => void)[] = [];

function rowOf(m: Pick<Method, 'skip'>, r: MethodResult | undefined): Row {
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

function commandLine(): string {
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  return `node ${process.argv.slice(1).join(' ')}`;
}

/** The concurrency table: one row per side of the bursts. */
function burstLines(burst: BurstResult): string[] {
  const ref = burst.sides[0]!;
  return [
    `Concurrency, ms: ${burst.n} processes started at once, each with one port mapping and a netns of its own, against a quiet network; ${burst.rounds} burst${burst.rounds === 1 ? '' : 's'} per row, the rows taking turns`,
    table(['what', 'procs', 'n', 'p50', 'p99', 'burst wall', 'burst CPU', 'wall / tsnetlink'], burst.sides.map((b) => [
      `${burst.n} parallel ${b.label}`, String(b.processes), String(b.perProcess.n), fmtMs(b.perProcess.p50), fmtMs(b.perProcess.p99), fmtMs(b.wallP50), fmtMs(b.cpuP50),
      b.skipped ? `skipped: ${b.skipped}` : b.error ? `error: ${b.error.slice(0, 60)}` : fmtRatio(ratioOf(b.wallP50, ref.wallP50)),
    ])),
    '  (p50, p99: each process, spawn to exit; burst wall and CPU: p50 over the bursts, CPU of every process of a burst and the tools they ran; procs: processes per container)',
    '',
  ];
}

/** Only the concurrency rows, on a network of their own: npm run bench -- --concurrency [--quick]. */
async function concurrencyOnly(): Promise<void> {
  const progress = new Progress();
  const nets = new Networks({ stateDir: STATE_DIR });
  const net = await nets.create({ name: NETWORK, subnet: '10.88.0.1/16' });
  const nvBin = netavarkBinary();
  const netavark = nvBin ? openNetavark(nvBin, '/run/tsnetlink') : undefined;
  if (netavark) onFailure.push(() => closeNetavark(netavark));
  const env: Env = {
    nets, network: net.name, bridge: net.bridge, subnet: net.subnet, gateway: net.gateway, prefix: net.prefix, cniDataDir: '/run/tsnetlink/bench-cni', background: 0, stateDir: STATE_DIR,
    ...(netavark ? { netavark } : {}),
  };
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const burst = await measureBursts(env, CFG.burstN, CFG.burstRounds, progress, {
    ...(cliMissing() ? { cli: cliMissing()! } : {}),
    ...(env.netavark ? {} : { netavark: netavarkMissing() ?? 'netavark network not created' }),
  });
  const load1 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  progress.update('teardown');
  if (netavark) closeNetavark(netavark);
  onFailure.length = 0;
  await nets.remove(net.name, { force: true });
  nets.close();
  progress.done();
  console.log([...burstLines(burst), `load average before ${load0}, after ${load1}`].join('\n'));
}

async function main(): Promise<void> {
  if (args.includes('--concurrency')) return concurrencyOnly();
  const progress = new Progress();
  const t0 = Date.now();
  const fds0 = openFds();
  const keptFds = await openLoopReserveFd();
  const facts = machineFacts(commandLine());
  const nets = new Networks({ stateDir: STATE_DIR });
  const net = await nets.create({ name: NETWORK, subnet: '10.88.0.1/16' });
  const nvBin = netavarkBinary();
  const netavark = nvBin ? openNetavark(nvBin, '/run/tsnetlink') : undefined;
  if (netavark) onFailure.push(() => closeNetavark(netavark));
  const env: Env = {
    nets, network: net.name, bridge: net.bridge, subnet: net.subnet, gateway: net.gateway, prefix: net.prefix, cniDataDir: '/run/tsnetlink/bench-cni', background: 0, stateDir: STATE_DIR,
    ...(netavark ? { netavark } : {}),
  };
  const all = methods(env);
  const pick = (keys: readonly string[]) => all.filter((m) => keys.includes(m.key));
  const connectRows = all.filter((m) => m.table !== 'process');
  const processRows = all.filter((m) => m.table === 'process');
  const discMethods = disconnectMethods(env, all);

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

  // 5. Disconnect, single, against netavark's teardown, interleaved (netns alive: the tool deletes
  // the veth), then tsnetlink's after the netns was deleted (the veth went with it: only state).
  const discSampled = await sampleDisconnects(env, discMethods, CFG.discN, CFG.batch, progress, 'disconnect');
  const discRows = new Map(discMethods.map((m) => [m.key, rowOf(m, discSampled.get(m.key))]));
  const discP50 = (k: string) => discRows.get(k)?.summary?.p50 ?? NaN;
  const discLive = discRows.get('tsn')!.summary ?? roundSummary(summarize([]));
  const discGone = roundSummary(summarize(await measureDisconnect(env, CFG.discN, 'gone', progress, 'disconnect')));

  // 6. Concurrency: bursts of CLI connect -p processes at once against the quiet network, taking
  // turns with bursts of netavark setup -p.
  const burst = await measureBursts(env, CFG.burstN, CFG.burstRounds, progress, {
    ...(cliMissing() ? { cli: cliMissing()! } : {}),
    ...(env.netavark ? {} : { netavark: netavarkMissing() ?? 'netavark network not created' }),
  });

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
    const mappingSteps = round(sumSteps(f.steps, MAPPING_STEPS));
    mapScale.push({ mappings: level, connect: rowOf(all.find((m) => m.key === 'tsnport')!, r.get('tsnport')), restore: rowOf(all.find((m) => m.key === 'restore')!, r.get('restore')), mappingSteps, floor: f });
  }
  await dropBackground(env, bg, progress, 'scale: cleanup');

  // 3c. Dual stack: connect on a network with an IPv6 subnet too, against IPv4 only, and at scale.
  const dual = await measureDualStack(env, CFG.dsN, Math.min(CFG.batch, BRIDGE_PORTS - CFG.dsLevel), CFG.dsLevel, progress);

  progress.update('teardown');
  if (netavark) closeNetavark(netavark);
  onFailure.length = 0;
  await nets.remove(net.name, { force: true });
  nets.close();
  const fds1 = openFds();
  const fdDelta = fdChanges(fds0, fds1, keptFds);
  const leaks = { fds: fdDelta.leaked.length, fdTargets: fdDelta.leaked, keptOnPurpose: fdDelta.kept, netns: readdirSync('/run/netns').length };
  progress.done();

  // ------------------------------------------------------------------ targets
  const mapTop = mapScale[mapScale.length - 1]!;
  const map1 = mapScale[0]!;
  const tsnTop = scale[scale.length - 1]!.connect.tsn?.summary?.p50;
  const quickNote = QUICK ? ' (--quick: smaller counts than the target names)' : '';
  const targets: Verdict[] = [
    verdict('tsnetlink connect p50 (no mappings)', p50('tsn'), 1.0, 'max', 'ms'),
    verdict("ip x8 (the book chapter's commands) / tsnetlink connect, p50", p50('ip') / p50('tsn'), 15, 'min', 'x'),
    verdict('CNI bridge ADD / tsnetlink connect, p50', p50('cni') / p50('tsn'), 8, 'min', 'x', rows.get('cni')?.skipped),
    verdict('library overhead share of connect (1 - kernel time / total)', floor.overheadShare, 0.15, 'max', '%'),
    verdict('connect with one mapping / one iptables-restore, p50', p50('tsnport') / p50('restore'), 1.3, 'max', 'x'),
    verdict(`connect p50 at ${topLevel} endpoints / at 0`, ratioOf(tsnTop, p50('tsn')), 1.5, 'max', 'x', QUICK ? `at ${topLevel}, not 1000${quickNote}` : undefined),
    verdict(`port-mapping change (connect -p p50) at ${mapTop.mappings} mappings / at ${map1.mappings}`, ratioOf(mapTop.connect.summary?.p50, map1.connect.summary?.p50), 2, 'max', 'x',
      `includes the veth's growth with ${mapTop.mappings} bridge ports${QUICK ? `; not 1000${quickNote}` : ''}`),
    verdict(`port-mapping change (mapping steps only) at ${mapTop.mappings} mappings / at ${map1.mappings}`, ratioOf(mapTop.mappingSteps, map1.mappingSteps), 2, 'max', 'x', `steps ${MAPPING_STEPS.map((n) => `"${n}"`).join(' + ')}`),
    verdict(`connectMany of ${CFG.bulkN} with one mapping each: throughput vs ${CFG.bulkN} single connects`, bulk.seqPort! / bulk.manyPort!, 3, 'min', 'x',
      [QUICK ? `${CFG.bulkN}, not 100${quickNote}` : '', bulkNotes.length ? 'connectMany of all at once failed, see Bulk' : ''].filter(Boolean).join('; ') || undefined),
    verdict('netavark setup / tsnetlink connect, p50', p50('nv') / p50('tsn'), 15, 'min', 'x', rows.get('nv')?.skipped),
    verdict('netavark setup -p / tsnetlink connect -p, p50', p50('nvport') / p50('tsnport'), 10, 'min', 'x', rows.get('nvport')?.skipped),
    verdict('netavark teardown / tsnetlink disconnect, p50 (netns alive)', discP50('nv') / discP50('tsn'), 3, 'min', 'x', discRows.get('nv')?.skipped),
    verdict('dual-stack connect / IPv4-only connect, p50', ratioOf(dual.dsAt0.p50, dual.v4At0.p50), 1.3, 'max', 'x', dual.error),
    verdict(`dual-stack connect p50 at ${dual.level} dual-stack endpoints / at 0`, ratioOf(dual.dsAtLevel.p50, dual.dsAt0.p50), 1.5, 'max', 'x', QUICK ? `at ${dual.level}, not 1000${quickNote}` : dual.error),
    verdict('tsnetlink connect as a CLI process, p50 above node -e 0', p50('cli') - p50('node'), 15, 'max', 'ms', rows.get('cli')?.skipped),
    verdict('tsnetlink connect -p as a CLI process, p50 above node -e 0', p50('cliport') - p50('node'), 15, 'max', 'ms', rows.get('cliport')?.skipped),
  ];

  // ------------------------------------------------------------------ output
  const out: string[] = [];
  const ratio = (k: string, ref: string) => fmtRatio(p50(k) / p50(ref));
  const load1 = os.loadavg()[0]!;
  out.push(`tsnetlink bench${QUICK ? ' --quick' : ''}: ${String(facts.date)}, kernel ${String(facts.kernel)}, ${String(facts.cpus)} CPUs, ${String(facts.iptables)}, node ${process.version}, ${String(facts.netavark ?? 'netavark not installed')}`);
  out.push(`  load average (1 min) ${String(facts.load1)} at the start, ${load1.toFixed(2)} at the end, on ${String(facts.cpus)} CPUs`);
  out.push('');
  const statCells = (m: { label: string; procs: number }, r: Row, note: string) => {
    const s = r.summary;
    return [m.label, String(m.procs), String(s?.n ?? 0), fmtMs(s?.p50), fmtMs(s?.p90), fmtMs(s?.p99), r.skipped ? `skipped: ${r.skipped}` : r.error ? `error: ${r.error.slice(0, 60)}` : note];
  };
  out.push(`Connect latency, ms (fresh netns per sample, ${CFG.n} samples per method (netavark and CNI + portmap: ${Math.ceil(CFG.n * 0.5)}), interleaved, bridge with 0 endpoints)`);
  out.push(table(['method', 'procs', 'n', 'p50', 'p90', 'p99', 'p50 / tsnetlink'], connectRows.map((m) => statCells(m, rows.get(m.key)!, ratio(m.key, m.mapping ? 'tsnport' : 'tsn')))));
  out.push('  (mapping rows compare with "tsnetlink connect -p"; above 1x the baseline is slower; procs: processes started per connect)');
  out.push('');
  const nodeP50 = p50('node');
  const above = (k: string) => (k === 'node' ? '' : fmtDelta(p50(k) - nodeP50));
  out.push(`Process level, ms: each command as its own process, spawn to exit, as a CLI user runs it (interleaved with the rows above)`);
  out.push(table(['what', 'procs', 'n', 'p50', 'p90', 'p99', 'above node -e 0', 'p50 / tsnetlink CLI'], [
    ...processRows.map((m) => statCells(m, rows.get(m.key)!, above(m.key)).concat(m.key === 'cli' || m.key === 'cliport' ? ['1.00x'] : [''])),
    ...pick(['nv', 'nvport', 'cniport']).map((m) => statCells(m, rows.get(m.key)!, above(m.key)).concat([ratio(m.key, m.mapping ? 'cliport' : 'cli')])),
  ]));
  const cliRest = p50('cli') - nodeP50 - (p50('koffi') - nodeP50) - (p50('help') - nodeP50) - p50('tsn');
  out.push(`  (netavark and CNI rows: the connect table's samples; above 1x the baseline is slower than the CLI)`);
  out.push(`  CLI connect above node -e 0, p50 ${fmtMs(p50('cli') - nodeP50)} ms ~ koffi ${fmtMs(p50('koffi') - nodeP50)} + the CLI's entry bundle (--help) ${fmtMs(p50('help') - nodeP50)} + the library's connect ${fmtMs(p50('tsn'))} + the rest ${fmtMs(cliRest)} (the commands bundle, and what a process does once: the first netlink sockets, the state dir, JIT-cold code)`);
  out.push('');
  out.push(`Disconnect, ms (netns alive: the tool deletes the veth; ${CFG.discN} samples per method, interleaved)`);
  out.push(table(['what', 'procs', 'n', 'p50', 'p90', 'p99', 'p50 / tsnetlink'], discMethods.map((m) => statCells(m, discRows.get(m.key)!, fmtRatio(discP50(m.key) / discP50(m.via.mapping ? 'tsnport' : 'tsn'))))));
  out.push('');
  out.push(...burstLines(burst));
  out.push(`Floor (tsnetlink connect, ${floor.samples} samples, kernelClock on): total p50 ${fmtMs(floor.totalP50)} ms, inside sendto/recv/poll/setns/socket p50 ${fmtMs(floor.kernelP50)} ms`);
  out.push(`  kernel share ${(floor.kernelShare * 100).toFixed(1)}%, library overhead ${(floor.overheadShare * 100).toFixed(1)}%, ${floor.callsPerConnect.toFixed(1)} timed FFI calls per connect`);
  const byCall = Object.entries(floor.kernelByCall);
  if (byCall.length) out.push(`  inside the kernel, ms per connect: ${byCall.map(([k, v]) => `${k} ${fmtMs(v.msPerConnect)} (${v.callsPerConnect}x)`).join(', ')}`);
  const stepList = Object.entries(floor.steps);
  if (stepList.length) out.push(`  steps, p50 ms: ${stepList.map(([k, v]) => `${k} ${fmtMs(v)}`).join(', ')}`);
  const portSteps = Object.entries(floorPort.steps);
  if (portSteps.length) out.push(`  connect -p (${floorPort.samples} samples, total p50 ${fmtMs(floorPort.totalP50)}), steps p50 ms: ${portSteps.map(([k, v]) => `${k} ${fmtMs(v)}`).join(', ')}`);
  out.push('');
  out.push(`  after the netns was deleted (the veth went with it), tsnetlink disconnect p50 ${fmtMs(discGone.p50)} (${discGone.n} samples)`);
  out.push('');
  out.push(`Bulk, ${CFG.bulkN} containers`);
  out.push(table(['operation', 'total ms', 'per container', 'per second'], [
    ['connect x1 mapping, single calls', bulk.seqPort!], ['connectMany x1 mapping', bulk.manyPort!], ['connect, single calls', bulk.seq!], ['connectMany', bulk.many!],
    ['disconnect, single calls', bulk['disc-sequential']!], ['disconnectMany', bulk['disc-many']!],
    ['delete by device group (bench prototype)', bulk['disc-group']!], ['netns deleted first, then disconnect', bulk['disc-netns-first']!],
  ].map(([l, t]) => [String(l), fmtMs(Number(t)), fmtMs(Number(t) / CFG.bulkN), fmtCount(CFG.bulkN / (Number(t) / 1000))])));
  for (const n of bulkNotes) out.push(`  FAILED ${n}`);
  out.push('  group prototype: IFLA_GROUP set on every host veth (one sendto), then one RTM_DELLINK by group (shares the RCU grace period)');
  out.push('');
  out.push('Scale: p50 ms by endpoints already on the bridge');
  out.push(table(['method', ...scale.map((s) => String(s.endpoints)), `${topLevel}/0`], [
    ...pick(scaleKeys).map((m) => levelRow(m.label, scale.map((s) => s.connect[m.key]?.summary?.p50))),
    levelRow('tsnetlink disconnect', scale.map((s) => s.disconnect.p50)),
    ...(['total', 'kernel', 'create veth', 'configure container'] as const).map((k) =>
      levelRow(`  tsnetlink ${k === 'total' ? 'connect, kernelClock on' : k === 'kernel' ? 'time inside the kernel' : `step "${k}"`}`,
        scale.map((s) => (k === 'total' ? s.floor.totalP50 : k === 'kernel' ? s.floor.kernelP50 : s.floor.steps[k])))),
  ]));
  out.push(`  process memory per 1000 endpoints (delta 0 -> ${topLevel}, after gc): RSS ${(rssPer1000 / 2 ** 20).toFixed(2)} MiB, JS heap ${(heapPer1000 / 2 ** 20).toFixed(2)} MiB${QUICK ? ' (too few endpoints in --quick for a stable figure)' : ''}`);
  out.push('Port-mapping change: p50 ms by mappings in place');
  out.push(table(['what', ...mapScale.map((s) => String(s.mappings)), `${mapTop.mappings}/${map1.mappings}`], [
    levelRow('tsnetlink connect -p', mapScale.map((s) => s.connect.summary?.p50)),
    levelRow(`  of which the mapping steps (${MAPPING_STEPS.join(' + ')})`, mapScale.map((s) => s.mappingSteps)),
    levelRow('iptables-restore alone', mapScale.map((s) => s.restore.summary?.p50)),
  ]));
  out.push(`Dual stack: tsnetlink connect p50 ms (${CFG.dsN} samples each, fresh netns per sample; 0 and ${dual.level} interleaved rounds on networks of their own)`);
  out.push(table(['network', 'endpoints on the bridge', 'n', 'p50', 'p90', 'p99', 'p50 / IPv4-only at 0'], [
    ['IPv4 only (10.91.0.0/16)', '0', dual.v4At0],
    ['dual stack (10.92.0.0/16 + fd00:92::/64)', '0', dual.dsAt0],
    ['dual stack (10.92.0.0/16 + fd00:92::/64)', String(dual.level), dual.dsAtLevel],
  ].map(([l, e, s]) => { const x = s as Summary; return [String(l), String(e), String(x.n), fmtMs(x.p50), fmtMs(x.p90), fmtMs(x.p99), fmtRatio(ratioOf(x.p50, dual.v4At0.p50))]; })));
  if (dual.error) out.push(`  FAILED ${dual.error}`);
  out.push('');
  out.push('Targets:');
  for (const v of targets) out.push(verdictLine(v));
  out.push(`  info: connectMany without mappings vs single connects: ${fmtRatio(ratioOf(bulk.seq, bulk.many))}; disconnectMany vs single: ${fmtRatio(ratioOf(bulk['disc-sequential'], bulk['disc-many']))}`);
  out.push(`  info: connect -p / iptables-restore run through the library's restore(): ${fmtRatio(p50('tsnport') / p50('restorelib'))}`);
  out.push(`  info: CLI processes against netavark's, p50: tsnetlink connect (CLI) / netavark setup ${fmtRatio(p50('cli') / p50('nv'))}, connect -p (CLI) / netavark setup -p ${fmtRatio(p50('cliport') / p50('nvport'))}, disconnect (CLI) / netavark teardown -p ${fmtRatio(discP50('cliport') / discP50('nvport'))}, connect -p (CLI) / CNI bridge + portmap ADD ${fmtRatio(p50('cliport') / p50('cniport'))} (above 1x tsnetlink's CLI is slower)`);
  out.push('');
  out.push(`${leakLine(fdDelta, leaks.netns)} Took ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  const nl = await netlinkBench(QUICK);
  const nlAsync = await asyncBench(QUICK);
  out.push('', ...nl.lines, ...nlAsync.lines, '', 'Targets, netlink library:', ...[...nl.verdicts, ...nlAsync.verdicts].map(verdictLine));
  const cniRows = await cniPluginBench(QUICK);
  out.push('', ...cniRows.lines, '', 'Targets, CNI plugin:', ...cniRows.verdicts.map(verdictLine));
  const nf = await nftBench(QUICK);
  out.push('', ...nf.lines, '', 'Targets, firewall backends:', ...nf.verdicts.map(verdictLine));
  const eng = await engineBench(QUICK);
  out.push('', ...eng.lines, '', 'Targets, engine:', ...eng.verdicts.map(verdictLine));
  const criRows = await criBench(QUICK);
  out.push('', ...criRows.lines, '', 'Targets, CRI:', ...criRows.verdicts.map(verdictLine));
  const text = out.join('\n');
  console.log(text);

  const json = {
    facts, quick: QUICK, config: CFG, netlink: { ...nl.json, eventLoop: nlAsync.json }, cniPlugin: cniRows.json, nftables: nf.json, engine: eng.json, cri: criRows.json,
    connect: Object.fromEntries(all.map((m) => [m.key, { label: m.label, procs: m.procs, mapping: m.mapping, table: m.table ?? 'connect', ...rows.get(m.key)! }])),
    disconnectRows: Object.fromEntries(discMethods.map((m) => [m.key, { label: m.label, procs: m.procs, ...discRows.get(m.key)! }])),
    floorWithMapping: floorPort,
    floor,
    disconnect: { single: discLive, afterNetnsDeleted: discGone },
    concurrency: burst,
    bulk: { containers: CFG.bulkN, totalsMs: bulk, failures: bulkNotes },
    dualStack: dual,
    scale: { endpoints: scale, rssBytesPer1000Endpoints: Math.round(rssPer1000), heapBytesPer1000Endpoints: Math.round(heapPer1000), mappings: mapScale },
    targets, leaks, durationSec: Math.round((Date.now() - t0) / 1000), table: text,
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(new URL(QUICK ? 'quick.json' : 'latest.json', RESULTS), JSON.stringify(json, null, 2) + '\n');
  const svg = lineChart('tsnetlink: connect p50 against endpoints on the bridge', `lower is better; ${String(facts.date).slice(0, 10)}, kernel ${String(facts.kernel)}, ${String(facts.cpus)} CPUs${QUICK ? ', --quick' : ''}`,
    pick(scaleKeys).map((m) => ({ label: m.label, points: scale.map((s) => ({ x: s.endpoints, y: s.connect[m.key]?.summary?.p50 ?? NaN })) })));
  writeFileSync(new URL(QUICK ? 'connect-vs-endpoints.quick.svg' : 'connect-vs-endpoints.svg', RESULTS), svg);
  console.error(`wrote ${new URL(QUICK ? 'quick.json' : 'latest.json', RESULTS).pathname}`);
  process.exitCode = criRows.failed !== undefined ? 1 : checkExitCode([...targets, ...nl.verdicts, ...nlAsync.verdicts, ...cniRows.verdicts, ...eng.verdicts, ...criRows.verdicts]);
}

main().catch((e: unknown) => {
  process.stderr.write('\n');
  console.error('bench failed:', e);
  for (const undo of onFailure.splice(0)) {
    try {
      undo();
    } catch (err) {
      console.error('bench: cleanup after the failure failed too:', (err as Error).message);
    }
  }
  process.exit(1);
});
