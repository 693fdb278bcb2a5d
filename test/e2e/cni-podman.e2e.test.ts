/**
 * End-to-end with Podman 4.3 and its CNI backend, as a user would switch a network to tsnetlink:
 * `podman network create`, the conflist rewritten to the one tsnetlink plugin, two containers
 * (one with --ip), container to container, a published port from 127.0.0.1, from the host's own
 * address and from an "outside" netns, hairpin, outbound masquerade, `network reload`,
 * stop/start, `rm -f` and `network rm`, after which nothing is left (links, rules, addresses,
 * state). Runs only in the sandbox; CI installs podman, crun, conmon and busybox-static.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { requireSandbox, ipJson } from '../helpers.js';
import { openNetns, withNetns } from '../../src/index.js';
import { hostLinks, taggedRules, run } from './cni-lib.js';
import { haveRuntime, hideUnifiedCgroup, Podman, toTsnetlink } from './cni-runtimes.js';

requireSandbox('cni-podman');

const missing = haveRuntime(['podman', 'crun', 'conmon', 'busybox']);
if (missing.length > 0) {
  console.error(`cni-podman.e2e: ${missing.join(', ')} not installed (bash scripts/setup.sh installs them)`);
  process.exit(1);
}

const NET = 'tsnpod';
const SUBNET = '10.93.0';
const HOST_IP = '192.0.2.1';
const OUTSIDE_IP = '192.0.2.2';

/** GET http://host:port/ from this process; the body, or "unreachable: ..." */
function httpGet(host: string, port: number, ms = 4000): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', timeout: ms }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`unreachable: ${e.message}`));
  });
}

