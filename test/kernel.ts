/**
 * What the running kernel supports, asked of the kernel itself, never assumed: a machine of this
 * kind may boot a kernel built with other options, and a contributor's laptop or CI has its own.
 *
 * Each probe tries the feature where it cannot touch anything else (a link kind or an lwtunnel
 * encap in a throwaway child netns made by `unshare --net`, multicast routing with MRT_INIT on a
 * socket closed at once) and reads the kernel's answer. Answers are cached for the whole test
 * run in the file named by $TSNETLINK_KERNEL_CAPS (scripts/test.mjs sets it), else per process.
 *
 * A test that needs a missing feature is registered with `kernelTest`: it is reported by name
 * with its reason (one marker line the runner counts apart from passed and failed) and runs its
 * captured-bytes variant instead, so the same decoders and encoders run on every kernel.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { suite, type Test } from 'uvu';
import * as libc from '../src/sys/libc.js';
import { fileURLToPath } from 'node:url';
import { Rtnl } from '../src/netlink/route/rtnl.js';
import { NLM_F } from '../src/netlink/core/constants.js';
import { encode, splitMessages, type RawMessage, type Request } from '../src/netlink/core/message.js';
import { ack, dial, dumpReply, parseHexFixture } from '../src/netlink/core/testing.js';

/** The answer of one probe: whether the kernel has the feature, and the kernel's words when not. */
export interface Capability {
  ok: boolean;
  /** The kernel configuration option the feature needs ("CONFIG_IP_MROUTE"). */
  config: string;
  /** What the kernel answered when it refused ("setsockopt MRT_INIT: ENOPROTOOPT"). */
  reason: string;
}

/** The marker a test prints when it cannot apply on this kernel; scripts/test.mjs counts these lines. */
export const NOT_APPLICABLE = 'TSNETLINK-NOT-APPLICABLE';

// Kernel options behind each link kind (drivers/net, net/*), named in the report when a kind is missing.
const kindConfig: Record<string, string> = {
  bridge: 'CONFIG_BRIDGE', veth: 'CONFIG_VETH', vxlan: 'CONFIG_VXLAN', macvlan: 'CONFIG_MACVLAN', macvtap: 'CONFIG_MACVTAP',
  ipvlan: 'CONFIG_IPVLAN', ifb: 'CONFIG_IFB', dummy: 'CONFIG_DUMMY', vlan: 'CONFIG_VLAN_8021Q', bond: 'CONFIG_BONDING',
  vrf: 'CONFIG_NET_VRF', wireguard: 'CONFIG_WIREGUARD', geneve: 'CONFIG_GENEVE', netkit: 'CONFIG_NETKIT', nlmon: 'CONFIG_NLMON',
  tun: 'CONFIG_TUN', xfrm: 'CONFIG_XFRM_INTERFACE', vti: 'CONFIG_NET_IPVTI', vti6: 'CONFIG_IPV6_VTI', ip6tnl: 'CONFIG_IPV6_TUNNEL',
  ip6gre: 'CONFIG_IPV6_GRE', erspan: 'CONFIG_NET_IPGRE', ip6erspan: 'CONFIG_IPV6_GRE', macsec: 'CONFIG_MACSEC',
  bareudp: 'CONFIG_BAREUDP', amt: 'CONFIG_AMT', hsr: 'CONFIG_HSR', vxcan: 'CONFIG_CAN_VXCAN',
};
// The arguments `ip link add NAME type KIND ...` needs for each kind; LOWER names a veth made first.
const kindArgs: Record<string, string> = {
  vxlan: 'id 1 dstport 4789', macvlan: 'mode bridge', macvtap: 'mode bridge', ipvlan: 'mode l2', vlan: 'id 5', vrf: 'table 10',
  geneve: 'id 1 remote 192.0.2.1', bond: 'mode active-backup', xfrm: 'if_id 7',
  erspan: 'remote 192.0.2.1 seq key 1 erspan 1', ip6erspan: 'remote fd00::2 seq key 1 erspan 1', macsec: 'port 1',
  bareudp: 'dstport 6635 ethertype mpls_uc', amt: 'mode gateway local 192.0.2.1 discovery 192.0.2.2 dev l0', hsr: 'slave1 l0 slave2 l1', vxcan: 'peer name p1',
};
const needsLower = new Set(['vxlan', 'macvlan', 'macvtap', 'ipvlan', 'vlan', 'macsec', 'amt', 'hsr']);

