/**
 * The CNI plugin rows, in Podman's own flow: one Podman with the CNI backend runs the
 * same container (busybox httpd, `-p 8080:80`) alternately on a network with the stock chain
 * (bridge + host-local, portmap, firewall, tuning) and on one rewritten to tsnetlink. Each plugin
 * sits behind a shell wrapper that logs how long each call took, as the plugins themselves are
 * timed; the totals of `podman run -d` are taken in separate rounds without wrappers. VERSION is
 * timed as runtimes call it, and the plugin's start cost with and without the bundle. The same
 * rounds then run again with a resident engine (`tsnetlink engine`) serving the plugin's state
 * directory, the shim handing each call to it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Podman, haveRuntime, hideUnifiedCgroup, toTsnetlink } from '../../test/e2e/cni-runtimes.js';
import { PLUGIN, STOCK } from '../../test/e2e/cni-lib.js';
import { startEngineProcess, stopEngineProcess } from './engine.js';
import { table, verdict, type Verdict } from './report.js';
import { fmtMs, round, summarize } from './stats.js';

const WRAPPED = ['bridge', 'portmap', 'firewall', 'tuning'] as const;
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // dist/bench/lib -> repo root

/** Median of `samples` (NaN when empty). */
function p50(samples: readonly number[]): number {
  return samples.length === 0 ? NaN : summarize(samples).p50;
}

