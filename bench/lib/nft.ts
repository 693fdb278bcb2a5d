/**
 * Firewall-backend rows of the bench, each a ratio against a peer in the same run:
 * connect with and without one port mapping on the native nf_tables backend and on the
 * iptables-restore one (interleaved, so both see the same machine), `nft -f` adding the same
 * map element for scale, one mapping change with 10,000 mappings in place against 1 (through
 * the Firewall interface, since a bridge holds at most 1023 ports), connectMany of N
 * containers with a mapping each against N single connects, and network create / rm.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Networks, createNamedNetns, deleteNamedNetns } from '../../src/index.js';
import { NftablesFirewall } from '../../src/firewall/nftables/firewall.js';
import type { FirewallEndpoint, FirewallNetwork } from '../../src/firewall/types.js';
import { table, verdict, type Verdict } from './report.js';
import { fmtMs, round, summarize } from './stats.js';

type Backend = 'iptables' | 'nftables';
const BACKENDS: Backend[] = ['nftables', 'iptables'];

function p50(xs: number[]): number {
  return summarize(xs).p50;
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** One mapping change (add then remove one endpoint's element) with `inPlace` mappings held. */
async function mappingChange(inPlace: number, n: number): Promise<number> {
  const fw = new NftablesFirewall();
  const net: FirewallNetwork = { name: 'nftscale', bridge: 'nftscale0', subnet: '10.200.0.0/16' };
  const ep = (i: number): FirewallEndpoint => ({ id: `s${i}`, network: net.name, ip: `10.200.${(i >> 8) & 255}.${(i & 255) || 1}`, mappings: [{ hostPort: 20000 + (i % 40000), containerPort: 80, protocol: i < 40000 ? 'tcp' : 'udp' }] });
  try {
    await fw.setNetworks([net]);
    for (let i = 0; i < inPlace; i += 2000) await fw.addEndpoints(net, Array.from({ length: Math.min(2000, inPlace - i) }, (_, j) => ep(i + j)));
    const probe: FirewallEndpoint = { id: 'probe', network: net.name, ip: '10.200.255.254', mappings: [{ hostPort: 65000, containerPort: 80, protocol: 'tcp' }] };
    const ms: number[] = [];
    for (let i = 0; i < n + 2; i++) {
      const t = await timed(async () => {
        await fw.addEndpoints(net, [probe]);
        await fw.removeEndpoints([probe]);
      });
      if (i >= 2) ms.push(t);
    }
    return p50(ms);
  } finally {
    await fw.apply({ networks: [], endpoints: [] });
  }
}

/**
 * The firewall's share of connectMany: `n` endpoints' mappings added as `n` transactions (what
 * `n` single connects do) against one transaction for all (what connectMany does), and removed.
 */
async function firewallMany(n: number, rounds: number): Promise<{ singles: number; one: number }> {
  const fw = new NftablesFirewall();
  const net: FirewallNetwork = { name: 'nftmany', bridge: 'nftmany0', subnet: '10.201.0.0/16' };
  const eps = Array.from({ length: n }, (_, i): FirewallEndpoint => ({ id: `m${i}`, network: net.name, ip: `10.201.0.${i + 2}`, mappings: [{ hostPort: 21000 + i, containerPort: 80, protocol: 'tcp' }] }));
  const singles: number[] = [];
  const one: number[] = [];
  try {
    await fw.setNetworks([net]);
    for (let r = 0; r < rounds + 1; r++) {
      const a = await timed(async () => {
        for (const e of eps) await fw.addEndpoints(net, [e]);
      });
      await fw.removeEndpoints(eps);
      const b = await timed(() => fw.addEndpoints(net, eps));
      await fw.removeEndpoints(eps);
      if (r > 0) {
        singles.push(a);
        one.push(b);
      }
    }
    return { singles: p50(singles), one: p50(one) };
  } finally {
    await fw.apply({ networks: [], endpoints: [] });
    fw.close();
  }
}

