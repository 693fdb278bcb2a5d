/**
 * End-to-end with containerd 1.6 and `ctr run --cni`: ctr reads the tsnetlink conflist from
 * /etc/cni/net.d (a private tmpfs here) and runs the plugin from /opt/cni/bin (another one), behind
 * a wrapper that logs each call. A foreground container gets its address from tsnetlink's IPAM,
 * reaches a server on the host through the bridge, and on exit ctr's DEL leaves nothing behind. A
 * detached container (ctr never sends DEL for those) is served from the host, and CNI GC with an
 * empty list of valid attachments frees what its killed task left. Runs only in the sandbox.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { requireSandbox } from '../helpers.js';
import { cni, hostLinks, taggedRules, run } from './cni-lib.js';
import { Containerd, haveRuntime, hideUnifiedCgroup } from './cni-runtimes.js';

requireSandbox('cni-containerd');

const missing = haveRuntime(['containerd', 'ctr', 'runc', 'busybox']);
if (missing.length > 0) {
  console.error(`cni-containerd.e2e: ${missing.join(', ')} not installed (bash scripts/setup.sh installs them)`);
  process.exit(1);
}

const NET = 'tsnctr';
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
const PLUGIN_CONF = {
  type: 'tsnetlink',
  bridge: 'tsnctr0',
  isGateway: true,
  ipMasq: true,
  ipam: { type: 'tsnetlink', ranges: [[{ subnet: '10.94.0.0/24', gateway: '10.94.0.1' }]], routes: [{ dst: '0.0.0.0/0' }] },
};
const CONFLIST = { cniVersion: '1.0.0', name: NET, plugins: [PLUGIN_CONF] };

let ctrd: Containerd;
let server: http.Server | undefined;

/** `ctr ARGS` without blocking this process, so that its server can answer the container. */
function ctrAsync(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ctr', ['--address', ctrd.sock, ...args], { timeout: 60_000, encoding: 'utf8' }, (e, out, err) => (e ? reject(new Error(`ctr ${args.join(' ')}: ${e.message} ${err}`)) : resolve(out)));
  });
}

/** GET http://host:port/ from this process; the body. */
function httpGet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/', timeout: 4000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${host}:${port}`)));
    req.on('error', reject);
  });
}

/** Nothing of the network left: no links, no rules, no addresses or host ports held, no record. */
function nothingLeft(what: string): void {
  assert.equal(hostLinks(), [], `${what}: links`);
  assert.equal(taggedRules(NET), [], `${what}: rules`);
  assert.is(existsSync(`/run/tsnetlink/networks/${NET}.json`), false, `${what}: record`);
  assert.equal(existsSync('/run/tsnetlink/ports') ? readdirSync('/run/tsnetlink/ports') : [], [], `${what}: host ports`);
}

test.before(async () => {
  hideUnifiedCgroup();
  ctrd = new Containerd('hello from ctr');
  ctrd.writeConflist(CONFLIST);
  await ctrd.start();
  server = http.createServer((_req, res) => res.end(`host saw ${_req.socket.remoteAddress?.replace(/^::ffff:/, '')}`));
  await new Promise<void>((r) => server!.listen(8000, '0.0.0.0', r));
});

test.after(async () => {
  server?.close();
  await ctrd?.stop();
});

test('ctr run --cni: address from tsnetlink, the host reached through the bridge, DEL on exit leaves nothing', async () => {
  const out = await ctrAsync(['run', '--cni', '--rm', '--rootfs', ctrd.rootfs, 'fg1', '/bin/sh', '-c', 'export PATH=/bin; ip -4 -o addr show eth0; ip route; timeout 5 wget -qO- http://10.94.0.1:8000/']);
  assert.match(out, /inet 10\.94\.0\.2\/24/, out);
  assert.match(out, /default via 10\.94\.0\.1/, out);
  assert.match(out, /host saw 10\.94\.0\.2/, out);
  const calls = ctrd.calls().filter((l) => l.includes('fg1'));
  assert.equal(calls.map((l) => l.split(' ')[0]), ['ADD', 'DEL'], calls.join('\n'));
  assert.match(calls[0]!, /^ADD default-fg1 eth0 netns=\/proc\/\d+\/ns\/net$/);
  nothingLeft('after the foreground container');
});

test('ctr run -d --cni: served from the host; its killed task left the attachment, CNI GC frees it', async () => {
  await ctrAsync(['run', '-d', '--cni', '--rootfs', ctrd.rootfs, 'bg1', '/bin/httpd', '-f', '-p', '80', '-h', '/www']);
  const info = JSON.parse(run(process.execPath, [CLI, 'network', 'inspect', NET]));
  assert.is(info.createdBy, 'cni');
  assert.is(info.endpoints.length, 1);
  const ip = info.endpoints[0].ip as string;
  assert.is(await httpGet(ip, 80), 'hello from ctr');
  await ctrAsync(['task', 'kill', '-s', 'KILL', 'bg1']);
  for (let i = 0; i < 50 && !/STOPPED/.test(await ctrAsync(['task', 'ls'])); i++) await new Promise((r) => setTimeout(r, 100));
  await ctrAsync(['task', 'rm', 'bg1']);
  await ctrAsync(['containers', 'rm', 'bg1']);
  assert.equal(ctrd.calls().filter((l) => l.includes('bg1')).map((l) => l.split(' ')[0]), ['ADD'], 'ctr -d sends no DEL');
  assert.is(JSON.parse(run(process.execPath, [CLI, 'network', 'inspect', NET])).endpoints.length, 1, 'so the attachment is still held');
  const gc = cni('GC', { ...PLUGIN_CONF, cniVersion: '1.1.0', name: NET, 'cni.dev/valid-attachments': [] });
  assert.is(gc.status, 0, gc.out + gc.err);
  nothingLeft('after GC');
});

test.run();
