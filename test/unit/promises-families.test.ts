/**
 * The promise twins of every family handle beside Rtnl (Genl, Ethtool, WireGuard, Conntrack,
 * Ipset, Xfrm, SockDiag) against their synchronous forms on the fake kernel, answering from the
 * captured replies of test/fixtures: for every operation, listed from the family's operations
 * class, the same bytes sent and the same result or error; and all of them in flight at once on
 * one handle, each settled with its own answer (test/twins.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ack, dial, dumpReply, parseHexFixture, reply, type Handler } from '../../src/netlink/core/testing.js';
import { decodePayload, splitMessages, type RawMessage } from '../../src/netlink/core/message.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { ctrlMessage, Genl, GENL_ID_CTRL, GENL_OPERATIONS } from '../../src/netlink/genl/genl.js';
import * as E from '../../src/netlink/genl/ethtool.js';
import * as W from '../../src/netlink/genl/wireguard.js';
import * as CT from '../../src/netlink/netfilter/conntrack.js';
import { Conntrack, CONNTRACK_OPERATIONS } from '../../src/netlink/netfilter/conntrack-client.js';
import * as IS from '../../src/netlink/netfilter/ipset-schema.js';
import { Ipset, IPSET_OPERATIONS } from '../../src/netlink/netfilter/ipset.js';
import { Xfrm, XFRM_OPERATIONS } from '../../src/netlink/xfrm/xfrm.js';
import { XFRM_MSG, xfrmTypeName } from '../../src/netlink/xfrm/xfrm-schema.js';
import { SockDiag, SOCKDIAG_OPERATIONS, SOCK_DIAG_BY_FAMILY, sockDiagTypeName } from '../../src/netlink/sockdiag/sockdiag.js';
import { ValidationError } from '../../src/errors.js';
import { twinTests } from '../twins.js';
import { wgFixtureKeys } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
/** The messages of a captured reply, NLMSG_ERROR and NLMSG_DONE left out. */
const messages = (name: string): RawMessage[] => splitMessages(parseHexFixture(readFileSync(dir + name, 'utf8'))).filter((m) => m.type >= 16);
const first = (name: string): RawMessage => messages(name)[0]!;
const isDump = (req: RawMessage): boolean => (req.flags & NLM_F.DUMP) === NLM_F.DUMP;
/** The captured message answering a request, then the ack it asked for. */
const answer = (req: RawMessage, m: RawMessage): Buffer[] => [reply(req, m.type, m.payload), ...((req.flags & NLM_F.ACK) !== 0 ? [ack(req)] : [])];

// ------------------------------------------------------------ generic netlink

const ethtoolFamily = first('genl-ctrl-getfamily.reply.txt');
const wgFamily = first('wg-ctrl-getfamily.built.reply.txt');
const ETHTOOL_ID = decodePayload(ctrlMessage, ethtoolFamily.payload).attrs.familyId!;
const WG_ID = decodePayload(ctrlMessage, wgFamily.payload).attrs.familyId!;

/** A generic netlink kernel with the ethtool and wireguard families, answering with their captured (or built) replies. */
const genlKernel: Handler = (req) => {
  if (req.type === GENL_ID_CTRL) {
    if (isDump(req)) return dumpReply(req, GENL_ID_CTRL, [ethtoolFamily.payload, wgFamily.payload]);
    const name = decodePayload(ctrlMessage, req.payload).attrs.familyName;
    const f = name === 'ethtool' ? ethtoolFamily : name === 'wireguard' ? wgFamily : undefined;
    return f ? answer(req, f) : [ack(req, 2, { message: 'Unknown family' })];
  }
  if (req.type === WG_ID && isDump(req)) return dumpReply(req, WG_ID, messages('wg-get.built.reply.txt').map((m) => m.payload));
  if (req.type === ETHTOOL_ID && isDump(req)) return dumpReply(req, ETHTOOL_ID, [first('ethtool-features-get.reply.txt').payload]);
  if (req.type === ETHTOOL_ID && req.payload[0] === E.ETHTOOL_MSG.STRSET_GET) return answer(req, first('ethtool-strset-get.reply.txt'));
  if (req.type === ETHTOOL_ID && req.payload[0] === E.ETHTOOL_MSG.FEATURES_GET) return answer(req, first('ethtool-features-get.reply.txt'));
  return [ack(req)];
};

twinTests(test, {
  name: 'Genl',
  operations: GENL_OPERATIONS,
  make: (s) => new Genl(s),
  kernel: genlKernel,
  args: {
    family: () => ['ethtool'],
    familyList: () => [],
    request: () => ['ethtool', E.ETHTOOL_MSG.STRSET_GET, E.strsetAttrs, E.strsetRequestAttrs(E.ETH_SS.FEATURES)],
    dump: () => ['ethtool', E.ETHTOOL_MSG.FEATURES_GET, E.featuresAttrs, {}],
  },
});