/** Runs argv `n` times (after one warm-up) with env and stdin; milliseconds per run. */
function timeExec(argv: readonly string[], env: NodeJS.ProcessEnv, input: string, n: number): number[] {
  const out: number[] = [];
  for (let i = -1; i < n; i++) {
    const t = performance.now();
    const r = spawnSync(argv[0]!, argv.slice(1), { env, input, encoding: 'utf8' });
    const ms = performance.now() - t;
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stdout}${r.stderr}`);
    if (i >= 0) out.push(ms);
  }
  return out;
}

/** The CNI rows and their targets; `null` lines when the runtime packages are missing. */
export async function cniPluginBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: unknown }> {
  const missing = haveRuntime(['podman', 'crun', 'conmon', 'busybox']);
  if (missing.length > 0 || !existsSync(join(STOCK, 'bridge'))) {
    const why = `not run: ${[...missing, ...(existsSync(join(STOCK, 'bridge')) ? [] : ['containernetworking-plugins'])].join(', ')} missing`;
    return { lines: [`CNI plugin in Podman's flow: ${why}`], verdicts: [verdict('tsnetlink ADD / stock chain ADDs (Podman, -p 8080:80)', null, 1, 'max', 'x', why)], json: { skipped: why } };
  }
  const n = quick ? 3 : 20;
  const versionN = quick ? 10 : 50;
  hideUnifiedCgroup();
  const podman = new Podman('bench');
  const log = join(podman.dir, 'calls.log');
  const wrapDir = join(podman.dir, 'wrap');
  mkdirSync(wrapDir);
  // Each wrapper logs "COMMAND PLUGIN MICROSECONDS" around the real plugin; stdin and stdout pass through.
  const realOf = (p: string): string => (p === 'tsnetlink' ? PLUGIN : join(STOCK, p));
  for (const p of [...WRAPPED, 'tsnetlink']) {
    writeFileSync(join(wrapDir, p), `#!/bin/sh\ns=$(date +%s%N)\n${realOf(p)}\nrc=$?\ne=$(date +%s%N)\necho "$CNI_COMMAND ${p} $(( (e - s) / 1000 ))" >> ${log}\nexit $rc\n`, { mode: 0o755 });
  }
  const plugins = (wrapped: boolean): void => {
    for (const p of [...WRAPPED, 'tsnetlink']) {
      const link = join(podman.binDir, p);
      if (existsSync(link) || p === 'tsnetlink') rmSync(link, { force: true });
      symlinkSync(wrapped ? join(wrapDir, p) : realOf(p), link);
    }
  };
  const lines: string[] = [];
  try {
    podman.cmd('network', 'create', '--subnet', '10.95.0.0/24', 'benchstock');
    podman.cmd('network', 'create', '--subnet', '10.96.0.0/24', 'benchtsn');
    toTsnetlink(podman.conflistPath('benchtsn'));
    const total: Record<string, number[]> = { benchstock: [], benchtsn: [] };
    const rmTotal: Record<string, number[]> = { benchstock: [], benchtsn: [] };
    const once = (net: string, i: number): void => {
      const name = `b${net}${i}`;
      total[net]!.push(podman.timed('run', '-d', '--name', name, '--network', net, '-p', '8080:80', '--rootfs', podman.rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www'));
      rmTotal[net]!.push(podman.timed('rm', '-f', '-t', '0', name));
    };
    // Rounds with the wrappers: the per-plugin ADD and DEL times.
    plugins(true);
    for (let i = 0; i < n + 1; i++) for (const net of i % 2 ? ['benchstock', 'benchtsn'] : ['benchtsn', 'benchstock']) once(net, i);
    const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
    // The first call of each kind is the warm-up round's.
    const times = (cmd: string, p: string): number[] => calls.filter((c) => c[0] === cmd && c[1] === p).map((c) => Number(c[2]) / 1000).slice(1);
    const chain = (cmd: string): number[] => {
      const per = WRAPPED.map((p) => times(cmd, p));
      return per[0]!.map((_, i) => per.reduce((s, t) => s + (t[i] ?? NaN), 0));
    };
    const addTsn = p50(times('ADD', 'tsnetlink'));
    const addStock = p50(chain('ADD'));
    const delTsn = p50(times('DEL', 'tsnetlink'));
    const delStock = p50(chain('DEL'));
    const perPlugin = WRAPPED.map((p) => `${p} ${fmtMs(p50(times('ADD', p)))}/${fmtMs(p50(times('DEL', p)))}`).join(', ');
    // Rounds without wrappers: what a user waits for.
    plugins(false);
    for (const k of Object.keys(total)) total[k] = [];
    for (const k of Object.keys(rmTotal)) rmTotal[k] = [];
    for (let i = 0; i < n + 1; i++) for (const net of i % 2 ? ['benchstock', 'benchtsn'] : ['benchtsn', 'benchstock']) once(net, 100 + i);
    const runTsn = p50(total['benchtsn']!.slice(2));
    const runStock = p50(total['benchstock']!.slice(2));
    const rmTsn = p50(rmTotal['benchtsn']!.slice(2));
    const rmStock = p50(rmTotal['benchstock']!.slice(2));
    // The same rounds, wrapped and not, with a resident engine serving the plugin's state
    // directory (its drift repair on, as deployed): the shim hands each call to it.
    const engine = await startEngineProcess(process.env['TSNETLINK_STATE_DIR'] || '/run/tsnetlink');
    const viaEngine = { add: NaN, del: NaN, run: NaN, rm: NaN, stockAdd: NaN, stockDel: NaN, stockRun: NaN, stockRm: NaN };
    let engineDrift = 'unknown';
    try {
      const before = readFileSync(log, 'utf8').split('\n').filter(Boolean).length;
      plugins(true);
      for (let i = 0; i < n + 1; i++) for (const net of i % 2 ? ['benchstock', 'benchtsn'] : ['benchtsn', 'benchstock']) once(net, 200 + i);
      const ecalls = readFileSync(log, 'utf8').split('\n').filter(Boolean).slice(before).map((l) => l.split(' '));
      const etimes = (cmd: string, p: string): number[] => ecalls.filter((c) => c[0] === cmd && c[1] === p).map((c) => Number(c[2]) / 1000).slice(1);
      const echain = (cmd: string): number[] => {
        const per = WRAPPED.map((p) => etimes(cmd, p));
        return per[0]!.map((_, i) => per.reduce((sum, t) => sum + (t[i] ?? NaN), 0));
      };
      Object.assign(viaEngine, { add: p50(etimes('ADD', 'tsnetlink')), del: p50(etimes('DEL', 'tsnetlink')), stockAdd: p50(echain('ADD')), stockDel: p50(echain('DEL')) });
      plugins(false);
      for (const k of Object.keys(total)) total[k] = [];
      for (const k of Object.keys(rmTotal)) rmTotal[k] = [];
      for (let i = 0; i < n + 1; i++) for (const net of i % 2 ? ['benchstock', 'benchtsn'] : ['benchtsn', 'benchstock']) once(net, 300 + i);
      Object.assign(viaEngine, { run: p50(total['benchtsn']!.slice(2)), rm: p50(rmTotal['benchtsn']!.slice(2)), stockRun: p50(total['benchstock']!.slice(2)), stockRm: p50(rmTotal['benchstock']!.slice(2)) });
      // What the engine's drift watcher did meanwhile (the stock chain's iptables commits are another process's changes).
      const st = spawnSync('curl', ['-s', '--max-time', '5', '--unix-socket', join(process.env['TSNETLINK_STATE_DIR'] || '/run/tsnetlink', 'engine.sock'), 'http://tsnetlink/v1/status'], { encoding: 'utf8' });
      try {
        const d = (JSON.parse(st.stdout) as { drift?: { triggers: number; checks: number; repairs: number } }).drift;
        if (d) engineDrift = `${d.triggers} events, ${d.checks} checks, ${d.repairs} repairs`;
      } catch {
        // curl missing or no answer: unknown
      }
    } finally {
      await stopEngineProcess(engine.proc);
    }
    // VERSION as Podman sends it, and the start cost of Node with and without the bundle.
    const venv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', CNI_COMMAND: 'VERSION', CNI_PATH: STOCK, CNI_IFNAME: 'dummy', CNI_NETNS: 'dummy', CNI_CONTAINERID: 'dummy' };
    const vin = '{"cniVersion":"1.0.0"}';
    const vShim = p50(timeExec([PLUGIN], venv, vin, versionN));
    const vGo = p50(timeExec([join(STOCK, 'bridge')], venv, vin, versionN));
    const bundle = join(ROOT, 'dist/bundle/tsnetlink-cni.js');
    const modules = join(ROOT, 'dist/src/cni/main.js');
    const vBundle = p50(timeExec([process.execPath, bundle], venv, vin, versionN));
    const vModules = p50(timeExec([process.execPath, modules], venv, vin, versionN));
    // STATUS goes through config parsing and the bridge layer's imports, without touching state.
    const senv = { ...venv, CNI_COMMAND: 'STATUS' };
    const sconf = JSON.stringify({ cniVersion: '1.1.0', name: 'benchstatus', type: 'tsnetlink', ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.97.0.0/24' }]] } });
    const sBundle = p50(timeExec([process.execPath, bundle], senv, sconf, versionN));
    const sModules = p50(timeExec([process.execPath, modules], senv, sconf, versionN));
    lines.push(
      `CNI plugin in Podman's flow: one container with -p 8080:80, ${n} runs per side interleaved, medians`,
      table(
        ['', 'tsnetlink', 'stock chain', 'ratio'],
        [
          ['ADD (plugin calls)', fmtMs(addTsn), fmtMs(addStock), (addTsn / addStock).toFixed(2)],
          ['DEL (plugin calls)', fmtMs(delTsn), fmtMs(delStock), (delTsn / delStock).toFixed(2)],
          ['podman run -d -p 8080:80', fmtMs(runTsn), fmtMs(runStock), (runTsn / runStock).toFixed(2)],
          ['podman rm -f (incl. DEL)', fmtMs(rmTsn), fmtMs(rmStock), (rmTsn / rmStock).toFixed(2)],
          ['VERSION (sh shim / Go bridge)', fmtMs(vShim), fmtMs(vGo), (vShim / vGo).toFixed(2)],
          ['with an engine: ADD (plugin calls)', fmtMs(viaEngine.add), fmtMs(viaEngine.stockAdd), (viaEngine.add / viaEngine.stockAdd).toFixed(2)],
          ['with an engine: DEL (plugin calls)', fmtMs(viaEngine.del), fmtMs(viaEngine.stockDel), (viaEngine.del / viaEngine.stockDel).toFixed(2)],
          ['with an engine: podman run -d -p', fmtMs(viaEngine.run), fmtMs(viaEngine.stockRun), (viaEngine.run / viaEngine.stockRun).toFixed(2)],
          ['with an engine: podman rm -f', fmtMs(viaEngine.rm), fmtMs(viaEngine.stockRm), (viaEngine.rm / viaEngine.stockRm).toFixed(2)],
        ],
      ),
      `  (with an engine: rounds of their own, interleaved stock/tsnetlink as above, the engine serving the plugin's state directory; its drift watcher meanwhile: ${engineDrift})`,
      `  stock chain ADD/DEL per plugin (ms): ${perPlugin}`,
      `  node start: VERSION bundle ${fmtMs(vBundle)} ms vs modules ${fmtMs(vModules)} ms; STATUS (imports the bridge layer) bundle ${fmtMs(sBundle)} ms vs modules ${fmtMs(sModules)} ms`,
    );
    const verdicts = [
      verdict("tsnetlink ADD / stock chain ADDs (bridge+portmap+firewall+tuning), Podman's flow", addTsn / addStock, 1.0, 'max', 'x'),
      verdict('tsnetlink DEL / stock chain DELs', delTsn / delStock, 0.5, 'max', 'x'),
      verdict('tsnetlink VERSION (as runtimes call it)', vShim, 50, 'max', 'ms', `Go bridge plugin: ${fmtMs(vGo)} ms`),
      verdict('podman run -d -p 8080:80 on tsnetlink / on the stock chain', runTsn / runStock, 1.0, 'max', 'x'),
      verdict("with an engine: tsnetlink ADD / stock chain ADDs, Podman's flow", viaEngine.add / viaEngine.stockAdd, 0.3, 'max', 'x'),
      verdict('with an engine: tsnetlink DEL / stock chain DELs', viaEngine.del / viaEngine.stockDel, 0.3, 'max', 'x'),
      verdict('with an engine: podman run -d -p 8080:80 on tsnetlink / on the stock chain', viaEngine.run / viaEngine.stockRun, 0.9, 'max', 'x'),
    ];
    const json = {
      n,
      add: { tsnetlink: round(addTsn), stock: round(addStock) },
      del: { tsnetlink: round(delTsn), stock: round(delStock) },
      podmanRun: { tsnetlink: round(runTsn), stock: round(runStock) },
      podmanRm: { tsnetlink: round(rmTsn), stock: round(rmStock) },
      withEngine: { ...Object.fromEntries(Object.entries(viaEngine).map(([k, v]) => [k, round(v)])), drift: engineDrift },
      version: { shim: round(vShim), goBridge: round(vGo), nodeBundle: round(vBundle), nodeModules: round(vModules) },
      status: { nodeBundle: round(sBundle), nodeModules: round(sModules) },
    };
    return { lines, verdicts, json };
  } finally {
    try {
      podman.cmd('network', 'rm', '-f', 'benchstock', 'benchtsn');
    } catch {
      // cleanup below removes the containers anyway
    }
    podman.cleanup();
  }
}