/** httpGet, retried for up to 5 s: a container's httpd may still be starting when podman returns. */
async function served(host: string, port: number): Promise<string> {
  const end = Date.now() + 5000;
  for (;;) {
    const body = await httpGet(host, port, 1500);
    if (!body.startsWith('unreachable') || Date.now() > end) return body;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** busybox wget inside a named netns (timeout(1) instead of -T, which segfaults in busybox 1.35). */
function wgetIn(ns: string, url: string): string {
  const r = run('ip', ['netns', 'exec', ns, 'timeout', '5', 'busybox', 'wget', '-qO-', url], { timeout: 10_000 });
  return r;
}

let podman: Podman;
let outsideServer: net.Server | undefined;

test.before(() => {
  hideUnifiedCgroup();
  // The "uplink": the host's own address on a veth, the other end in an outside netns.
  run('ip', ['netns', 'add', 'outside']);
  run('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'outside']);
  run('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'uplink0']);
  run('ip', ['link', 'set', 'uplink0', 'up']);
  run('ip', ['-n', 'outside', 'addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'eth0']);
  run('ip', ['-n', 'outside', 'link', 'set', 'eth0', 'up']);
  run('ip', ['-n', 'outside', 'link', 'set', 'lo', 'up']);
  // A server outside that tells each client the source address it saw.
  const ns = openNetns({ name: 'outside' });
  outsideServer = withNetns(ns, () => net.createServer((s) => s.end(`HTTP/1.0 200 OK\r\n\r\nfrom ${s.remoteAddress?.replace(/^::ffff:/, '')}`)).listen(9000));
  ns.close();
  podman = new Podman('hello from c1');
});

test.after(() => {
  outsideServer?.close();
  podman?.cleanup();
});

test('podman network create, conflist switched to tsnetlink, two containers, traffic of every kind', async () => {
  podman.cmd('network', 'create', '--subnet', `${SUBNET}.0/24`, NET);
  toTsnetlink(podman.conflistPath(NET));
  podman.runHttpd('c1', ['--network', NET, '-p', '8080:80']);
  podman.runHttpd('c2', ['--network', NET, '--ip', `${SUBNET}.50`]);
  // tsnetlink's own view: the network Podman named, two endpoints, c2 at the address it asked for.
  const info = JSON.parse(run(process.execPath, [new URL('../../src/cli/main.js', import.meta.url).pathname, 'network', 'inspect', NET]));
  assert.is(info.bridge, 'cni-podman1');
  assert.is(info.createdBy, 'cni');
  const ips = info.endpoints.map((e: { ip: string }) => e.ip).sort();
  assert.equal(ips, [`${SUBNET}.2`, `${SUBNET}.50`]);
  const c1ip = info.endpoints.find((e: any) => e.mappings.length === 1).ip;
  // c2's interface (the kernel's view, from inside its netns).
  const c2ns = podman.cmd('inspect', '--format', '{{.NetworkSettings.SandboxKey}}', 'c2');
  const c2name = c2ns.split('/').pop()!;
  const addrs = ipJson(['-n', c2name, 'addr', 'show', 'eth0']);
  assert.ok(addrs[0].addr_info.some((a: any) => a.local === `${SUBNET}.50`), JSON.stringify(addrs));
  // Container to container.
  assert.is(podman.cmd('exec', 'c2', 'timeout', '5', 'wget', '-qO-', `http://${c1ip}/`), 'hello from c1');
  // The published port from the host's loopback, from its own address, and from outside.
  assert.is(await served('127.0.0.1', 8080), 'hello from c1');
  assert.is(await httpGet(HOST_IP, 8080), 'hello from c1');
  assert.is(wgetIn('outside', `http://${HOST_IP}:8080/`), 'hello from c1');
  // Hairpin: c1 reaches its own published port through the host's address.
  assert.is(podman.cmd('exec', 'c1', 'timeout', '5', 'wget', '-qO-', `http://${HOST_IP}:8080/`), 'hello from c1');
  // Outbound: masqueraded behind the host's address.
  assert.is(await podman.cmdAsync('exec', 'c2', 'timeout', '5', 'wget', '-qO-', `http://${OUTSIDE_IP}:9000/`), `from ${HOST_IP}`);
  // The outside cannot reach c2 directly (isolation from the uplink).
  run('ip', ['-n', 'outside', 'route', 'add', `${SUBNET}.0/24`, 'via', HOST_IP]);
  // (busybox wget from a process inside that netns: a socket of this process would connect from here)
  const direct = spawnSync('ip', ['netns', 'exec', 'outside', 'timeout', '3', 'busybox', 'wget', '-qO-', `http://${SUBNET}.50/`], { encoding: 'utf8' });
  assert.is.not(direct.status, 0, `reached c2 directly: ${direct.stdout}`);
  // The same request to the published port works, so the probe itself can succeed.
  assert.is(wgetIn('outside', `http://${HOST_IP}:8080/`), 'hello from c1');
});

test('network reload and stop/start keep the port working; CHECK-free runtime, records consistent', async () => {
  podman.cmd('network', 'reload', 'c1');
  assert.is(await served('127.0.0.1', 8080), 'hello from c1', 'after network reload');
  podman.cmd('stop', '-t', '0', 'c1');
  assert.match(await httpGet('127.0.0.1', 8080, 1500), /^unreachable/, 'stopped: its port is gone');
  const during = JSON.parse(run(process.execPath, [new URL('../../src/cli/main.js', import.meta.url).pathname, 'network', 'inspect', NET]));
  assert.is(during.endpoints.length, 1, 'its endpoint went with the stop (DEL)');
  podman.cmd('start', 'c1');
  assert.is(await served('127.0.0.1', 8080), 'hello from c1', 'after start');
  assert.match(run(process.execPath, [new URL('../../src/cli/main.js', import.meta.url).pathname, 'network', 'check']).trim(), /^consistent/);
});

test('rm -f and network rm: nothing left (links, rules, addresses, host ports, state)', () => {
  podman.cmd('rm', '-f', '-t', '0', 'c1', 'c2');
  podman.cmd('network', 'rm', NET);
  assert.equal(hostLinks(), ['uplink0']);
  assert.equal(taggedRules(NET), []);
  assert.is(existsSync(`/run/tsnetlink/networks/${NET}.json`), false);
  assert.is(existsSync(`/run/tsnetlink/networks/${NET}`), false);
  assert.equal(readdirSync('/run/tsnetlink/ports'), []);
});

test.run();
