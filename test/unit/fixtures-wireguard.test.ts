/**
 * WireGuard over generic netlink, on fixtures built from the uapi header, wg(8)'s encoding and the
 * kernel's dump code (test/fixtures/tools/wg-built.ts; this kernel has no WireGuard to capture):
 * wg set and setconf byte for byte, wg show's dump request, the kernel's reply assembled across
 * messages, the whole conversation through the WireGuard handle, a configuration too large for
 * one message split as wg splits it, and malformed input refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encode, reencode, splitMessages, decodePayload, type RawMessage } from '../../src/netlink/core/message.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { ctrlMessage, Genl, GENL_ID_CTRL } from '../../src/netlink/genl/genl.js';
import { ack, dial, dumpReply, parseHexFixture, reply } from '../../src/netlink/core/testing.js';
import { CodecError } from '../../src/errors.js';
import * as W from '../../src/netlink/genl/wireguard.js';
import { catchError, wgFixtureKeys } from '../helpers.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));
const text = (name: string): string => readFileSync(dir + name, 'utf8');
const fixture = (name: string): Buffer => parseHexFixture(text(name));
const rows = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join('\n');
const FAMILY = 0x20;

// The keys the fixtures were built with.
const { priv: DEV_PRIV, pub: DEV_PUB, peer1: P1, peer2: P2, psk: PSK } = wgFixtureKeys();

const SET: W.WireGuardDeviceSpec = {
  privateKey: DEV_PRIV,
  listenPort: 51820,
  fwmark: 0x42,
  peers: [
    { publicKey: P1, presharedKey: PSK, endpoint: '192.0.2.1:51820', persistentKeepalive: 25, replaceAllowedIps: true, allowedIps: ['10.0.0.0/24', 'fd00::/64'] },
    { publicKey: P2, remove: true },
  ],
};
const SETCONF: W.WireGuardDeviceSpec = { privateKey: Buffer.from(DEV_PRIV, 'base64'), listenPort: 51820, replacePeers: true, peers: [{ publicKey: P1, endpoint: '[fd00::1]:51820', allowedIps: ['0.0.0.0/0', '::/0'] }] };

const acked = (r: ReturnType<typeof W.getDeviceRequest>): Buffer => encode({ ...r, flags: r.flags | NLM_F.REQUEST | NLM_F.ACK }, 0, 0);

test('wg set and wg setconf: byte for byte as wg(8) encodes them', () => {
  const [set] = W.setDeviceRequests(FAMILY, 'wg0', SET);
  assert.fixture(rows(acked(set!)), rows(fixture('wg-set.built.req.txt')));
  const [conf, ...more] = W.setDeviceRequests(FAMILY, 'wg0', SETCONF);
  assert.equal(more, []);
  assert.fixture(rows(acked(conf!)), rows(fixture('wg-setconf.built.req.txt')));
});

test('wg show: a GET_DEVICE dump of the device by name, with the ack wg asks for', () => {
  const r = W.getDeviceRequest(FAMILY, 'wg0');
  assert.fixture(rows(encode({ ...r, flags: r.flags | NLM_F.REQUEST | NLM_F.DUMP }, 0, 0)), rows(fixture('wg-get.built.req.txt')));
  // By index instead of name.
  assert.equal(decodePayload(W.wgMessage, encode(W.getDeviceRequest(FAMILY, 3)).subarray(16)).attrs.ifindex, 3);
});

const replies = (): RawMessage[] => splitMessages(fixture('wg-get.built.reply.txt')).filter((m) => m.type === FAMILY);

test('the kernel\'s dump: device keys, port, mark; peers with their endpoints, handshake, traffic; a peer continued in a second message', () => {
  const d = W.assembleDevice(replies().map(W.decodeDeviceAttrs));
  assert.equal([d.ifname, d.ifindex, d.listenPort, d.fwmark, d.privateKey, d.publicKey, d.raw.length], ['wg0', 3, 51820, 0x42, DEV_PRIV, DEV_PUB, 2]);
  const [a, b] = d.peers;
  assert.equal(d.peers.length, 2);
  assert.equal([a!.publicKey, a!.presharedKey, a!.endpoint, a!.persistentKeepalive, a!.lastHandshake, a!.txBytes, a!.rxBytes, a!.protocolVersion, a!.allowedIps], [P1, PSK, '192.0.2.1:51820', 25, { sec: 1796640000n, nsec: 250000000n }, 1234n, 5678n, 1, ['10.0.0.0/24', 'fd00::/64']]);
  // No preshared key is all zeros on the wire; the allowed IPs of the second message join the first's.
  assert.equal([b!.publicKey, b!.presharedKey, b!.endpoint, b!.lastHandshake.sec, b!.allowedIps], [P2, undefined, '[fd00::1]:51821', 0n, ['10.0.1.2/32', 'fd00:9::2/128']]);
});

test('every WireGuard message re-encodes to its bytes', () => {
  let n = 0;
  for (const f of readdirSync(dir).filter((x) => x.startsWith('wg-'))) {
    for (const m of splitMessages(fixture(f))) {
      const def = m.type === FAMILY ? W.wgMessage : m.type === GENL_ID_CTRL ? ctrlMessage : undefined;
      if (!def) continue;
      const bytes = reencode(def as typeof W.wgMessage, m, decodePayload(def as typeof W.wgMessage, m.payload));
      assert.is(bytes.subarray(16, 16 + m.payload.length).toString('hex'), m.payload.toString('hex'), f);
      n++;
    }
  }
  assert.is(n, 6);
});

/** A generic netlink kernel with WireGuard as family 0x20: the controller's answer, the dump, acks. */
function wgKernel(): { wg: W.WireGuard; sent: RawMessage[] } {
  const ctrl = splitMessages(fixture('wg-ctrl-getfamily.built.reply.txt'))[0]!;
  const bodies = replies().map((m) => m.payload);
  const sock = dial((req) => {
    if (req.type === GENL_ID_CTRL) return [reply(req, GENL_ID_CTRL, ctrl.payload), ack(req)];
    if ((req.flags & NLM_F.DUMP) !== 0) return dumpReply(req, FAMILY, bodies);
    return [ack(req)];
  });
  return { wg: new W.WireGuard(new Genl(sock)), sent: sock.transport.sent };
}

