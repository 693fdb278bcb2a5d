/**
 * A fake rtnetlink kernel for unit tests of the bridge layer: several network namespaces, each
 * with links (bridges, veth pairs whose peer may live in another namespace), addresses and
 * routes, answering through the Transport seam with the messages the real kernel sends (acks,
 * errors by errno, RTM_NEWLINK replies and dumps). It decodes requests with tsnetlink's own
 * schemas, so what the bridge layer sends is exactly what it would send to Linux.
 * FakeHost puts it behind the HostSystem seam. Only what bridge networking uses is modelled.
 */
import { openSync } from 'node:fs';
import { NetlinkSocket, type Transport } from '../../src/netlink/core/socket.js';
import { decodePayload, encode, request, splitMessages, type RawMessage } from '../../src/netlink/core/message.js';
import { addrMessage, linkMessage, routeMessage, type LinkAttrs } from '../../src/netlink/route/schemas.js';
import { NLM_F, NLMSG, RTM } from '../../src/netlink/core/constants.js';
import { NetnsHandle } from '../../src/ns/netns.js';
import type { ContainerRef, HostSystem, Sysctl } from '../../src/bridge/host.js';
import type { InetSocket, SocketOwner, SocketQuery } from '../../src/netlink/sockdiag/sockdiag.js';

const IFF_UP = 1;
const E = { EEXIST: 17, ENODEV: 19, EINVAL: 22, ENETUNREACH: 101, EOPNOTSUPP: 95 } as const;

export interface FakeLink {
  index: number;
  name: string;
  kind: 'bridge' | 'veth' | 'loopback';
  mac: string;
  up: boolean;
  master?: number;
  alias?: string;
  group: number;
  mtu: number;
  hairpin?: boolean;
  isolated?: boolean;
  addrGenNone?: boolean;
  peer?: { ns: FakeNs; index: number };
}

export class FakeNs {
  readonly links = new Map<number, FakeLink>();
  readonly addrs: { index: number; ip: string; prefix: number }[] = [];
  readonly routes: { dst: string; gateway?: string; oif: number }[] = [];
  readonly sysctls = new Map<string, string>();
  private next = 2;
  constructor(readonly id: number) {
    this.links.set(1, { index: 1, name: 'lo', kind: 'loopback', mac: '00:00:00:00:00:00', up: false, group: 0, mtu: 65536 });
  }
  byName(name: string): FakeLink | undefined {
    return [...this.links.values()].find((l) => l.name === name);
  }
  add(l: Omit<FakeLink, 'index'>): FakeLink {
    const link = { ...l, index: this.next++ };
    this.links.set(link.index, link);
    return link;
  }
  /** Deletes a link, its peer, its addresses and routes (as unregister does). */
  remove(l: FakeLink): void {
    this.links.delete(l.index);
    for (let i = this.addrs.length - 1; i >= 0; i--) if (this.addrs[i]!.index === l.index) this.addrs.splice(i, 1);
    for (let i = this.routes.length - 1; i >= 0; i--) if (this.routes[i]!.oif === l.index) this.routes.splice(i, 1);
    for (const other of this.links.values()) if (other.master === l.index) delete other.master;
    if (l.peer) {
      const p = l.peer.ns.links.get(l.peer.index);
      if (p) {
        delete p.peer;
        l.peer.ns.remove(p);
      }
    }
  }
}