/** Runs the rows; returns printable lines, verdicts and the figures as JSON. */
export async function nftBench(quick: boolean): Promise<{ lines: string[]; verdicts: Verdict[]; json: unknown }> {
  const cfg = quick ? { n: 10, many: 20, scale: 1000, scaleN: 10, nftN: 5 } : { n: 100, many: 100, scale: 10_000, scaleN: 50, nftN: 30 };
  const nets = new Map<Backend, Networks>(BACKENDS.map((b) => [b, new Networks({ stateDir: `/run/tsnetlink/nftbench-${b}`, firewall: b })]));
  const netName = (b: Backend) => (b === 'nftables' ? 'nftb0' : 'iptb0');
  const subnet = (b: Backend) => (b === 'nftables' ? '10.210.0.0/22' : '10.211.0.0/22');
  const nsNames = Array.from({ length: Math.max(cfg.many, 2) }, (_, i) => `nftbench${i}`);
  const created: string[] = [];
  const t: Record<string, number[]> = {};
  const add = (k: string, v: number) => (t[k] ??= []).push(v);
  let nftF = NaN;
  const dir = mkdtempSync(join(tmpdir(), 'nftbench-'));
  try {
    for (const n of nsNames) {
      createNamedNetns(n).close();
      created.push(n);
    }
    // Create and rm are timed on a network of their own, then the measured one stays.
    for (let i = 0; i < 3; i++) {
      for (const b of BACKENDS) {
        const nw = nets.get(b)!;
        add(`create ${b}`, await timed(() => nw.create({ name: `${netName(b)}x`, subnet: b === 'nftables' ? '10.212.0.0/24' : '10.213.0.0/24' })));
        add(`rm ${b}`, await timed(() => nw.remove(`${netName(b)}x`)));
      }
    }
    for (const b of BACKENDS) await nets.get(b)!.create({ name: netName(b), subnet: subnet(b) });
    // Rounds of connect and connect -p on each backend given, the first two rounds untimed.
    const rounds = async (backends: readonly Backend[], key: (b: Backend, mapping: boolean) => string): Promise<void> => {
      for (let i = 0; i < cfg.n + 2; i++) {
        for (const b of backends) {
          for (const mapping of [false, true]) {
            const nw = nets.get(b)!;
            let id = '';
            const ms = await timed(async () => (id = (await nw.connect(netName(b), { name: nsNames[0]! }, mapping ? { ports: ['18080:80'] } : {})).id));
            await nw.disconnect(netName(b), id);
            if (i >= 2) add(key(b, mapping), ms);
          }
        }
      }
    };
    // Interleaved: each round runs every variant once, so drift in the machine hits all alike.
    await rounds(BACKENDS, (b, mapping) => `connect${mapping ? ' -p' : ''} ${b}`);
    // The native backend alone: no other backend commits between its connects, as on a host where
    // nothing else changes the ruleset, so its check of the rules a mapping relies on is skipped.
    await rounds(['nftables'], (_b, mapping) => `alone connect${mapping ? ' -p' : ''}`);
    // nft -f adding and deleting one element of our own map, while the nftables network holds it.
    const file = join(dir, 'elem.nft');
    const ms: number[] = [];
    for (let i = 0; i < cfg.nftN + 2; i++) {
      writeFileSync(file, 'add element inet tsnetlink ports { tcp . 18081 : 10.210.0.250 . 80 }\n');
      const t0 = performance.now();
      const r = spawnSync('nft', ['-f', file], { encoding: 'utf8' });
      const took = performance.now() - t0;
      if (r.status !== 0) throw new Error(`nft -f: ${r.stderr}`);
      spawnSync('nft', ['delete', 'element', 'inet', 'tsnetlink', 'ports', '{ tcp . 18081 }']);
      if (i >= 2) ms.push(took);
    }
    nftF = p50(ms);
    // connectMany of N with a mapping each against N single connects, on the native backend.
    const nw = nets.get('nftables')!;
    const items = nsNames.slice(0, cfg.many).map((name, i) => ({ container: { name }, opts: { ports: [`${19000 + i}:80`] } }));
    add('singles', await timed(async () => {
      for (const it of items) await nw.connect(netName('nftables'), it.container, it.opts);
    }));
    await nw.disconnectMany(netName('nftables'), nw.inspect(netName('nftables')).endpoints.map((e) => e.id));
    add('many', await timed(() => nw.connectMany(netName('nftables'), items)));
    await nw.disconnectMany(netName('nftables'), nw.inspect(netName('nftables')).endpoints.map((e) => e.id));
    for (const b of BACKENDS) await nets.get(b)!.remove(netName(b), { force: true });
  } finally {
    for (const [b, nw] of nets) {
      for (const n of nw.list()) await nw.remove(n.name, { force: true }).catch(() => undefined);
      nw.close();
      rmSync(`/run/tsnetlink/nftbench-${b}`, { recursive: true, force: true });
    }
    for (const n of created) deleteNamedNetns(n);
    rmSync(dir, { recursive: true, force: true });
  }
  const fwMany = await firewallMany(cfg.many, quick ? 3 : 10);
  const one = await mappingChange(1, cfg.scaleN);
  const many = await mappingChange(cfg.scale, cfg.scaleN);
  const m = (k: string) => p50(t[k] ?? []);
  const q = quick ? ' (--quick: smaller counts than the target names)' : '';
  const lines = [
    `Firewall backends${quick ? ' --quick' : ''}: p50 ms, ${cfg.n} interleaved runs each`,
    table(
      ['what', 'nftables (native)', 'iptables-restore', 'iptables / native'],
      [
        ['connect, no mappings', fmtMs(m('connect nftables')), fmtMs(m('connect iptables')), `${(m('connect iptables') / m('connect nftables')).toFixed(2)}x`],
        ['connect -p 18080:80', fmtMs(m('connect -p nftables')), fmtMs(m('connect -p iptables')), `${(m('connect -p iptables') / m('connect -p nftables')).toFixed(2)}x`],
        ['network create', fmtMs(m('create nftables')), fmtMs(m('create iptables')), `${(m('create iptables') / m('create nftables')).toFixed(2)}x`],
        ['network rm', fmtMs(m('rm nftables')), fmtMs(m('rm iptables')), `${(m('rm iptables') / m('rm nftables')).toFixed(2)}x`],
      ],
    ),
    `  native backend alone (no other commit in between, ${cfg.n} runs): connect ${fmtMs(m('alone connect'))} ms, connect -p ${fmtMs(m('alone connect -p'))} ms = ${(m('alone connect -p') / m('alone connect')).toFixed(2)}x`,
    `  nft -f adding one element to the same map (process included): ${fmtMs(nftF)} ms = ${(nftF / m('connect -p nftables')).toFixed(2)}x a whole native connect -p`,
    `  one mapping change (add + remove an element, Firewall interface): ${fmtMs(one)} ms with 1 in place, ${fmtMs(many)} ms with ${cfg.scale}`,
    `  ${cfg.many} containers with a mapping each: ${fmtMs(m('singles'))} ms as single connects, ${fmtMs(m('many'))} ms as one connectMany (native)`,
    `  the firewall's part of it: ${cfg.many} mappings as ${cfg.many} transactions ${fmtMs(fwMany.singles)} ms, as one ${fmtMs(fwMany.one)} ms = ${(fwMany.singles / fwMany.one).toFixed(1)}x`,
  ];
  const verdicts = [
    verdict('native: connect -p / connect without mappings, p50', m('connect -p nftables') / m('connect nftables'), 1.15, 'max', 'x'),
    verdict('connect -p: iptables-restore / native, p50', m('connect -p iptables') / m('connect -p nftables'), 2, 'min', 'x'),
    verdict(`native: a mapping change with ${cfg.scale} mappings in place / with 1`, many / one, 1.1, 'max', 'x', quick ? `${cfg.scale}, not 10000${q}` : undefined),
    verdict(`native: connectMany of ${cfg.many} with one mapping each, throughput vs single connects`, m('singles') / m('many'), 4, 'min', 'x', quick ? `${cfg.many}, not 100${q}` : undefined),
  ];
  const json = { config: cfg, p50: Object.fromEntries(Object.keys(t).map((k) => [k, round(m(k))])), nftFileMs: round(nftF), mappingChangeMs: { one: round(one), many: round(many), inPlace: cfg.scale }, firewallManyMs: { singles: round(fwMany.singles), one: round(fwMany.one) } };
  return { lines, verdicts, json };
}
