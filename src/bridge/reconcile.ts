/**
 * The reconciler: makes records, kernel objects and the firewall agree again, whatever crashed
 * or raced. Every kernel object tsnetlink makes carries a tag (the link alias
 * "tsnetlink/NETWORK[/ID]", the rule comment "tsnetlink:NAME"), so it is found even when no
 * record of it survived; every record names the kernel objects it owns. Holding the locks an
 * operation holds, anything half-done that is found belongs to an operation that died.
 *
 * prune: settles interrupted operations, frees endpoints whose container is gone, and removes
 * whatever no record owns (tagged links, IPs, host ports, markers, temp files, rules).
 * repair: prune, then re-creates what records call for (bridge, its address, MAC and sysctls,
 * enslaved host veths, IP forwarding, every rule).
 * check: reports every disagreement, changing nothing.
 */
import type { Link, RtnlPromises } from '../netlink/route/rtnl.js';
import * as L from '../netlink/route/link.js';
import * as N from '../netlink/route/neigh.js';
import { Ipam } from './ipam.js';
import { removeFile } from '../sys/fsio.js';
import { desiredFirewall, DUMP_RETRIES, type BridgeContext } from './context.js';
import { FORWARDING, bridgeSysctls, settleNetworks } from './lifecycle.js';
import { bridgeTag, bridgeUpRequests, createBridge, endpointTag, listTaggedLinks } from './links.js';
import { portOwner, teardownEndpoints } from './teardown.js';
import { applyShaping, listTaggedIfbs, shapingProblems } from './shaping.js';
import { subnetsOf, type NetworkRecord } from './records.js';
import { endpointProblems, expectedPortKeys, networkProblems, reservationsOf } from './health.js';
import { RoutedFirewall } from '../firewall/router.js';
import type { BackendName } from '../firewall/registry.js';

/** Runs `fn` with every backend the host can run consulted (rules may linger on one no record names). */
function probing<T>(ctx: BridgeContext, fn: () => Promise<T>): Promise<T> {
  return ctx.firewall instanceof RoutedFirewall ? ctx.firewall.probingAll(fn) : fn();
}

/** What a prune or repair did, in words, and which endpoints it freed. */
export interface ReconcileReport {
  /** One line per change: "freed endpoint c1 of testbridge (its container is gone)". */
  actions: string[];
  /** Ids of endpoints freed because their container is gone or their connect died. */
  pruned: string[];
  /** Problems it could not fix (a foreign link holding a bridge's name, an unreadable network record). */
  problems: string[];
}

interface Scan {
  /** Every host link by name. */
  links: Map<string, Link>;
  bridges: Map<string, Link>;
  veths: Map<string, Link>;
  /** Tagged ifb devices of rate-limited endpoints, by "network/id". */
  ifbs: Map<string, Link>;
}

/** Every host link, dumped through the promise API (a host with thousands of links takes tens of ms). */
async function scan(ctx: BridgeContext): Promise<Scan> {
  const all = await ctx.withHostPromises((rt) => rt.linkList({}, { retries: DUMP_RETRIES }));
  return { links: new Map(all.map((l) => [l.name, l])), ...listTaggedLinks(all), ifbs: listTaggedIfbs(all) };
}

/**
 * Prune (and, with `repair`, repair) every network. Takes the global lock, then each network's
 * lock in turn, then the firewall lock for the rules.
 */