let memo: Record<string, Capability> | undefined;
function cache(): Record<string, Capability> {
  if (memo) return memo;
  memo = {};
  const file = process.env['TSNETLINK_KERNEL_CAPS'];
  if (file) {
    try {
      memo = JSON.parse(readFileSync(file, 'utf8')) as Record<string, Capability>;
    } catch {
      // No answer cached yet in this run.
    }
  }
  return memo;
}
function remember(feature: string, c: Capability): Capability {
  const all = cache();
  all[feature] = c;
  const file = process.env['TSNETLINK_KERNEL_CAPS'];
  if (file) {
    // Parallel test files may probe at once: merge with what another wrote, replace atomically.
    let merged = all;
    try {
      merged = { ...(JSON.parse(readFileSync(file, 'utf8')) as Record<string, Capability>), ...all };
    } catch {
      // First answer of the run.
    }
    writeFileSync(`${file}.${process.pid}`, JSON.stringify(merged));
    renameSync(`${file}.${process.pid}`, file);
  }
  return c;
}

/** Runs a shell script in a fresh network namespace of its own, so a probe leaves nothing behind in the test's. */
function inThrowawayNetns(script: string): { ok: boolean; err: string } {
  const r = spawnSync('unshare', ['--net', 'sh', '-ec', script], { encoding: 'utf8' });
  return { ok: r.status === 0, err: `${r.stderr ?? ''}`.trim().split('\n').pop() ?? '' };
}

function probeKind(kind: string): Capability {
  const config = kindConfig[kind] ?? `CONFIG for link kind ${kind}`;
  const lower = needsLower.has(kind) ? 'ip link add l0 type veth peer name l1; ' : '';
  const type = kind === 'tun' ? 'ip tuntap add p0 mode tun' : `ip link add ${needsLower.has(kind) ? 'link l0 ' : ''}p0 type ${kind} ${kindArgs[kind] ?? ''}`;
  const r = inThrowawayNetns(`${lower}${type}`);
  return { ok: r.ok, config, reason: r.ok ? '' : `ip link add type ${kind}: ${r.err}` };
}

function probeMroute(): Capability {
  const config = 'CONFIG_IP_MROUTE';
  // MRT_INIT on a raw IGMP socket is what a multicast router (pimd, smcroute) starts with.
  const fd = libc.socket(2, libc.SOCK_RAW | libc.SOCK_CLOEXEC, 2);
  try {
    libc.setsockoptInt(fd, 0, 200, 1);
    return { ok: true, config, reason: '' };
  } catch (e) {
    return { ok: false, config, reason: `setsockopt MRT_INIT: ${(e as { code?: string }).code ?? (e as Error).message}` };
  } finally {
    libc.close(fd);
  }
}

// An lwtunnel encap of each type, as `ip route add ... encap TYPE ...` writes it.
const encaps: Record<string, { config: string; route: string }> = {
  seg6: { config: 'CONFIG_IPV6_SEG6_LWTUNNEL', route: 'ip -6 route add fd00:ffff::/64 encap seg6 mode encap segs fd00::1 dev lo' },
  mpls: { config: 'CONFIG_MPLS_IPTUNNEL', route: 'ip route add 10.255.0.0/24 encap mpls 100 dev lo' },
};
function probeEncap(type: string): Capability {
  const e = encaps[type];
  if (!e) throw new Error(`no probe for lwtunnel encap ${type}`);
  const r = inThrowawayNetns(`ip link set lo up; ${e.route}`);
  return { ok: r.ok, config: e.config, reason: r.ok ? '' : `${e.route.split(' encap')[0]} encap ${type}: ${r.err}` };
}

