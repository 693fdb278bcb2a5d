/**
 * WireGuard configuration over generic netlink (family "wireguard", version 1), as in the kernel's
 * include/uapi/linux/wireguard.h: a device's keys, listen port, fwmark and peers (public key,
 * preshared key, endpoint, keepalive, allowed IPs), read with WG_CMD_GET_DEVICE (a dump, which
 * the kernel splits over several messages for large peer lists) and changed with
 * WG_CMD_SET_DEVICE, in the attribute order wg(8) sends. The link itself is made through Rtnl
 * (`linkAdd(name, 'wireguard')`). Keys are base64 text, as wg(8) shows them, or 32-byte Buffers.
 */
import { CodecError, ValidationError } from '../../errors.js';
import { attr, ipAddr, nested, repeated, strz, u8, u16, u32, u64, bytes, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { NLM_F } from '../core/constants.js';
import { Genl, genlMessage, genlRequest, type GenlMsgHdr, type GenlOps } from './genl.js';
import { decodePayload, TAIL, type MessageDef, type RawMessage, type Request, type WithTail } from '../core/message.js';
import { refKey, type LinkRef } from '../core/ref.js';
import type { DumpOptions, SocketOptions } from '../core/socket.js';
import { dumpOp, requestOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
import { validateU32 } from '../core/validate.js';
import { parseCidr, parseIp } from '../../ip/parse.js';
import { formatIPv6 } from '../../ip/bytes.js';

export const WG_GENL_NAME = 'wireguard';
export const WG_GENL_VERSION = 1;
export const WG_KEY_LEN = 32;
/** wg_cmd. */
export const WG_CMD = { GET_DEVICE: 0, SET_DEVICE: 1 } as const;
/** wgdevice_flag. */
export const WGDEVICE_F = { REPLACE_PEERS: 1 } as const;
/** wgpeer_flag. */
export const WGPEER_F = { REMOVE_ME: 1, REPLACE_ALLOWEDIPS: 2, UPDATE_ONLY: 4 } as const;

const AF_INET = 2;
const AF_INET6 = 10;
const NEST = { nestedFlag: true } as const;

/** An endpoint: struct sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes); the family is in host order, the port in network order. */
export interface SockAddr extends WithTail {
  family: number;
  port: number;
  address: string;
  /** sockaddr_in6 only. */
  flowinfo?: number;
  scopeId?: number;
}

export const sockaddr: Codec<SockAddr> = {
  size: (v) => (v.family === AF_INET6 ? 28 : 8) + (v[TAIL]?.length ?? (v.family === AF_INET6 ? 0 : 8)),
  write: (b, o, v) => {
    b.writeUInt16LE(v.family, o);
    b.writeUInt16BE(v.port, o + 2);
    const ip = parseIp(v.address, 'endpoint');
    const raw = Buffer.alloc(ip.family === 4 ? 4 : 16);
    if (ip.family === 4) ip.address.split('.').forEach((x, i) => (raw[i] = Number(x)));
    else Buffer.from(ipAddrBytes(ip.address)).copy(raw);
    if (v.family === AF_INET6) {
      b.writeUInt32BE((v.flowinfo ?? 0) >>> 0, o + 4);
      raw.copy(b, o + 8);
      b.writeUInt32LE((v.scopeId ?? 0) >>> 0, o + 24);
      v[TAIL]?.copy(b, o + 28);
    } else {
      raw.copy(b, o + 4);
      // sin_zero, unless the bytes read carried something else there.
      v[TAIL]?.copy(b, o + 8);
    }
  },
  read: (b, o, l) => {
    if (l < 2) throw new CodecError(`sockaddr of ${l} bytes`, o);
    const family = b.readUInt16LE(o);
    if (family === AF_INET && l >= 8) {
      const v: SockAddr = { family, port: b.readUInt16BE(o + 2), address: `${b[o + 4]}.${b[o + 5]}.${b[o + 6]}.${b[o + 7]}` };
      v[TAIL] = b.subarray(o + 8, o + l);
      return v;
    }
    if (family === AF_INET6 && l >= 28) {
      const v: SockAddr = { family, port: b.readUInt16BE(o + 2), flowinfo: b.readUInt32BE(o + 4), address: formatIPv6(b, o + 8), scopeId: b.readUInt32LE(o + 24) };
      if (l > 28) v[TAIL] = b.subarray(o + 28, o + l);
      return v;
    }
    throw new CodecError(`sockaddr of family ${family} in ${l} bytes`, o);
  },
};

function ipAddrBytes(text: string): Buffer {
  const b = Buffer.alloc(16);
  ipAddr.write(b, 0, text);
  return b;
}

/** struct __kernel_timespec: seconds and nanoseconds, both s64. */
export const timespec: Codec<{ sec: bigint; nsec: bigint }> = {
  size: () => 16,
  write: (b, o, v) => {
    b.writeBigInt64LE(v.sec, o);
    b.writeBigInt64LE(v.nsec, o + 8);
  },
  read: (b, o, l) => {
    if (l !== 16) throw new CodecError(`__kernel_timespec: expected 16 bytes, got ${l}`, o);
    return { sec: b.readBigInt64LE(o), nsec: b.readBigInt64LE(o + 8) };
  },
};

/** WGALLOWEDIP_A_*, in the order wg(8) sends them (the kernel sends the mask first). */
export const allowedIpAttrs = {
  family: attr(1, u16),
  ipaddr: attr(2, ipAddr),
  cidrMask: attr(3, u8),
} as const satisfies Schema;
export type AllowedIpAttrs = Attrs<typeof allowedIpAttrs>;

/** WGPEER_A_*: wg(8) sends key, preshared key, endpoint, keepalive, flags, allowed IPs; the rest the kernel reports. */
export const peerAttrs = {
  publicKey: attr(1, bytes),
  presharedKey: attr(2, bytes),
  endpoint: attr(4, sockaddr),
  persistentKeepaliveInterval: attr(5, u16),
  flags: attr(3, u32),
  allowedips: attr(9, nested({ allowedip: repeated(0, nested(allowedIpAttrs), NEST) } as const), NEST),
  lastHandshakeTime: attr(6, timespec),
  rxBytes: attr(7, u64),
  txBytes: attr(8, u64),
  protocolVersion: attr(10, u32),
} as const satisfies Schema;
export type PeerAttrs = Attrs<typeof peerAttrs>;

/** WGDEVICE_A_*: the device by index or name first, then what wg(8) sets, in its order. */
export const deviceAttrs = {
  ifindex: attr(1, u32),
  ifname: attr(2, strz),
  privateKey: attr(3, bytes),
  listenPort: attr(6, u16),
  fwmark: attr(7, u32),
  flags: attr(5, u32),
  peers: attr(8, nested({ peer: repeated(0, nested(peerAttrs), NEST) } as const), NEST),
  publicKey: attr(4, bytes),
} as const satisfies Schema;
export type DeviceAttrs = Attrs<typeof deviceAttrs>;

export const wgMessage: MessageDef<keyof GenlMsgHdr, typeof deviceAttrs> = genlMessage(deviceAttrs);

// ------------------------------------------------------------ keys and addresses

/** A key: 44 characters of base64 (wg's form) or 32 bytes. */
export type WgKey = string | Buffer;

/** The 32 bytes of a key; `field` names it in errors. */
export function keyBytes(k: WgKey, field: string): Buffer {
  const b = Buffer.isBuffer(k) ? k : typeof k === 'string' && /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/.test(k) ? Buffer.from(k, 'base64') : undefined;
  if (!b || b.length !== WG_KEY_LEN) throw new ValidationError(field, 'must be a 32-byte key: 44 characters of base64, as wg genkey prints, or a Buffer');
  return b;
}
const keyText = (b: Buffer): string => b.toString('base64');
const isZero = (b: Buffer): boolean => b.every((x) => x === 0);

/** Parses an endpoint as wg takes it: 'HOST:PORT' or '[IPV6]:PORT' (addresses only: no names are looked up here). */
export function parseEndpoint(text: string): SockAddr {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!m) throw new ValidationError('endpoint', `${JSON.stringify(text)} is not ADDRESS:PORT or [IPV6]:PORT`);
  const ip = parseIp(m[1] ?? m[2], 'endpoint');
  if ((m[1] !== undefined) !== (ip.family === 6)) throw new ValidationError('endpoint', `${JSON.stringify(text)}: an IPv6 address goes in brackets, an IPv4 one does not`);
  return { family: ip.family === 4 ? AF_INET : AF_INET6, port: validateU32(Number(m[3]), 'endpoint port', 0, 65535), address: ip.address, ...(ip.family === 6 ? { flowinfo: 0, scopeId: 0 } : {}) };
}
const endpointText = (e: SockAddr): string => (e.family === AF_INET6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`);

// ------------------------------------------------------------ requests

/** A peer to set: `peer KEY [remove] [preshared-key FILE] [endpoint HOST:PORT] [persistent-keepalive N] [allowed-ips LIST]`. */
export interface WireGuardPeerSpec {
  publicKey: WgKey;
  /** Remove the peer (`remove`): nothing else about it is sent but its key. */
  remove?: boolean;
  /** Only change the peer if it exists. */
  updateOnly?: boolean;
  /** A key, or null to remove the preshared key (all zeros on the wire). */
  presharedKey?: WgKey | null;
  endpoint?: string;
  /** Seconds between keepalives; 0 turns them off. */
  persistentKeepalive?: number;
  /** Replace the peer's allowed IPs with `allowedIps` instead of adding to them (`replace-allowed-ips`). */
  replaceAllowedIps?: boolean;
  /** Prefixes ('10.0.0.0/24', 'fd00::/64'; an address alone is a host). */
  allowedIps?: readonly string[];
}

/** A device's configuration to set: `wg set DEV [listen-port P] [fwmark M] [private-key FILE] [peer ...]`. */
export interface WireGuardDeviceSpec {
  /** A key, or null to remove the private key (all zeros on the wire). */
  privateKey?: WgKey | null;
  /** 0 picks a random port. */
  listenPort?: number;
  /** 0 turns the mark off. */
  fwmark?: number;
  /** Remove every peer before adding `peers` (`wg setconf`). */
  replacePeers?: boolean;
  peers?: readonly WireGuardPeerSpec[];
}

function devAttrs(dev: LinkRef): DeviceAttrs {
  const k = refKey(dev, 'device');
  return typeof k === 'number' ? { ifindex: k } : { ifname: k };
}

function allowedIp(text: string): AllowedIpAttrs {
  const c = parseCidr(text, 'allowedIps');
  return { family: c.family === 4 ? AF_INET : AF_INET6, ipaddr: c.address, cidrMask: c.prefix };
}

/** A peer's attributes; only its key, flags and allowed IPs when it continues in a further message. */
function peerOf(p: WireGuardPeerSpec, i: number, first: boolean, ips: AllowedIpAttrs[] | undefined): PeerAttrs {
  const a: PeerAttrs = { publicKey: keyBytes(p.publicKey, `peers[${i}].publicKey`) };
  let flags = p.remove ? WGPEER_F.REMOVE_ME : 0;
  if (first) {
    if (p.replaceAllowedIps) flags |= WGPEER_F.REPLACE_ALLOWEDIPS;
    if (p.updateOnly) flags |= WGPEER_F.UPDATE_ONLY;
    if (p.presharedKey !== undefined) a.presharedKey = p.presharedKey === null ? Buffer.alloc(WG_KEY_LEN) : keyBytes(p.presharedKey, `peers[${i}].presharedKey`);
    if (p.endpoint !== undefined) a.endpoint = parseEndpoint(p.endpoint);
    if (p.persistentKeepalive !== undefined) a.persistentKeepaliveInterval = validateU32(p.persistentKeepalive, `peers[${i}].persistentKeepalive`, 0, 65535);
  }
  if (flags) a.flags = flags;
  if (ips && ips.length) a.allowedips = { allowedip: ips };
  return a;
}

/** Bytes of an attribute set as it will be encoded. */
function sizeOf(a: DeviceAttrs): number {
  return genlRequest(0, WG_CMD.SET_DEVICE, WG_GENL_VERSION, deviceAttrs, a).size + 16;
}

/**
 * wg set DEV ... as WG_CMD_SET_DEVICE messages for the family `familyId`. Like wg(8), a
 * configuration larger than `maxBytes` per message (4096 there, a page) goes in several: the
 * device's own settings in the first, then the peers; a peer whose allowed IPs do not fit
 * continues in the next message with only its key and the rest of its allowed IPs.
 */
export function setDeviceRequests(familyId: number, dev: LinkRef, s: WireGuardDeviceSpec, maxBytes = 4096): Request[] {
  const head: DeviceAttrs = devAttrs(dev);
  const first: DeviceAttrs = { ...head };
  if (s.privateKey !== undefined) first.privateKey = s.privateKey === null ? Buffer.alloc(WG_KEY_LEN) : keyBytes(s.privateKey, 'privateKey');
  if (s.listenPort !== undefined) first.listenPort = validateU32(s.listenPort, 'listenPort', 0, 65535);
  if (s.fwmark !== undefined) first.fwmark = validateU32(s.fwmark, 'fwmark');
  if (s.replacePeers) first.flags = WGDEVICE_F.REPLACE_PEERS;
  const msgs: DeviceAttrs[] = [first];
  let cur = first;
  const fits = (a: DeviceAttrs): boolean => sizeOf(a) <= maxBytes;
  (s.peers ?? []).forEach((p, i) => {
    const ips = (p.allowedIps ?? []).map(allowedIp);
    let at = 0;
    let firstPart = true;
    for (;;) {
      // A message made for continuing holds nothing but the device's name until a peer goes in.
      const fresh = cur !== first && cur.peers === undefined;
      const list = (cur.peers ??= { peer: [] }).peer as PeerAttrs[];
      const put = (n: number): boolean => {
        list[list.length - 1] = peerOf(p, i, firstPart, ips.slice(at, at + n));
        return fits(cur);
      };
      list.push({});
      // The most allowed IPs from `at` that fit with the peer: all of them usually, else by bisection.
      let n = ips.length - at;
      if (!put(n)) {
        let [lo, hi] = [0, n - 1];
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (put(mid)) lo = mid;
          else hi = mid - 1;
        }
        n = lo;
        put(n);
      }
      // Progress is a part that fits and carries the peer's settings or some of its allowed IPs.
      if (!fits(cur) || (n === 0 && !firstPart && at < ips.length)) {
        list.pop();
        if (list.length === 0) delete cur.peers;
        if (fresh) throw new ValidationError('peers', `peer ${i} does not fit in a ${maxBytes}-byte message`);
        cur = { ...head };
        msgs.push(cur);
        continue;
      }
      at += n;
      firstPart = false;
      if (at >= ips.length) break;
      cur = { ...head };
      msgs.push(cur);
    }
  });
  return msgs.map((a) => genlRequest(familyId, WG_CMD.SET_DEVICE, WG_GENL_VERSION, deviceAttrs, a));
}

/** wg show DEV (a WG_CMD_GET_DEVICE dump, with the ack wg(8) asks for) */
export function getDeviceRequest(familyId: number, dev: LinkRef): Request {
  return genlRequest(familyId, WG_CMD.GET_DEVICE, WG_GENL_VERSION, deviceAttrs, devAttrs(dev), NLM_F.ACK);
}

// ------------------------------------------------------------ decoding

/** A peer as `wg show` reports it. */
export interface WireGuardPeer {
  publicKey: string;
  /** Absent when the peer has none (the kernel sends zeros). */
  presharedKey?: string;
  endpoint?: string;
  persistentKeepalive: number;
  /** When the last handshake completed (seconds and nanoseconds since the epoch; 0 for never). */
  lastHandshake: { sec: bigint; nsec: bigint };
  rxBytes: bigint;
  txBytes: bigint;
  allowedIps: string[];
  protocolVersion?: number;
}

/** A device as `wg show` reports it. */
export interface WireGuardDevice {
  ifindex: number;
  ifname: string;
  privateKey?: string;
  publicKey?: string;
  listenPort: number;
  fwmark: number;
  peers: WireGuardPeer[];
  /** The attributes of each message the device came in. */
  raw: DeviceAttrs[];
}

/** Decodes one WG_CMD_GET_DEVICE message's attributes; a malformed one is a CodecError. */
export function decodeDeviceAttrs(m: RawMessage): DeviceAttrs {
  return decodePayload(wgMessage, m.payload).attrs;
}

function peerView(a: PeerAttrs): WireGuardPeer {
  if (!a.publicKey || a.publicKey.length !== WG_KEY_LEN) throw new CodecError('a WireGuard peer without a 32-byte public key');
  const p: WireGuardPeer = {
    publicKey: keyText(a.publicKey),
    persistentKeepalive: a.persistentKeepaliveInterval ?? 0,
    lastHandshake: a.lastHandshakeTime ?? { sec: 0n, nsec: 0n },
    rxBytes: a.rxBytes ?? 0n,
    txBytes: a.txBytes ?? 0n,
    allowedIps: (a.allowedips?.allowedip ?? []).map((x) => `${x.ipaddr ?? ''}/${x.cidrMask ?? 0}`),
  };
  if (a.presharedKey && !isZero(a.presharedKey)) p.presharedKey = keyText(a.presharedKey);
  if (a.endpoint) p.endpoint = endpointText(a.endpoint);
  if (a.protocolVersion !== undefined) p.protocolVersion = a.protocolVersion;
  return p;
}

/**
 * Joins the messages of a GET_DEVICE dump into the device: the first carries its settings, later
 * ones more peers, and a peer whose allowed IPs did not fit comes again right after with only its
 * key and the rest of them.
 */
export function assembleDevice(parts: readonly DeviceAttrs[]): WireGuardDevice {
  const [f] = parts;
  if (!f) throw new CodecError('WG_CMD_GET_DEVICE: no message');
  const d: WireGuardDevice = { ifindex: f.ifindex ?? 0, ifname: f.ifname ?? '', listenPort: f.listenPort ?? 0, fwmark: f.fwmark ?? 0, peers: [], raw: [...parts] };
  if (f.privateKey) d.privateKey = keyText(f.privateKey);
  if (f.publicKey) d.publicKey = keyText(f.publicKey);
  for (const part of parts) {
    for (const a of part.peers?.peer ?? []) {
      const p = peerView(a);
      const last = d.peers.at(-1);
      if (last && last.publicKey === p.publicKey) last.allowedIps.push(...p.allowedIps);
      else d.peers.push(p);
    }
  }
  return d;
}

// ------------------------------------------------------------ the handle

/** The family's id; NetlinkError ENOENT when the kernel has no WireGuard. */
function* familyId(genl: GenlOps): Op<number> {
  return (yield* genl.family(WG_GENL_NAME)).id;
}

/**
 * The WireGuard operations, each written once as a generator of netlink exchanges (core/op.ts):
 * WireGuard runs them synchronously, WireGuard.promises asynchronously.
 */
export class WireGuardOps {
  /** Runs over a generic netlink handle's operations (its family cache is shared). */
  constructor(readonly genl: GenlOps) {}

  /** A device's keys, port, mark and peers (EOPNOTSUPP when it is not a WireGuard link). `wg show DEV` */
  *get(dev: LinkRef, opts: DumpOptions = {}): Op<WireGuardDevice> {
    const parts = yield* dumpOp(getDeviceRequest(yield* familyId(this.genl), dev), decodeDeviceAttrs, opts);
    if (parts.undecodable.length) throw parts.undecodable[0]!.error;
    return assembleDevice(parts);
  }

  /** Changes a device's configuration (in several messages when it is large). `wg set DEV ...` */
  *set(dev: LinkRef, s: WireGuardDeviceSpec): Op<void> {
    for (const r of setDeviceRequests(yield* familyId(this.genl), dev, s)) yield* requestOp(r, WG_GENL_NAME);
  }
}

/** Every WireGuard operation's name, read from WireGuardOps. */
export const WIREGUARD_OPERATIONS: readonly string[] = operationNames(WireGuardOps);

export interface WireGuard extends SyncMethods<Omit<WireGuardOps, 'genl'>> {}

/** WireGuard devices over generic netlink, in the netns the socket was opened in; `promises` is its async twin. */
export class WireGuard extends SyncHandle<WireGuardOps, WireGuardPromises> {
  /** Opens a generic netlink socket in the calling thread's netns (`withNetns(ns, () => WireGuard.open())` for another one). */
  static open(opts: SocketOptions = {}): WireGuard {
    return new WireGuard(Genl.open(opts));
  }

  /** `genl` must be a NETLINK_GENERIC handle (or one on a fake socket in tests). */
  constructor(readonly genl: Genl) {
    super(genl.socket, new WireGuardOps(genl.ops), WireGuardPromises);
  }
}

export interface WireGuardPromises extends PromiseMethods<Omit<WireGuardOps, 'genl'>> {}

/** Every WireGuard operation returning a promise (`wg.promises`). */
export class WireGuardPromises extends PromiseHandle<WireGuardOps> {}

defineOperations(WIREGUARD_OPERATIONS, WireGuard, WireGuardPromises);
