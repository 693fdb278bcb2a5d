/**
 * Host listeners in the way of a published port. A published port is DNAT in the host's
 * PREROUTING and OUTPUT chains, so it takes the traffic of any host process listening on that
 * port and address (127.0.0.1, the host's own addresses and the outside all reach the container
 * instead), silently. Docker refuses ("port is already allocated") because its proxy binds the
 * port; tsnetlink binds nothing, so it asks the kernel (sock_diag) for listening TCP sockets
 * and bound UDP sockets of the host netns and refuses a mapping that would cover one.
 */
import type { InetSocket, SocketOwner, SocketProtocol, SocketQuery } from '../netlink/sockdiag/sockdiag.js';
import { mappingFamilies, type PortMapping } from '../firewall/types.js';
import { NetworkError } from './errors.js';
import type { HostSystem } from './host.js';
import { formatMapping } from './ports.js';

/** A host socket that a mapping would take over, with the processes holding it where /proc shows them. */
export interface HostListener {
  mapping: PortMapping;
  socket: InetSocket;
  owners: SocketOwner[];
}

/** Publishing `listeners[0].mapping` would take traffic from a host process: the EHOSTLISTENER refusal. */
export class HostListenerError extends NetworkError {
  override name = 'HostListenerError';
  constructor(readonly listeners: readonly HostListener[]) {
    super('EHOSTLISTENER', listenerMessage(listeners));
  }
}

/** How a socket is written in messages: 0.0.0.0:9090, [::]:9090. */
function endpointText(s: InetSocket): string {
  return s.family === 6 ? `[${s.local.address}]:${s.local.port}` : `${s.local.address}:${s.local.port}`;
}

function ownerText(owners: readonly SocketOwner[]): string {
  if (owners.length === 0) return 'a process this user cannot see';
  return owners.map((o) => `pid ${o.pid}${o.command ? ` (${o.command})` : ''}`).join(', ');
}

function listenerMessage(listeners: readonly HostListener[]): string {
  const first = listeners[0];
  if (!first) return 'a host process listens on a port to publish';
  const m = first.mapping;
  const all = listeners.map((l) => `${ownerText(l.owners)} ${l.mapping.protocol === 'tcp' ? 'listening on' : 'bound to'} ${endpointText(l.socket)}`);
  return `port ${m.protocol}/${m.hostPort} is in use on this host by ${all.join('; ')}: publishing ${formatMapping(m)} would take its traffic over. Stop it, publish another host port, or publish anyway with allowHostListener (--publish-over-listener)`;
}

/**
 * The addresses a socket receives on, per family: 'all' for a wildcard, else its one address.
 * An IPv6 wildcard socket without IPV6_V6ONLY takes IPv4 too, and a socket bound to an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is an IPv4 socket for that address.
 */
function socketCovers(s: InetSocket): { 4?: string; 6?: string } {
  const a = s.local.address;
  if (s.family === 4) return { 4: a === '0.0.0.0' ? 'all' : a };
  if (a === '::') return s.v6only === true ? { 6: 'all' } : { 4: 'all', 6: 'all' };
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return { 4: mapped[1] as string };
  return { 6: a };
}

/**
 * Tells whether publishing `m` (on the families in `families`: the network's, as a wildcard
 * mapping is published on each family the network has) takes traffic meant for socket `s`:
 * same protocol and port, and overlapping addresses. 0.0.0.0 and :: overlap every address of
 * their family (:: both families, unless IPV6_V6ONLY); a specific address overlaps itself and
 * the wildcard.
 */
export function listenerOverlaps(s: InetSocket, m: PortMapping, families: readonly (4 | 6)[] = [4, 6]): boolean {
  if (s.protocol !== m.protocol || s.local.port !== m.hostPort) return false;
  const covers = socketCovers(s);
  const wild = m.hostIp === undefined || m.hostIp === '0.0.0.0' || m.hostIp === '::';
  for (const f of mappingFamilies(m)) {
    if (!families.includes(f)) continue;
    const c = covers[f];
    if (c === undefined) continue;
    if (c === 'all' || wild || c === m.hostIp) return true;
  }
  return false;
}

/** The protocols and families whose sockets can collide with `mappings`: an IPv4 mapping needs the AF_INET6 dump too (dual-stack wildcards, IPv4-mapped binds). */
function queriesFor(mappings: readonly PortMapping[], families: readonly (4 | 6)[]): SocketQuery[] {
  const need = new Map<SocketProtocol, Set<4 | 6>>();
  for (const m of mappings) {
    const fams = mappingFamilies(m).filter((f) => families.includes(f));
    if (fams.length === 0) continue;
    const set = need.get(m.protocol) ?? new Set<4 | 6>();
    if (fams.includes(4)) set.add(4);
    set.add(6);
    need.set(m.protocol, set);
  }
  const out: SocketQuery[] = [];
  for (const [protocol, fams] of need) {
    // A TCP socket takes connections only in LISTEN; a UDP socket receives on its port whatever
    // its state, but one connected to a peer (a client's socket) only from that peer, so the
    // unconnected ones (CLOSE, ss's UNCONN) are what `ss -lun` lists and what a publish takes over.
    for (const family of [4, 6] as const) if (fams.has(family)) out.push({ family, protocol, states: protocol === 'tcp' ? ['listen'] : ['close'] });
  }
  return out;
}

/**
 * Finds host sockets that publishing `mappings` would take over: one sock_diag dump per
 * protocol and family needed (none without mappings), the owners looked up in /proc only for
 * the sockets found.
 */
export function findHostListeners(host: HostSystem, mappings: readonly PortMapping[], families: readonly (4 | 6)[]): HostListener[] {
  if (mappings.length === 0) return [];
  const queries = queriesFor(mappings, families);
  if (queries.length === 0) return [];
  const sockets = host.hostSockets(queries);
  const found: { mapping: PortMapping; socket: InetSocket }[] = [];
  for (const m of mappings) for (const s of sockets) if (listenerOverlaps(s, m, families)) found.push({ mapping: m, socket: s });
  if (found.length === 0) return [];
  const owners = host.socketOwners([...new Set(found.map((f) => f.socket.inode))]);
  return found.map((f) => ({ ...f, owners: owners.get(f.socket.inode) ?? [] }));
}