// The arguments a qdisc that refuses to be made without options is made with (`qdisc:KIND`, `sch:KIND`).
const schArgs: Record<string, string> = { tbf: 'rate 1mbit burst 32kb latency 50ms', htb: 'default 10' };

function probeSch(kind: string): Capability {
  const where = kind === 'clsact' || kind === 'ingress' ? kind : `root ${kind}`;
  const r = inThrowawayNetns(`ip link add l0 type veth peer name l1; tc qdisc add dev l0 ${where} ${schArgs[kind] ?? ''}`);
  return { ok: r.ok, config: `CONFIG_NET_SCH_${kind.toUpperCase()}`, reason: r.ok ? '' : `tc qdisc add ${kind} ${schArgs[kind] ?? ''}: ${r.err}` };
}

// The arguments a classifier or an action needs to be accepted, on an ingress qdisc of l0 (its peer is l1).
const clsArgs: Record<string, string> = { u32: 'match u32 0 0', matchall: '', bpf: 'bytecode "1,6 0 0 0,"' };
const actArgs: Record<string, string> = { mirred: 'egress redirect dev l1', gact: 'pass', police: 'rate 1mbit burst 10k' };

function probeCls(kind: string): Capability {
  const r = inThrowawayNetns(`ip link add l0 type veth peer name l1; tc qdisc add dev l0 ingress; tc filter add dev l0 parent ffff: ${kind} ${clsArgs[kind] ?? ''}`);
  return { ok: r.ok, config: `CONFIG_NET_CLS_${kind.toUpperCase()}`, reason: r.ok ? '' : `tc filter add ${kind}: ${r.err}` };
}

function probeAct(kind: string): Capability {
  const r = inThrowawayNetns(`ip link add l0 type veth peer name l1; tc qdisc add dev l0 ingress; tc filter add dev l0 parent ffff: u32 match u32 0 0 action ${kind} ${actArgs[kind] ?? ''}`);
  return { ok: r.ok, config: `CONFIG_NET_ACT_${kind.toUpperCase()} (probed on a u32 filter)`, reason: r.ok ? '' : `tc action ${kind}: ${r.err}` };
}

function probeNftables(): Capability {
  const r = inThrowawayNetns('nft add table inet tsnetlink_probe');
  return { ok: r.ok, config: 'CONFIG_NF_TABLES', reason: r.ok ? '' : `nft add table: ${r.err}` };
}

function probeNftBridge(): Capability {
  const r = inThrowawayNetns('nft add table bridge tsnetlink_probe');
  return { ok: r.ok, config: 'CONFIG_NF_TABLES_BRIDGE', reason: r.ok ? '' : `nft add table bridge: ${r.err}` };
}

function probeIptablesLegacy(): Capability {
  // The legacy tools speak to x_tables, which a kernel built for nf_tables alone may lack.
  const r = inThrowawayNetns('iptables-legacy -t nat -S >/dev/null && iptables-legacy -t filter -S >/dev/null');
  return { ok: r.ok, config: 'CONFIG_IP_NF_IPTABLES, CONFIG_IP_NF_NAT', reason: r.ok ? '' : `iptables-legacy -t nat -S: ${r.err}` };
}

function probeGenl(family: string): Capability {
  const r = inThrowawayNetns(`genl ctrl get name ${family} >/dev/null`);
  const config = ({ ethtool: 'CONFIG_ETHTOOL_NETLINK', wireguard: 'CONFIG_WIREGUARD' } as Record<string, string>)[family] ?? `the ${family} generic netlink family`;
  return { ok: r.ok, config, reason: r.ok ? '' : `genl ctrl get name ${family}: ${r.err}` };
}