export async function reconcile(ctx: BridgeContext, opts: { repair: boolean; network?: string }): Promise<ReconcileReport> {
  const report: ReconcileReport = { actions: [], pruned: [], problems: [] };
  return probing(ctx, () => ctx.store.withGlobalLock(async () => {
    for (const f of ctx.store.globalTempFiles()) if (removeFile(f)) report.actions.push(`removed the temp file ${f} of an interrupted write`);
    report.actions.push(...(await settleNetworks(ctx)));
    // Networks are created and removed under the global lock we hold: a directory without a
    // record is what a killed create or rm left; its lock is taken so a connect that is looking
    // for the (missing) network finishes first.
    for (const name of ctx.store.orphanNetworkDirs()) {
      await ctx.store.withNetworkLock(name, () => {
        if (!ctx.store.hasNetwork(name)) ctx.store.clearNetworkDir(name);
      });
      report.actions.push(`removed the state directory of network ${name}, which has no record (a create or rm was interrupted)`);
    }
    const listing = ctx.store.listNetworks();
    for (const c of listing.corrupt) report.problems.push(`network record ${c.path} is unreadable (${c.error.message}); tsnetlink network rm --force ${c.name} removes the network`);
    const known = new Set([...listing.records.map((n) => n.name), ...listing.corrupt.map((c) => c.name)]);
    // Networks change only under the global lock we hold, so this scan may judge links of
    // networks that have no record; endpoints change under their network's lock, so each
    // network is judged on a scan taken once its lock is held (an endpoint connected meanwhile
    // must never look like one whose container died).
    const s = await scan(ctx);
    // Bridges and veths tagged for a network that has no record: a create or rm died before it
    // could write or after it removed the record.
    const orphans = [
      ...[...s.bridges].filter(([net]) => !known.has(net)).map(([, l]) => l.name),
      ...[...s.veths].filter(([k]) => !known.has(k.split('/')[0]!)).map(([, l]) => l.name),
      ...[...s.ifbs].filter(([k]) => !known.has(k.split('/')[0]!)).map(([, l]) => l.name),
    ];
    if (orphans.length > 0) {
      await ctx.deleteHostLinks(orphans);
      report.actions.push(`deleted links of networks that no longer exist: ${orphans.join(', ')}`);
    }
    const nets = listing.records.filter((n) => opts.network === undefined || n.name === opts.network);
    for (const net of nets) {
      await ctx.store.withNetworkLock(net.name, async () => {
        await reconcileNetwork(ctx, net, await scan(ctx), report);
        if (opts.repair) {
          const sc = await scan(ctx);
          await ctx.withHostPromises((rt) => ensureNetwork(ctx, rt, net, sc, report));
        }
      });
    }
    // Host ports held for networks that no longer exist.
    ctx.store.withPortsLockSync(() => {
      for (const p of ctx.store.listPorts()) {
        const net = p.owner.split('/')[0] ?? '';
        if (!known.has(net)) {
          ctx.store.removePortReservation(p);
          report.actions.push(`freed host port ${p.protocol}/${p.hostPort} on ${p.hostIp} held for ${p.owner || 'no one'}`);
        }
      }
    });
    for (const family of [4, 6] as const) {
      const fwd = FORWARDING[family];
      const wanted = listing.records.some((n) => !n.internal && n.subnets.some((s) => s.family === family));
      if (opts.repair && wanted && ctx.host.readSysctl(fwd.path) === '0') {
        // Turned on here as network create turns it on: with the FORWARD DROP guard.
        ctx.store.addForwardGuard(family);
        ctx.host.writeSysctl({ path: fwd.path, value: '1' });
        report.actions.push(`${fwd.name} was 0: set to 1`);
      }
    }
    await ctx.store.withFirewallLock(async () => {
      if (listing.corrupt.length > 0) {
        // Rewriting from the readable records would delete the unreadable network's rules.
        report.problems.push(`firewall not rewritten: the record of network ${listing.corrupt.map((c) => c.name).join(', ')} is unreadable, and its rules are kept exactly as they are until the record is restored or the network removed (tsnetlink network rm --force NAME)`);
        return;
      }
      if (opts.repair) migrate(ctx, report);
      if (opts.repair) {
        for (const family of await missingForwardGuards(ctx, listing.records)) {
          await ctx.firewall.dropUnmatchedForwarding(family);
          report.actions.push(`${family === 4 ? 'FORWARD' : 'IPv6 FORWARD'} policy was ACCEPT: set to DROP again (tsnetlink set it when it turned forwarding on)`);
        }
      }
      const desired = desiredFirewall(ctx.store);
      const diff = await ctx.firewall.diff(desired);
      if (diff.length === 0) return;
      await ctx.firewall.apply(desired);
      report.actions.push(`firewall rules rewritten (${diff.length} differences: ${diff.slice(0, 5).map((d) => `${d.kind} ${d.what}`).join('; ')}${diff.length > 5 ? '; ...' : ''})`);
    });
    return report;
  }));
}