function msg(type: number, flags: number, seq: number, pid: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(16 + payload.length + ((4 - (payload.length % 4)) % 4));
  b.writeUInt32LE(16 + payload.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(pid, 12);
  payload.copy(b, 16);
  return b;
}

function ack(req: RawMessage, errno: number): Buffer {
  const p = Buffer.alloc(20);
  p.writeInt32LE(-errno, 0);
  p.writeUInt32LE(req.len, 4);
  p.writeUInt16LE(req.type, 8);
  p.writeUInt16LE(req.flags, 10);
  p.writeUInt32LE(req.seq, 12);
  p.writeUInt32LE(req.pid, 16);
  return msg(NLMSG.ERROR, NLM_F.CAPPED, req.seq, req.pid, p);
}

class KernelError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

/** The whole fake machine: namespaces by fd (as IFLA_NET_NS_FD names them), and the host. */
export class FakeWorld {
  readonly host: FakeNs;
  private readonly byFd = new Map<number, FakeNs>();
  private nsSeq = 1;
  /** Requests seen, as "TYPE name" strings, for assertions. */
  readonly log: string[] = [];
  /** When set, called on every request; throwing a KernelError-like { errno } fails it. */
  inject?: (type: number, attrs: LinkAttrs | undefined, ns: FakeNs) => number | undefined;
  /**
   * When set, a request sent through the async path (rt.promises) is acted on this many ms
   * later, as the real kernel takes an RCU grace period inside sendmsg to delete a veth.
   */
  asyncSendDelayMs?: number;

  constructor() {
    this.host = new FakeNs(this.nsSeq++);
  }

  /** A container netns and a handle on it (a real fd on /dev/null stands for the nsfs fd). */
  container(path = `fake:${this.nsSeq}`): { ns: FakeNs; handle: NetnsHandle } {
    const ns = new FakeNs(this.nsSeq++);
    const fd = openSync('/dev/null', 'r');
    this.byFd.set(fd, ns);
    return { ns, handle: new NetnsHandle(fd, path, 9, 4000 + ns.id) };
  }

  nsOfFd(fd: number): FakeNs {
    const ns = this.byFd.get(fd);
    if (!ns) throw new KernelError(E.EINVAL);
    return ns;
  }

  /** A transport whose requests act in `ns`. */
  transport(ns: FakeNs): Transport {
    const queue: Buffer[] = [];
    const portId = 1000 + Math.floor(Math.random() * 100000);
    return {
      portId,
      send: (buf: Buffer) => {
        for (const m of splitMessages(buf)) queue.push(...this.handle(ns, m));
      },
      sendAsync: async (buf: Buffer) => {
        if (this.asyncSendDelayMs !== undefined) await new Promise((r) => setTimeout(r, this.asyncSendDelayMs));
        for (const m of splitMessages(buf)) queue.push(...this.handle(ns, m));
      },
      receive: () => queue.shift() ?? null,
      close: () => undefined,
    };
  }

  private handle(ns: FakeNs, m: RawMessage): Buffer[] {
    try {
      const out = this.dispatch(ns, m);
      return (m.flags & NLM_F.DUMP) === NLM_F.DUMP ? out : [...out, ack(m, 0)];
    } catch (e) {
      if (e instanceof KernelError) return [ack(m, e.errno)];
      throw e;
    }
  }

  private find(ns: FakeNs, index: number, name: string | undefined): FakeLink {
    const l = index > 0 ? ns.links.get(index) : name !== undefined ? ns.byName(name) : undefined;
    if (!l) throw new KernelError(E.ENODEV);
    return l;
  }

  private dispatch(ns: FakeNs, m: RawMessage): Buffer[] {
    switch (m.type) {
      case RTM.NEWLINK: {
        const { header, attrs } = decodePayload(linkMessage, m.payload);
        this.log.push(`NEWLINK ${attrs.ifname ?? header.index}${m.flags & NLM_F.CREATE ? ' create' : ''}`);
        const fail = this.inject?.(m.type, attrs, ns);
        if (fail) throw new KernelError(fail);
        if (m.flags & NLM_F.CREATE) return this.create(ns, header, attrs, m);
        const l = this.find(ns, header.index, attrs.ifname);
        if (header.change & IFF_UP) l.up = (header.flags & IFF_UP) !== 0;
        if (attrs.ifalias === '') delete l.alias;
        else if (attrs.ifalias !== undefined) l.alias = attrs.ifalias;
        if (attrs.group !== undefined) l.group = attrs.group;
        if (attrs.address !== undefined) l.mac = attrs.address;
        if (attrs.master !== undefined) {
          if (attrs.master === 0) delete l.master;
          else if (ns.links.get(attrs.master)?.kind !== 'bridge') throw new KernelError(E.ENODEV);
          else l.master = attrs.master;
        }
        const slave = attrs.linkinfo?.slaveData;
        if (slave && !Buffer.isBuffer(slave)) {
          if (l.master === undefined) throw new KernelError(E.EOPNOTSUPP);
          if (slave.hairpin !== undefined) l.hairpin = slave.hairpin === 1;
          if (slave.isolated !== undefined) l.isolated = slave.isolated === 1;
        }
        if (attrs.afSpec?.inet6?.addrGenMode !== undefined) l.addrGenNone = attrs.afSpec.inet6.addrGenMode === 1;
        return [];
      }
      case RTM.DELLINK: {
        const { header, attrs } = decodePayload(linkMessage, m.payload);
        this.log.push(`DELLINK ${attrs.ifname ?? (attrs.group !== undefined ? `group ${attrs.group}` : header.index)}`);
        if (header.index === 0 && attrs.ifname === undefined && attrs.group !== undefined) {
          const gone = [...ns.links.values()].filter((l) => l.group === attrs.group);
          if (gone.length === 0) throw new KernelError(E.ENODEV);
          for (const l of gone) if (ns.links.has(l.index)) ns.remove(l);
          return [];
        }
        ns.remove(this.find(ns, header.index, attrs.ifname));
        return [];
      }
      case RTM.GETLINK: {
        const { header, attrs } = decodePayload(linkMessage, m.payload);
        if ((m.flags & NLM_F.DUMP) === NLM_F.DUMP) return [...[...ns.links.values()].map((l) => this.linkReply(ns, l, m, NLM_F.MULTI)), this.done(m)];
        return [this.linkReply(ns, this.find(ns, header.index, attrs.ifname), m, 0)];
      }
      case RTM.NEWADDR: {
        const { header, attrs } = decodePayload(addrMessage, m.payload);
        this.find(ns, header.index, undefined);
        const ip = attrs.local ?? attrs.address ?? '';
        const have = ns.addrs.find((a) => a.index === header.index && a.ip === ip);
        if (have && !(m.flags & NLM_F.REPLACE)) throw new KernelError(E.EEXIST);
        if (!have) ns.addrs.push({ index: header.index, ip, prefix: header.prefixlen });
        return [];
      }
      case RTM.GETADDR: {
        const { header } = decodePayload(addrMessage, m.payload);
        const rows = ns.addrs.filter((a) => header.index === 0 || a.index === header.index);
        return [
          ...rows.map((a) => {
            const r = request(addrMessage, RTM.NEWADDR, NLM_F.MULTI, { family: 2, prefixlen: a.prefix, index: a.index }, { address: a.ip, local: a.ip });
            return encode(r, m.seq, m.pid);
          }),
          this.done(m),
        ];
      }
      case RTM.NEWROUTE: {
        const { attrs } = decodePayload(routeMessage, m.payload);
        const oif = attrs.oif ?? 0;
        const onLink = ns.addrs.some((a) => a.index === oif && sameSubnet(a.ip, attrs.gateway ?? '', a.prefix));
        if (attrs.gateway && !onLink) throw new KernelError(E.ENETUNREACH);
        if (ns.routes.some((r) => r.dst === 'default') && (m.flags & NLM_F.EXCL)) throw new KernelError(E.EEXIST);
        ns.routes.push({ dst: 'default', ...(attrs.gateway ? { gateway: attrs.gateway } : {}), oif });
        return [];
      }
      case RTM.GETROUTE:
        return [this.done(m)];
      default:
        throw new KernelError(E.EOPNOTSUPP);
    }
  }

  private create(ns: FakeNs, header: { flags: number; change: number }, attrs: LinkAttrs, m: RawMessage): Buffer[] {
    const name = attrs.ifname ?? '';
    if (ns.byName(name)) throw new KernelError(E.EEXIST);
    const kind = attrs.linkinfo?.kind;
    const up = (header.flags & IFF_UP) !== 0;
    if (kind === 'bridge') {
      ns.add({ name, kind: 'bridge', mac: attrs.address ?? randomMac(), up, group: 0, mtu: attrs.mtu ?? 1500 });
      return [];
    }
    if (kind !== 'veth') throw new KernelError(E.EOPNOTSUPP);
    const peerBody = (attrs.linkinfo?.data as { peer?: { attrs?: LinkAttrs } } | undefined)?.peer;
    const pa = peerBody?.attrs ?? {};
    const peerNs = pa.netNsFd !== undefined ? this.nsOfFd(pa.netNsFd) : ns;
    if (peerNs.byName(pa.ifname ?? '')) throw new KernelError(E.EEXIST);
    if (attrs.master !== undefined && ns.links.get(attrs.master)?.kind !== 'bridge') throw new KernelError(E.ENODEV);
    const host = ns.add({ name, kind: 'veth', mac: attrs.address ?? randomMac(), up, group: 0, mtu: attrs.mtu ?? 1500, ...(attrs.master !== undefined ? { master: attrs.master } : {}) });
    const peer = peerNs.add({ name: pa.ifname ?? '', kind: 'veth', mac: pa.address ?? randomMac(), up: false, group: 0, mtu: pa.mtu ?? 1500 });
    host.peer = { ns: peerNs, index: peer.index };
    peer.peer = { ns, index: host.index };
    void m;
    return [];
  }

  private linkReply(ns: FakeNs, l: FakeLink, m: RawMessage, flags: number): Buffer {
    const attrs: LinkAttrs = { ifname: l.name, address: l.mac, mtu: l.mtu, group: l.group };
    if (l.master !== undefined) attrs.master = l.master;
    if (l.alias !== undefined) attrs.ifalias = l.alias;
    if (l.peer) {
      attrs.link = l.peer.index;
      if (l.peer.ns !== ns) attrs.linkNetnsid = l.peer.ns.id;
    }
    if (l.kind !== 'loopback') {
      attrs.linkinfo = { kind: l.kind, ...(l.master !== undefined ? { slaveKind: 'bridge', slaveData: { hairpin: l.hairpin ? 1 : 0, isolated: l.isolated ? 1 : 0 } } : {}) };
    }
    const r = request(linkMessage, RTM.NEWLINK, flags, { family: 0, type: 1, index: l.index, flags: l.up ? IFF_UP : 0, change: 0 }, attrs);
    return encode(r, m.seq, m.pid);
  }

  private done(m: RawMessage): Buffer {
    const p = Buffer.alloc(4);
    return msg(NLMSG.DONE, NLM_F.MULTI, m.seq, m.pid, p);
  }
}

function sameSubnet(a: string, b: string, prefix: number): boolean {
  const n = (ip: string): number => ip.split('.').reduce((x, o) => ((x << 8) | Number(o)) >>> 0, 0);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return b !== '' && ((n(a) & mask) >>> 0) === ((n(b) & mask) >>> 0);
}

let macSeq = 0;
function randomMac(): string {
  macSeq++;
  return `0a:00:00:00:${((macSeq >> 8) & 255).toString(16).padStart(2, '0')}:${(macSeq & 255).toString(16).padStart(2, '0')}`;
}

/** The HostSystem seam over a FakeWorld: sockets in its namespaces, sysctls in maps. */
export class FakeHost implements HostSystem {
  /** The host's sockets as sock_diag would list them, and who holds them (by inode). */
  readonly sockets: InetSocket[] = [];
  readonly owners = new Map<number, SocketOwner[]>();
  /** Every sock_diag query asked, in order. */
  readonly socketQueries: SocketQuery[] = [];
  constructor(readonly world: FakeWorld) {
    world.host.sysctls.set('net/ipv4/ip_forward', '0');
  }
  openHostSocket(): NetlinkSocket {
    return new NetlinkSocket(this.world.transport(this.world.host));
  }
  openContainerSocket(ns: NetnsHandle, sysctls: readonly Sysctl[]): NetlinkSocket {
    const fake = this.world.nsOfFd(ns.fd);
    for (const s of sysctls) fake.sysctls.set(s.path, s.value);
    return new NetlinkSocket(this.world.transport(fake));
  }
  readSysctl(path: string): string | undefined {
    return this.world.host.sysctls.get(path) ?? (path.startsWith('net/ipv6/conf/') || path.startsWith('net/ipv4/conf/') ? '1' : undefined);
  }
  writeSysctl(s: Sysctl): void {
    this.world.host.sysctls.set(s.path, s.value);
  }
  hostNetnsKeys(): readonly string[] {
    return ['9-1'];
  }
  hostSockets(queries: readonly SocketQuery[]): InetSocket[] {
    this.socketQueries.push(...queries);
    return queries.flatMap((q) => this.sockets.filter((s) => s.family === q.family && s.protocol === q.protocol && (q.states === undefined || q.states.includes(s.state as never))));
  }
  socketOwners(inodes: readonly number[]): Map<number, SocketOwner[]> {
    return new Map(inodes.filter((i) => this.owners.has(i)).map((i) => [i, this.owners.get(i)!]));
  }
  openContainer(ref: ContainerRef): NetnsHandle {
    if (ref instanceof NetnsHandle) return ref;
    throw new Error('FakeHost: containers are given as handles from FakeWorld.container()');
  }
}