twinTests(test, {
  name: 'Ethtool',
  operations: E.ETHTOOL_OPERATIONS,
  make: (s) => new E.Ethtool(new Genl(s)),
  kernel: genlKernel,
  args: {
    featureNames: () => [],
    getFeatures: () => ['d0'],
    setFeatures: () => ['d0', { 'tx-tcp-segmentation': false, 'rx-gro': true }],
    getLinkState: () => [3],
    getLinkInfo: () => ['d0'],
  },
});

const keys = wgFixtureKeys();
twinTests(test, {
  name: 'WireGuard',
  operations: W.WIREGUARD_OPERATIONS,
  make: (s) => new W.WireGuard(new Genl(s)),
  kernel: genlKernel,
  args: {
    get: () => ['wg0'],
    // Large enough to go in several messages, as wg splits it.
    set: () => ['wg0', { privateKey: keys.priv, listenPort: 51820, peers: [{ publicKey: keys.peer1, endpoint: '192.0.2.1:51820', allowedIps: Array.from({ length: 300 }, (_, i) => `10.${i >> 8}.${i & 0xff}.0/24`) }] }],
  },
});

// ------------------------------------------------------------ netfilter

const CT_NEW = CT.ctMsgType(CT.IPCTNL_MSG.NEW);
const dumped = messages('conntrack-dump4.reply.txt');

/** A ctnetlink kernel: dumps of the captured IPv4 table, the captured lookup and count, acks. */
const ctKernel: Handler = (req) => {
  if (isDump(req)) return dumpReply(req, CT_NEW, dumped.map((m) => m.payload));
  if (req.type === CT.ctMsgType(CT.IPCTNL_MSG.GET)) return answer(req, first('conntrack-get.reply.txt'));
  if (req.type === CT.ctMsgType(CT.IPCTNL_MSG.GET_STATS)) return answer(req, first('conntrack-count.reply.txt'));
  return [ack(req)];
};

twinTests(test, {
  name: 'Conntrack',
  operations: CONNTRACK_OPERATIONS,
  make: (s) => new Conntrack(s),
  kernel: ctKernel,
  socket: { typeName: CT.ctnlTypeName },
  args: {
    list: () => [{ family: 4, protocol: 'tcp' }],
    get: () => [{ protocol: 'udp', src: '10.1.0.2', dst: '10.2.0.2', srcPort: 40000, dstPort: 5353 }],
    delete: () => [{ family: 4, mark: 0x10 }],
    deleteEntries: () => [dumped.map(CT.decodeConntrack)],
    flush: () => [{ family: 6 }],
    count: () => [],
  },
});

/** An ipset kernel answering ipset's conversation with the captured replies. */
const ipsetKernel: Handler = (req) => {
  const cmd = req.type & 0xff;
  if (cmd === IS.IPSET_CMD.PROTOCOL) return answer(req, first('ipset-protocol.reply.txt'));
  if (cmd === IS.IPSET_CMD.TYPE) return answer(req, first('ipset-type.reply.txt'));
  if (cmd === IS.IPSET_CMD.HEADER) return answer(req, first('ipset-header.reply.txt'));
  if (cmd === IS.IPSET_CMD.LIST) return dumpReply(req, req.type, messages('ipset-list.reply.txt').map((m) => m.payload));
  return [ack(req)];
};

twinTests(test, {
  name: 'Ipset',
  operations: IPSET_OPERATIONS,
  make: (s) => new Ipset(s),
  kernel: ipsetKernel,
  socket: { typeName: IS.ipsetTypeName },
  args: {
    protocol: () => [],
    typeRevision: () => ['hash:ip'],
    create: () => [{ name: 'a', type: 'hash:ip', timeout: 100, counters: true }],
    destroy: () => ['a'],
    flush: () => ['a'],
    rename: () => ['a', 'b'],
    swap: () => ['a', 'b'],
    setType: () => ['b'],
    add: () => ['b', '10.0.0.5', { timeout: 5 }],
    del: () => ['b', { ip: '10.0.0.5' }],
    test: () => ['b', '10.0.0.5'],
    list: () => [],
    names: () => [],
  },
});

// ------------------------------------------------------------ xfrm