/**
 * Moves every network to the backend chosen for this repair (an option or $TSNETLINK_FIREWALL):
 * the records first, under the firewall lock, so the rewrite that follows builds the rules on
 * the new backend (before the old one is cleaned). A repair killed in between leaves records
 * that name either backend; each network's rules are then rebuilt where its record says, and
 * the next repair with the same choice finishes the move.
 */
function migrate(ctx: BridgeContext, report: ReconcileReport): void {
  const fw = ctx.firewall;
  if (!(fw instanceof RoutedFirewall) || fw.explicit === undefined) return;
  for (const n of ctx.store.listNetworks().records) {
    if (n.firewall === fw.explicit) continue;
    // The router was made by the registry from a name it checked (chosenBackend).
    ctx.store.putNetwork({ ...n, firewall: fw.explicit as BackendName });
    report.actions.push(`network ${n.name}: firewall backend ${n.firewall} -> ${fw.explicit}`);
  }
}

/**
 * One network, under its lock: interrupted connects are undone and disconnects finished,
 * endpoints whose host veth is gone (their container died) are freed, unreadable endpoint
 * records are cleared, and IPs, markers, host ports and tagged veths that no record owns go.
 */
async function reconcileNetwork(ctx: BridgeContext, net: NetworkRecord, s: Scan, report: ReconcileReport): Promise<void> {
  for (const f of ctx.store.networkTempFiles(net.name)) if (removeFile(f)) report.actions.push(`removed the temp file ${f} of an interrupted write`);
  // With the network lock held exclusive no operation holds an endpoint lock: a lock file is what
  // a killed one left (a live one removes its own before it lets go).
  for (const id of ctx.store.endpointLockIds(net.name)) {
    if (ctx.store.removeEndpointLock(net.name, id)) report.actions.push(`removed the lock file of endpoint ${id} on ${net.name}, left by an operation that was killed`);
  }
  const listing = ctx.store.listEndpoints(net.name);
  const dead = listing.records.filter((r) => r.state !== 'active');
  const gone = listing.records.filter((r) => r.state === 'active' && !s.links.has(r.hostIfname));
  await teardownEndpoints(ctx, net, dead, { verifyTag: true, operation: `prune ${net.name}` });
  for (const r of dead) report.actions.push(`${r.state === 'creating' ? 'undid the interrupted connect' : 'finished the interrupted disconnect'} of endpoint ${r.id} on ${net.name}`);
  await teardownEndpoints(ctx, net, gone, { operation: `prune ${net.name}` });
  for (const r of gone) report.actions.push(`freed endpoint ${r.id} of ${net.name} (its container is gone)`);
  report.pruned.push(...dead.map((r) => r.id), ...gone.map((r) => r.id));
  for (const c of listing.corrupt) {
    removeFile(c.path);
    report.actions.push(`removed the unreadable endpoint record ${c.path} (${c.error.message})`);
    report.pruned.push(c.name);
  }
  const live = new Set(listing.records.filter((r) => r.state === 'active' && s.links.has(r.hostIfname)).map((r) => r.id));
  const strayVeths = [...s.veths].filter(([k]) => k.startsWith(`${net.name}/`) && !live.has(k.slice(net.name.length + 1))).map(([, l]) => l.name);
  if (strayVeths.length > 0) {
    await ctx.deleteHostLinks(strayVeths);
    report.actions.push(`deleted veths of ${net.name} that no endpoint owns: ${strayVeths.join(', ')}`);
  }
  // An ifb is kept only for a live endpoint that limits its outgoing traffic.
  const limited = new Set(listing.records.filter((r) => live.has(r.id) && r.bandwidth?.egress).map((r) => r.id));
  const strayIfbs = [...s.ifbs].filter(([k]) => k.startsWith(`${net.name}/`) && !limited.has(k.slice(net.name.length + 1))).map(([, l]) => l.name);
  if (strayIfbs.length > 0) {
    await ctx.deleteHostLinks(strayIfbs);
    report.actions.push(`deleted ifb devices of ${net.name} that no rate-limited endpoint owns: ${strayIfbs.join(', ')}`);
  }
  // Owners of what is freed below: connects that died before writing their record.
  const orphans = new Set<string>();
  // Addresses the records of live endpoints name: a reservation of one of them is never freed
  // (that would hand a live address out again), it is written back.
  const held = new Map<string, string>();
  for (const r of listing.records) if (live.has(r.id)) for (const a of r.addresses) held.set(a.ip, r.id);
  for (const sub of subnetsOf(net)) {
    const ipam = new Ipam(ctx.store, net.name, sub);
    const owners = new Map(ipam.list().map((a) => [a.ip, a.endpointId]));
    const { freed, restored } = ipam.gc((id) => live.has(id), (ip) => held.get(ip));
    for (const ip of freed) {
      report.actions.push(`freed ${ip} on ${net.name} (no endpoint holds it)`);
      orphans.add(owners.get(ip) ?? '');
    }
    for (const r of [...restored, ...ipam.restoreMissing(held)]) report.actions.push(`restored the reservation of ${r.ip} on ${net.name} for endpoint ${r.endpointId}, which holds it (the reservation was damaged)`);
  }
  for (const m of ctx.store.listMarkers(net.name)) {
    if (!live.has(m.owner)) {
      ctx.store.removeMarker(net.name, m.netnsKey);
      report.actions.push(`removed the container claim ${m.netnsKey} on ${net.name} (no endpoint holds it)`);
      orphans.add(m.owner);
    }
  }
  const liveRecs = new Map(listing.records.filter((r) => live.has(r.id)).map((r) => [r.id, r]));
  ctx.store.withPortsLockSync(() => {
    // A live endpoint's published port keeps its reservation: one emptied, given to no one or
    // deleted is written back, so that no other endpoint can be given the same host port.
    for (const [id, rec] of liveRecs) {
      for (const m of rec.mappings) {
        const want = portOwner(net.name, id);
        const key = { protocol: m.protocol, hostPort: m.hostPort, hostIp: m.hostIp ?? '0.0.0.0' };
        const cur = ctx.store.portHolders(key).find((h) => h.hostIp === key.hostIp);
        if (cur?.owner === want) continue;
        if (cur && cur.owner !== '' && ctx.store.hasNetwork(cur.owner.split('/')[0] ?? '')) continue; // another's claim: check reports the clash
        ctx.store.putPortReservation(key, want);
        report.actions.push(`restored the host port reservation ${key.protocol}/${key.hostPort} on ${key.hostIp} for ${want}, which publishes it (the reservation was damaged)`);
      }
    }
    for (const p of ctx.store.listPorts()) {
      if (!p.owner.startsWith(`${net.name}/`)) continue;
      const rec = liveRecs.get(p.owner.slice(net.name.length + 1));
      const held = rec?.mappings.some((m) => m.protocol === p.protocol && m.hostPort === p.hostPort && (m.hostIp ?? '0.0.0.0') === p.hostIp);
      if (!held) {
        ctx.store.removePortReservation(p);
        report.actions.push(`freed host port ${p.protocol}/${p.hostPort} on ${p.hostIp} (held for ${p.owner}, which does not publish it)`);
        if (!rec) orphans.add(p.owner.slice(net.name.length + 1));
      }
    }
  });
  for (const id of orphans) if (id !== '' && !report.pruned.includes(id)) report.pruned.push(id);
}