// `xfrm` is the netlink interface (CONFIG_XFRM_USER); `xfrm:esp` and `xfrm:ah` an SA of that
// protocol, which needs its transform in the kernel (an SA is refused with "Requested type not found").
const xfrmStates: Record<string, string> = {
  esp: 'ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 enc aes 0x000102030405060708090a0b0c0d0e0f',
  ah: 'ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x100 auth sha256 0x000102030405060708090a0b0c0d0e0f',
};
function probeXfrm(proto: string): Capability {
  if (proto === '') {
    const r = inThrowawayNetns('ip xfrm policy list >/dev/null');
    return { ok: r.ok, config: 'CONFIG_XFRM_USER', reason: r.ok ? '' : `ip xfrm policy list: ${r.err}` };
  }
  const cmd = xfrmStates[proto];
  if (!cmd) throw new Error(`no probe for xfrm protocol ${proto}`);
  const r = inThrowawayNetns(cmd);
  return { ok: r.ok, config: `CONFIG_INET_${proto.toUpperCase()}`, reason: r.ok ? '' : `ip xfrm state add proto ${proto}: ${r.err}` };
}

function probeIpset(type: string): Capability {
  const args = type.startsWith('bitmap:') ? 'range 192.0.2.0/24' : '';
  const r = inThrowawayNetns(type === '' ? 'ipset list >/dev/null' : `ipset create tsnetlink_probe ${type} ${args}`);
  const config = type === '' ? 'CONFIG_IP_SET' : `CONFIG_IP_SET_${type.toUpperCase().replace(/[:,]/g, '_')}`;
  return { ok: r.ok, config, reason: r.ok ? '' : `ipset ${type === '' ? 'list' : `create ${type}`}: ${r.err}` };
}

function probeMpls(): Capability {
  const r = inThrowawayNetns('sysctl -q -w net.mpls.platform_labels=1000');
  return { ok: r.ok, config: 'CONFIG_MPLS_ROUTING', reason: r.ok ? '' : `net.mpls.platform_labels: ${r.err}` };
}

/**
 * Whether the kernel has `feature`: `link:KIND`, `mroute`, `encap:seg6`, `encap:mpls`, `mpls`,
 * `qdisc:KIND` or `sch:KIND` (a qdisc made with the options it needs), `cls:KIND` (a tc classifier), `act:KIND` (a tc action), `nftables`, `nftables:bridge`, `iptables-legacy`, `genl:FAMILY`, `xfrm` (the netlink interface), `xfrm:esp` or `xfrm:ah` (an SA of that protocol), `ipset` or `ipset:TYPE` (a set of that type). Asked once per run; later calls read the cached answer.
 */
export function kernelHas(feature: string): Capability {
  const known = cache()[feature];
  if (known) return known;
  const [what, arg = ''] = feature.split(':');
  let c: Capability;
  if (what === 'link') c = probeKind(arg);
  else if (what === 'mroute') c = probeMroute();
  else if (what === 'encap') c = probeEncap(arg);
  else if (what === 'qdisc' || what === 'sch') c = probeSch(arg);
  else if (what === 'cls') c = probeCls(arg);
  else if (what === 'act') c = probeAct(arg);
  else if (what === 'nftables') c = arg === 'bridge' ? probeNftBridge() : probeNftables();
  else if (what === 'iptables-legacy') c = probeIptablesLegacy();
  else if (what === 'genl') c = probeGenl(arg);
  else if (what === 'mpls') c = probeMpls();
  else if (what === 'xfrm') c = probeXfrm(arg);
  else if (what === 'ipset') c = probeIpset(feature.slice('ipset:'.length));
  else throw new Error(`no probe for kernel feature ${feature}`);
  return remember(feature, c);
}

/** The features of `needs` this kernel lacks, each with its configuration option and the kernel's answer. */
export function missing(needs: readonly string[]): Capability[] {
  return needs.map(kernelHas).filter((c) => !c.ok);
}