test('WireGuard resolves the family once, reads the device and sets it as wg does', () => {
  const { wg, sent } = wgKernel();
  const d = wg.get('wg0');
  assert.equal(d.peers.map((p) => p.allowedIps.length), [2, 2]);
  wg.set('wg0', SET);
  assert.equal(sent.map((m) => m.type), [GENL_ID_CTRL, FAMILY, FAMILY]);
  const setMsg = sent[2]!;
  assert.is(setMsg.payload.toString('hex'), fixture('wg-set.built.req.txt').subarray(16).toString('hex'));
});

test('a configuration larger than a message goes in several, as wg splits it: settings first, a peer continued with its key and the rest of its allowed IPs', () => {
  const ips = Array.from({ length: 300 }, (_, i) => `10.${i >> 8}.${i & 0xff}.0/24`);
  const spec: W.WireGuardDeviceSpec = { listenPort: 1, peers: [{ publicKey: P1, endpoint: '192.0.2.1:1', replaceAllowedIps: true, allowedIps: ips }, { publicKey: P2, allowedIps: ['10.9.9.9/32'] }] };
  const reqs = W.setDeviceRequests(FAMILY, 'wg0', spec);
  assert.ok(reqs.length > 1, `${reqs.length} messages`);
  const parts = reqs.map((r) => decodePayload(W.wgMessage, encode(r).subarray(16)).attrs);
  assert.ok(reqs.every((r) => 16 + r.size <= 4096));
  assert.is(parts[0]!.listenPort, 1);
  assert.ok(parts.slice(1).every((p) => p.listenPort === undefined && p.ifname === 'wg0'));
  const p1 = parts.flatMap((p) => p.peers?.peer ?? []).filter((p) => p.publicKey?.equals(Buffer.from(P1, 'base64')));
  assert.ok(p1.length > 1);
  // Only the first part replaces the allowed IPs and carries the endpoint.
  assert.equal(p1.map((p) => [p.flags ?? 0, p.endpoint !== undefined]), p1.map((_, i) => (i === 0 ? [W.WGPEER_F.REPLACE_ALLOWEDIPS, true] : [0, false])));
  const sent = p1.flatMap((p) => (p.allowedips?.allowedip ?? []).map((a) => `${a.ipaddr}/${a.cidrMask}`));
  assert.equal(sent, ips);
  const d = W.assembleDevice(parts);
  assert.equal(d.peers.map((p) => p.allowedIps.length), [300, 1]);
  assert.is(catchError(() => W.setDeviceRequests(FAMILY, 'wg0', spec, 100)).code, 'EINVAL');
});

test('malformed keys, endpoints, prefixes and replies are refused', () => {
  for (const bad of [() => W.keyBytes('short', 'k'), () => W.keyBytes(Buffer.alloc(31), 'k'), () => W.parseEndpoint('fd00::1:51820'), () => W.parseEndpoint('[10.0.0.1]:1'), () => W.parseEndpoint('10.0.0.1:99999'), () => W.setDeviceRequests(FAMILY, 'wg0', { peers: [{ publicKey: P1, allowedIps: ['10.0.0.0/33'] }] })]) {
    assert.is(catchError(bad).code, 'EINVAL', String(bad));
  }
  assert.instance(catchError(() => W.sockaddr.read(Buffer.alloc(12), 0, 12)), CodecError);
  const [m] = replies();
  for (let len = 4; len < m!.payload.length; len += 3) {
    try {
      W.assembleDevice([W.decodeDeviceAttrs({ ...m!, payload: m!.payload.subarray(0, len) })]);
    } catch (e) {
      assert.instance(e, CodecError, `cut at ${len}`);
    }
  }
});

test.run();