/**
 * Repair of one network, under its lock: the bridge, its tag, MAC, address, sysctls, up; host
 * veths enslaved and up. Its requests go through the promise API on `rt`, since a link deletion
 * elsewhere holds the RTNL lock through its RCU wait; rate limits, rare, stay synchronous.
 */
async function ensureNetwork(ctx: BridgeContext, rt: RtnlPromises, net: NetworkRecord, s: Scan, report: ReconcileReport): Promise<void> {
  let br = s.links.get(net.bridge);
  if (br && br.kind !== 'bridge') {
    report.problems.push(`the link ${net.bridge} of network ${net.name} is a ${br.kind ?? 'non-bridge'} link, not ours; rename or delete it, then run repair again`);
    return;
  }
  const reqs = [];
  let index: number;
  if (!br) {
    index = await createBridge(rt, net);
    ctx.forgetBridge(net.name);
    report.actions.push(`re-created the missing bridge ${net.bridge}`);
  } else {
    index = br.index;
    if (br.alias !== bridgeTag(net.name)) reqs.push(L.setAliasRequest(index, bridgeTag(net.name)));
    if (br.mac !== net.mac) {
      reqs.push(L.setMacRequest(index, net.mac));
      report.actions.push(`bridge ${net.bridge}: MAC ${br.mac ?? 'none'} -> ${net.mac}`);
    }
    if (!br.up) report.actions.push(`bridge ${net.bridge} was down: brought up`);
  }
  for (const sc of bridgeSysctls(net)) {
    const cur = ctx.host.readSysctl(sc.path);
    if (cur !== undefined && cur !== sc.value) {
      ctx.host.writeSysctl(sc);
      report.actions.push(`${sc.path.replace(/\//g, '.')}: ${cur} -> ${sc.value}`);
    }
  }
  for (const sub of net.subnets) {
    const addrs = await rt.addrList({ link: index, family: sub.family });
    if (!addrs.some((a) => a.address === sub.gateway && a.prefix === sub.prefix)) report.actions.push(`bridge ${net.bridge}: gateway address ${sub.gateway}/${sub.prefix} restored`);
  }
  reqs.push(...bridgeUpRequests(net, index));
  for (const r of await rt.batch(reqs)) if (r.error) throw r.error;
  br = await rt.linkGet(index);
  // The bridge lost its carrier if it was down or missing, or a port was out of it or down.
  let carrierLost = s.links.get(net.bridge)?.up !== true;
  for (const e of ctx.store.listEndpoints(net.name).records) {
    const v = s.links.get(e.hostIfname);
    if (!v) continue;
    const fix = [];
    if (v.master !== index) fix.push(L.setMasterRequest(v.index, index));
    if (v.alias !== endpointTag(net.name, e.id)) fix.push(L.setAliasRequest(v.index, endpointTag(net.name, e.id)));
    if (!v.up || v.master !== index) fix.push(L.setUpRequest(v.index));
    if (fix.length === 0) continue;
    for (const r of await rt.batch(fix)) if (r.error) throw r.error;
    if (!v.up || v.master !== index) carrierLost = true;
    report.actions.push(`host veth ${e.hostIfname} of endpoint ${e.id}: ${v.master !== index ? `enslaved to ${net.bridge}` : 'brought up'}`);
  }
  if (carrierLost) await refreshNeighbours(ctx, rt, net, index);
  // Port flags need the port enslaved first.
  const flags = ctx.store.listEndpoints(net.name).records.filter((e) => s.links.has(e.hostIfname)).map((e) => L.setBridgePortRequest(e.hostIfname, { hairpin: e.mappings.length > 0 ? 1 : 0, isolated: net.icc ? 0 : 1 }));
  for (const r of await rt.batch(flags)) if (r.error && r.error.code !== 'ENODEV') throw r.error;
  // Rate limits someone removed or changed (tc qdisc del, a deleted ifb) are applied again.
  for (const e of ctx.store.listEndpoints(net.name).records) {
    const v = s.links.get(e.hostIfname);
    if (!v || !e.bandwidth || e.state !== 'active') continue;
    const problems = shapingProblems(ctx.rtnl, `endpoint ${net.name}/${e.id}`, net.name, e.id, v, e.bandwidth, s.links);
    if (problems.length === 0) continue;
    applyShaping(ctx.rtnl, net.name, e.id, e.hostIfname, e.bandwidth, v.mtu);
    report.actions.push(`rate limits of endpoint ${e.id} on ${net.name} applied again (${problems.map((p) => p.slice(p.indexOf(': ') + 2)).join('; ')})`);
  }
}