/** Prints the marker line that reports a test as not applicable on this kernel, with its reasons. */
export function reportNotApplicable(file: string, name: string, lacks: readonly Capability[]): void {
  const why = lacks.map((c) => `${c.config} (${c.reason})`).join('; ');
  process.stdout.write(`\n${NOT_APPLICABLE}\t${file}\t${name}\t${why}\n`);
}

/**
 * A uvu test that needs kernel features. `captured` runs the code path on captured bytes (the fake
 * kernel, fixtures) on every kernel, so it cannot rot where it is not the only check; `live` runs
 * against the kernel when it has them all. When it lacks one, the test is reported as not
 * applicable on this kernel, by name with the reason, instead of as passed.
 */
export function kernelTest(t: Test, file: string, name: string, needs: readonly string[], live: () => unknown, captured: () => unknown): void {
  t(name, async () => {
    await captured();
    const lacks = missing(needs);
    if (lacks.length === 0) await live();
    else reportNotApplicable(file, name, lacks);
  });
}


const fixtureDir = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));

/** The bytes of a captured fixture (test/fixtures/NAME), as iproute2 or the kernel sent them. */
export function fixtureBytes(name: string): Buffer {
  return parseHexFixture(readFileSync(fixtureDir + name, 'utf8'));
}

/** A message's bytes with nlmsg_seq and nlmsg_pid zeroed, as the fixtures store them. */
export function zeroed(m: RawMessage): Buffer {
  const b = Buffer.alloc(16 + m.payload.length);
  b.writeUInt32LE(m.len, 0);
  b.writeUInt16LE(m.type, 4);
  b.writeUInt16LE(m.flags, 6);
  m.payload.copy(b, 16);
  return b;
}

/**
 * An Rtnl on the fake kernel that answers every dump with the messages captured from a real
 * kernel in the `replies` fixtures (those of the dumped type, and of the asked family when one
 * is given), and acks every other request; `sent` holds what the library sent, to compare with
 * iproute2's captured requests. This is how a test runs its code path on a kernel that lacks
 * the feature.
 */
export function fixtureRtnl(replies: readonly string[]): { rt: Rtnl; sent: RawMessage[] } {
  const captured = replies.flatMap((f) => splitMessages(fixtureBytes(f)));
  const sent: RawMessage[] = [];
  const sock = dial((req) => {
    if ((req.flags & NLM_F.DUMP) !== NLM_F.DUMP) {
      sent.push(req);
      return [ack(req)];
    }
    // rtnetlink numbers each object's NEW, DEL and GET types in a row: a GET dump is answered by NEW messages.
    const family = req.payload[0] ?? 0;
    const bodies = captured.filter((m) => m.type === req.type - 2 && (family === 0 || m.payload[0] === family)).map((m) => m.payload);
    return dumpReply(req, req.type - 2, bodies);
  });
  return { rt: new Rtnl(sock), sent };
}

/**
 * Whether the library's request encodes to the tool's captured bytes (fixture NAME), as the kernel
 * would receive it; `flags` are those the socket adds (a GET the tool sends without an ack: REQUEST).
 */
export function sameAsCapture(name: string, req: Request, flags: number = NLM_F.REQUEST | NLM_F.ACK): boolean {
  return encode({ ...req, flags: req.flags | flags }, 0, 0).equals(fixtureBytes(name));
}

/**
 * The uvu suite of a whole test file that needs kernel features (its setup would fail without
 * them). Where the kernel has them it is a plain suite; where it lacks one, every test of the file
 * is reported not applicable by name with the reason, and no hook runs. The code such a file drives
 * is covered on captured bytes by the unit tests (test/unit/*fixtures*), which run on every kernel.
 */
export function kernelSuite(file: string, needs: readonly string[]): Test {
  const t = suite(file);
  const lacks = missing(needs);
  if (lacks.length === 0) return t;
  const noop = Object.assign(() => undefined, { each: () => undefined });
  const na = (name: string): void => t(name, () => reportNotApplicable(file, name, lacks));
  return Object.assign(na, { before: noop, after: noop, only: na, skip: t.skip, run: () => t.run() }) as unknown as Test;
}
