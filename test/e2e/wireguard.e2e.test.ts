/**
 * End-to-end: a WireGuard link made through Rtnl, configured through the WireGuard handle (keys,
 * port, mark, peers with endpoints, keepalives and allowed IPs), read back with our own dump and
 * with `wg show ... dump` when wg(8) is installed, a peer removed, the peers replaced, the link
 * deleted. A kernel without WireGuard (CONFIG_WIREGUARD) reports this not applicable and runs the
 * same calls on the built fixtures instead.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { Genl, Rtnl, WireGuard } from '../../src/index.js';
import * as W from '../../src/netlink/genl/wireguard.js';
import { GENL_ID_CTRL } from '../../src/netlink/genl/genl.js';
import { NLM_F } from '../../src/netlink/core/constants.js';
import { splitMessages } from '../../src/netlink/core/message.js';
import { ack, dial, dumpReply, reply } from '../../src/netlink/core/testing.js';
import { requireSandbox, wgFixtureKeys } from '../helpers.js';
import { fixtureBytes as fixture, kernelTest } from '../kernel.js';

const FILE = 'wireguard';
requireSandbox(FILE);

const hasWg = spawnSync('sh', ['-c', 'command -v wg'], { encoding: 'utf8' }).status === 0;

// Fixed test keys (the built fixtures' keys; none protects anything).
const { priv: PRIV, pub: PUB, peer1: P1, peer2: P2, psk: PSK } = wgFixtureKeys();

const CONFIG: W.WireGuardDeviceSpec = {
  privateKey: PRIV,
  listenPort: 51820,
  fwmark: 0x42,
  peers: [
    { publicKey: P1, presharedKey: PSK, endpoint: '192.0.2.1:51820', persistentKeepalive: 25, allowedIps: ['10.0.0.0/24', 'fd00::/64'] },
    { publicKey: P2, endpoint: '[fd00::1]:51821', allowedIps: ['10.0.1.2/32'] },
  ],
};

/** Checks the device as we read it (and as `wg show DEV dump` prints it, when wg is installed). */
function check(d: W.WireGuardDevice, dev: string): void {
  assert.equal([d.ifname, d.privateKey, d.publicKey, d.listenPort, d.fwmark], [dev, PRIV, PUB, 51820, 0x42]);
  const p1 = d.peers.find((p) => p.publicKey === P1);
  assert.equal([p1?.presharedKey, p1?.endpoint, p1?.persistentKeepalive, p1?.allowedIps.sort()], [PSK, '192.0.2.1:51820', 25, ['10.0.0.0/24', 'fd00::/64']]);
  if (!hasWg) return;
  // wg show DEV dump: the device line, then one line per peer (key, psk, endpoint, allowed IPs, handshake, rx, tx, keepalive).
  const [dline, ...plines] = execFileSync('wg', ['show', dev, 'dump'], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(dline?.split('\t').slice(0, 4), [PRIV, PUB, '51820', '0x42']);
  for (const l of plines) {
    const [pub, psk, endpoint, ips, , , , keepalive] = l.split('\t');
    const p = d.peers.find((x) => x.publicKey === pub);
    assert.ok(p, `wg lists peer ${pub}, our dump does not`);
    assert.equal([psk, endpoint, ips?.split(',').sort().join(','), keepalive], [p.presharedKey ?? '(none)', p.endpoint ?? '(none)', [...p.allowedIps].sort().join(','), p.persistentKeepalive ? String(p.persistentKeepalive) : 'off']);
  }
}

kernelTest(test, FILE, 'a WireGuard link: set keys, port, mark and peers; get (wg show agrees); remove a peer; replace the peers; delete the link', ['genl:wireguard', 'link:wireguard'], () => {
  const rt = Rtnl.open();
  const wg = WireGuard.open();
  try {
    rt.linkAdd('wg0', 'wireguard');
    wg.set('wg0', CONFIG);
    check(wg.get('wg0'), 'wg0');
    wg.set('wg0', { peers: [{ publicKey: P2, remove: true }] });
    assert.equal(wg.get('wg0').peers.map((p) => p.publicKey), [P1]);
    wg.set(rt.linkIndex('wg0'), { replacePeers: true, peers: [{ publicKey: P2, allowedIps: ['0.0.0.0/0'] }] });
    assert.equal(wg.get('wg0').peers.map((p) => [p.publicKey, p.allowedIps]), [[P2, ['0.0.0.0/0']]]);
    wg.set('wg0', { privateKey: null, replacePeers: true });
    const empty = wg.get('wg0');
    assert.equal([empty.privateKey, empty.peers], [undefined, []]);
  } finally {
    wg.close();
    try {
      rt.linkDel('wg0');
    } finally {
      rt.close();
    }
  }
}, () => {
  // On the built fixtures: the family resolved through the controller, the dump assembled, wg's bytes sent.
  const ctrl = splitMessages(fixture('wg-ctrl-getfamily.built.reply.txt'))[0]!;
  const bodies = splitMessages(fixture('wg-get.built.reply.txt')).filter((m) => m.type === 0x20).map((m) => m.payload);
  const sock = dial((req) => (req.type === GENL_ID_CTRL ? [reply(req, GENL_ID_CTRL, ctrl.payload), ack(req)] : (req.flags & NLM_F.DUMP) !== 0 ? dumpReply(req, 0x20, bodies) : [ack(req)]));
  const wg = new WireGuard(new Genl(sock));
  const d = wg.get('wg0');
  assert.equal([d.privateKey, d.publicKey, d.listenPort, d.fwmark, d.peers.length], [PRIV, PUB, 51820, 0x42, 2]);
  wg.set('wg0', { ...CONFIG, peers: [{ ...CONFIG.peers![0]!, replaceAllowedIps: true }, { publicKey: P2, remove: true }] });
  assert.is(sock.transport.sent.at(-1)!.payload.toString('hex'), fixture('wg-set.built.req.txt').subarray(16).toString('hex'));
});

test.run();