/**
 * After the bridge got its ports back: a bridge without carrier has its neighbour entries
 * flushed, and a packet sent to a container meanwhile leaves an INCOMPLETE entry whose next
 * solicitation comes only after the retransmit time (1 s by default), so a published port would
 * stay dead that long after the repair. Such an entry (or a FAILED one) of an endpoint's address
 * is given the MAC its record names, as STALE: the queued packets go out at once, and the kernel
 * confirms the address as for any stale entry.
 */
async function refreshNeighbours(ctx: BridgeContext, rt: RtnlPromises, net: NetworkRecord, bridge: number): Promise<void> {
  const unresolved = new Set((await rt.neighList({ link: bridge })).filter((n) => n.dst !== undefined && n.states.some((x) => x === 'incomplete' || x === 'failed')).map((n) => n.dst!));
  if (unresolved.size === 0) return;
  const reqs = ctx.store.listEndpoints(net.name).records
    .filter((e) => e.state === 'active')
    .flatMap((e) => e.addresses.filter((a) => unresolved.has(a.ip)).map((a) => N.replaceNeighRequest({ dst: a.ip, link: bridge, lladdr: e.mac, state: 'stale' })));
  // A failure here leaves the kernel to resolve the address itself, as before.
  await rt.batch(reqs);
}

