/**
 * Removing endpoints, one routine for every path that does it: disconnect, network rm, prune of
 * a container that died, and the recovery of a connect or disconnect that was killed half-way.
 * Call it holding the network's lock.
 */
import { Ipam } from './ipam.js';
import { Steps } from './steps.js';
import { changeEndpointRules, fwEndpoint, type BridgeContext } from './context.js';
import { endpointTag, findLink, setLinksDownAsync } from './links.js';
import { subnetsOf, type EndpointRecord, type NetworkRecord } from './records.js';
import { ownIfbs } from './shaping.js';
import { turnDue, yieldTurn } from '../sys/turn.js';

/** The "<network>/<endpoint id>" that a host-port reservation names as its owner. */
export function portOwner(network: string, id: string): string {
  return `${network}/${id}`;
}

/**
 * Removes endpoints: marks them 'removing' (under the firewall lock when they publish ports, so a
 * concurrent rebuild leaves them out), removes their rules, deletes their host veths (the peers
 * go with them), forgets their tracked connections, then frees host ports, IP, container marker
 * and record, the record last. Every step is idempotent, so an interrupted teardown is finished
 * by running it again. With `verifyTag` (records of an operation that died), a veth is deleted
 * only if it is provably this endpoint's: tagged with its alias, or untagged and enslaved to the
 * network's bridge (a connect killed between creating and tagging it).
 */
export async function teardownEndpoints(ctx: BridgeContext, net: NetworkRecord, recs: readonly EndpointRecord[], opts: { verifyTag?: boolean; operation?: string } = {}): Promise<void> {
  if (recs.length === 0) return;
  if (turnDue()) await yieldTurn();
  const steps = new Steps(opts.operation ?? `disconnect from ${net.name}`, ctx.faults, 'disconnect');
  const mark = (): void => {
    for (const r of recs) {
      if (r.state !== 'removing') ctx.store.putEndpoint({ ...r, state: 'removing' });
    }
  };
  const published = recs.filter((r) => r.mappings.length > 0);
  if (published.length > 0) {
    await changeEndpointRules(
      ctx,
      net.name,
      () => steps.run('mark removing', mark),
      () => steps.runAsync('remove port mappings', () => ctx.firewall.removeEndpoints(published.map(fwEndpoint))),
    );
  } else steps.run('mark removing', mark);
  let names = recs.map((r) => r.hostIfname);
  if (opts.verifyTag) {
    // A connect killed before it tagged its veth left it untagged but enslaved to our bridge under
    // the random name its intent recorded: that is ours too. Anything else of that name is not.
    const bridge = findLink(ctx.rtnl, net.bridge)?.index;
    names = recs
      .filter((r) => {
        const l = findLink(ctx.rtnl, r.hostIfname);
        return l !== undefined && (l.alias === endpointTag(net.name, r.id) || (l.alias === undefined && l.kind === 'veth' && bridge !== undefined && l.master === bridge));
      })
      .map((r) => r.hostIfname);
  }
  // An endpoint's ifb (traffic from it, rate-limited) goes with it.
  names = [...names, ...ownIfbs(ctx.rtnl, net.name, recs.filter((r) => r.bandwidth?.egress).map((r) => r.id))];
  if (turnDue()) await yieldTurn();
  await steps.runAsync('delete veth', async () => {
    // Down first: no packet of the container crosses the bridge any more, so the flush of its
    // tracked connections can run during the deletion's RCU wait without missing a new one. Off
    // the JS thread like the deletion: a concurrent operation's deletion may hold the RTNL lock.
    await ctx.withHostPromises((rt) => setLinksDownAsync(rt, names));
    // A reused address must not receive a flow of the container that had it.
    await Promise.all([ctx.deleteHostLinks(names), ctx.firewall.forgetConnections({ ips: recs.flatMap((r) => r.addresses.map((a) => a.ip)) })]);
  });
  await steps.runAsync('release', async () => {
    const ipams = subnetsOf(net).map((sub) => new Ipam(ctx.store, net.name, sub));
    // Each part takes a lock file and reads or writes a record (a few dozen system calls in all):
    // the event loop may get a turn between them.
    for (const r of recs) {
      if (turnDue()) await yieldTurn();
      ctx.store.withPortsLockSync(() => r.mappings.forEach((m) => ctx.store.releasePort(m, portOwner(net.name, r.id))));
      for (const ipam of ipams) ipam.release(r.id);
      if (turnDue()) await yieldTurn();
      if (ctx.store.markerOwner(net.name, r.netnsKey) === r.id) ctx.store.removeMarker(net.name, r.netnsKey);
      ctx.store.removeEndpoint(net.name, r.id);
    }
  });
}