const SA = { src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', spi: 0x1000 } as const;
const KEY16 = '0x0102030405060708090a0b0c0d0e0f10';
const POLICY = { sel: { src: '10.1.0.0/24', dst: '10.2.0.0/24' }, dir: 'out', templates: [{ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', reqid: 7, mode: 'tunnel' }] } as const;

/** An XFRM kernel: dumps and gets answered with the captured SAs and policies, changes acked. */
const xfrmKernel: Handler = (req) => {
  if (req.type === XFRM_MSG.GETSA && isDump(req)) return dumpReply(req, XFRM_MSG.NEWSA, messages('xfrm-state-dump.reply.txt').map((m) => m.payload));
  if (req.type === XFRM_MSG.GETPOLICY && isDump(req)) return dumpReply(req, XFRM_MSG.NEWPOLICY, messages('xfrm-policy-dump.reply.txt').map((m) => m.payload));
  if (req.type === XFRM_MSG.ALLOCSPI) return answer(req, first('xfrm-state-allocspi.reply.txt'));
  if (req.type === XFRM_MSG.GETSA) return answer(req, first('xfrm-state-get.reply.txt'));
  if (req.type === XFRM_MSG.GETPOLICY) return answer(req, first('xfrm-policy-get.reply.txt'));
  return [ack(req)];
};

twinTests(test, {
  name: 'Xfrm',
  operations: XFRM_OPERATIONS,
  make: (s) => new Xfrm(s),
  kernel: xfrmKernel,
  socket: { typeName: xfrmTypeName },
  args: {
    stateAdd: () => [{ ...SA, reqid: 7, mode: 'tunnel', enc: { name: 'aes', key: KEY16 } }],
    stateUpdate: () => [{ ...SA, enc: { name: 'aes', key: KEY16 } }],
    stateAllocSpi: () => [{ src: '10.0.0.1', dst: '10.0.0.2', proto: 'esp', min: 0x1000, max: 0x1000 }],
    stateDelete: () => [SA],
    stateGet: () => [SA],
    stateList: () => [{ proto: 'esp' }],
    stateFlush: () => ['esp'],
    policyAdd: () => [POLICY],
    policyUpdate: () => [{ ...POLICY, priority: 5 }],
    policyDelete: () => [{ sel: POLICY.sel, dir: 'out' }],
    policyGet: () => [{ sel: POLICY.sel, dir: 'out' }],
    policyList: () => [],
    policyFlush: () => ['sub'],
  },
});

// ------------------------------------------------------------ sock_diag

twinTests(test, {
  name: 'SockDiag',
  operations: SOCKDIAG_OPERATIONS,
  make: (s) => new SockDiag(s),
  // By the request's family: AF_UNIX is answered with ss -xa's reply, the others with ss -ltn's.
  kernel: (req) => dumpReply(req, SOCK_DIAG_BY_FAMILY, messages(req.payload[0] === 1 ? 'sockdiag-unix.reply.txt' : 'sockdiag-tcp4.reply.txt').filter((m) => m.type === SOCK_DIAG_BY_FAMILY).map((m) => m.payload)),
  socket: { typeName: sockDiagTypeName },
  args: { socketList: () => [{ family: 4, protocol: 'tcp', states: ['listen'] }], unixList: () => [{ states: ['listen', 'established'] }] },
});

// ------------------------------------------------------------ beyond the generic checks

test('the twins share the handle\'s caches: a family resolved by one form is not asked for again by the other', async () => {
  const s = dial(genlKernel);
  const g = new Genl(s);
  g.family('ethtool');
  await g.promises.family('ethtool');
  await new W.WireGuard(g).promises.get('wg0');
  g.family('wireguard');
  assert.equal(s.transport.sent.map((m) => m.type), [GENL_ID_CTRL, GENL_ID_CTRL, WG_ID]);
});

/** What a call throws, or what its promise rejects with. */
async function failure(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}

test('bad input is refused before anything is sent, by both forms alike', async () => {
  const s = dial(() => []);
  const ct = new Conntrack(s);
  const x = new Xfrm(s);
  const sd = new SockDiag(s);
  const bad: (() => unknown)[] = [
    () => ct.get({ protocol: 'tcp', src: '10.0.0.1', dst: 'fd00::1' }),
    () => ct.promises.get({ protocol: 'tcp', src: '10.0.0.1', dst: 'fd00::1' }),
    () => x.stateAdd({ ...SA, spi: -1 }),
    () => x.promises.stateAdd({ ...SA, spi: -1 }),
    () => sd.socketList({ family: 5 as 4, protocol: 'tcp' }),
    () => sd.promises.socketList({ family: 5 as 4, protocol: 'tcp' }),
  ];
  for (const f of bad) assert.instance(await failure(f), ValidationError, String(f));
  assert.is(s.transport.sent.length, 0);
});

test.run();