/** Runs `fn` holding every named network's lock at once, taken in name order. */
async function withNetworkLocks<T>(ctx: BridgeContext, names: readonly string[], fn: () => Promise<T>): Promise<T> {
  const [first, ...rest] = [...names].sort();
  if (first === undefined) return fn();
  return ctx.store.withNetworkLock(first, () => withNetworkLocks(ctx, rest, fn));
}

/**
 * Every disagreement between records, kernel state, state files and the firewall, in words;
 * [] when they agree exactly. Changes nothing. A snapshot: it holds the global lock, every
 * network's lock and then the firewall lock, so no operation is half-way while it looks.
 */
export async function checkConsistency(ctx: BridgeContext): Promise<string[]> {
  const out: string[] = [];
  return probing(ctx, () => ctx.store.withGlobalLock(async () => {
    const listing = ctx.store.listNetworks();
    return withNetworkLocks(ctx, listing.records.map((n) => n.name), async () => {
      for (const c of listing.corrupt) out.push(`unreadable network record ${c.path}`);
      for (const f of ctx.store.globalTempFiles()) out.push(`temp file ${f}`);
      for (const name of ctx.store.orphanNetworkDirs()) out.push(`state directory of network ${name} without a record (a create or rm was interrupted; prune removes it)`);
      const s = await scan(ctx);
      const names = new Set(listing.records.map((n) => n.name));
      for (const [net, l] of s.bridges) if (!names.has(net)) out.push(`bridge ${l.name} tagged for network ${net}, which has no record`);
      for (const [k, l] of s.veths) if (!names.has(k.split('/')[0]!)) out.push(`veth ${l.name} tagged for ${k}, whose network has no record`);
      for (const [k, l] of s.ifbs) if (!names.has(k.split('/')[0]!)) out.push(`ifb ${l.name} tagged for ${k}, whose network has no record`);
      const expectedPorts = new Set<string>();
      for (const net of listing.records) checkNetwork(ctx, net, s, out, expectedPorts);
      for (const p of ctx.store.listPorts()) {
        const k = `${p.owner} ${p.protocol}/${p.hostPort}/${p.hostIp}`;
        if (!expectedPorts.has(k)) out.push(`host port reservation ${p.path} held for ${p.owner || 'no one'} without a matching mapping`);
        expectedPorts.delete(k);
      }
      for (const k of expectedPorts) out.push(`mapping without a host port reservation: ${k}`);
      // With an unreadable network record the desired rules are unknown: the rules are not compared.
      const fw = listing.corrupt.length > 0 ? [] : await ctx.store.withFirewallLock(async () => ctx.firewall.diff(desiredFirewall(ctx.store)));
      if (listing.corrupt.length > 0) out.push(`firewall not compared: the record of network ${listing.corrupt.map((c) => c.name).join(', ')} is unreadable`);
      for (const d of fw) out.push(`firewall: ${d.kind} ${d.what}`);
      for (const family of await ctx.store.withFirewallLock(() => missingForwardGuards(ctx, listing.records))) {
        out.push(`firewall: ${family === 4 ? 'FORWARD' : 'IPv6 FORWARD'} policy is ACCEPT, but tsnetlink set DROP when it turned forwarding on (the host now routes between its other interfaces)`);
      }
      return out;
    });
  }));
}

/**
 * The families whose FORWARD DROP guard tsnetlink set (recorded in the host record) and still
 * needs (a network that forwards that family exists), but which the live ruleset no longer has.
 */
async function missingForwardGuards(ctx: BridgeContext, networks: readonly NetworkRecord[]): Promise<(4 | 6)[]> {
  const out: (4 | 6)[] = [];
  for (const family of ctx.store.getHost().forwardGuard) {
    const wanted = networks.some((n) => !n.internal && n.subnets.some((s) => s.family === family));
    if (wanted && !(await ctx.firewall.forwardingDropped(family))) out.push(family);
  }
  return out;
}

function checkNetwork(ctx: BridgeContext, net: NetworkRecord, s: Scan, out: string[], expectedPorts: Set<string>): void {
  const n = net.name;
  out.push(...networkProblems(ctx, net, s.links));
  for (const f of ctx.store.networkTempFiles(n)) out.push(`temp file ${f}`);
  for (const id of ctx.store.endpointLockIds(n)) out.push(`lock file of endpoint ${id} on ${n}, left by an operation that was killed`);
  const listing = ctx.store.listEndpoints(n);
  for (const c of listing.corrupt) out.push(`unreadable endpoint record ${c.path}`);
  const ipam = reservationsOf(ctx, net);
  const markers = ctx.store.listMarkers(n);
  const seen = { ip: new Map<string, string>(), mac: new Map<string, string>(), veth: new Map<string, string>() };
  const ids = new Set<string>();
  for (const e of listing.records) {
    ids.add(e.id);
    for (const [kind, value] of [...e.addresses.map((a) => ['ip', a.ip] as const), ['mac', e.mac], ['veth', e.hostIfname]] as const) {
      const other = seen[kind].get(value);
      if (other !== undefined) out.push(`duplicate ${kind} ${value}: endpoints ${other} and ${e.id} of ${n}`);
      seen[kind].set(value, e.id);
    }
    out.push(...endpointProblems(ctx, net, e, s.links, ipam));
    if (!markers.some((m) => m.netnsKey === e.netnsKey && m.owner === e.id)) out.push(`endpoint ${n}/${e.id}: container claim missing`);
    for (const k of expectedPortKeys(n, e)) expectedPorts.add(k);
  }
  for (const a of ipam) if (!ids.has(a.endpointId)) out.push(`address ${a.ip} on ${n} reserved for ${a.endpointId || 'no one'}, which has no record`);
  for (const m of markers) if (!ids.has(m.owner)) out.push(`container claim ${m.netnsKey} on ${n} held for ${m.owner || 'no one'}, which has no record`);
  for (const [k, l] of s.veths) {
    if (k.startsWith(`${n}/`) && !listing.records.some((e) => e.hostIfname === l.name)) out.push(`veth ${l.name} tagged ${k} without a record`);
  }
  for (const [k, l] of s.ifbs) {
    if (k.startsWith(`${n}/`) && !listing.records.some((e) => `${n}/${e.id}` === k && e.bandwidth?.egress)) out.push(`ifb ${l.name} tagged ${k} without a rate-limited endpoint`);
  }
}

