/**
 * The engine's protocol and its clients, without a kernel: request fields and answers encoded
 * and read back at every chunk boundary, requests refused for each malformed field, the rules
 * that send a call back to its caller, the Node client against a fake engine (declined, answered,
 * cut short), and the CNI shim's shell clients (curl over the unix socket; bash over loopback,
 * as root) against the same fake: exact output and exit code, the fallback to the plugin proper
 * when the engine does not take a call, and error 11 when a taken call's answer stops short.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AnswerReader, decodeFields, encodeAnswer, encodeFields, OUTPUT_TYPE, parseHead, stateDirOfArgv, type Field, type Output } from '../../src/engine/protocol.js';
import { BadRequest, Calls, readCall } from '../../src/engine/calls.js';
import { call, forwardCli, forwardCni } from '../../src/engine/client.js';
import { CommitReader, type NftChange, type NftCommit } from '../../src/engine/nftevents.js';
import { touchesOurs } from '../../src/engine/drift.js';
import { namespacesOf, steadyThread } from '../../src/engine/peer.js';
import { encode, splitMessages } from '../../src/netlink/core/message.js';
import { addRuleRequest, delTableRequest } from '../../src/netlink/nftables/objects.js';
import { catchError } from '../helpers.js';

const SHIM = fileURLToPath(new URL('../../../bin/tsnetlink-cni', import.meta.url));
const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(base, 'tsnetlink-engine-'));
  chmodSync(d, 0o700);
  dirs.push(d);
  return d;
}
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ------------------------------------------------------------------ protocol

test('fields: any bytes but the framing survive, lengths in bytes; every malformed body is refused', () => {
  const fields = [{ name: 'arg', value: 'network' }, { name: 'arg', value: '' }, { name: 'stdin', value: Buffer.from('{"é":"\n\n"}\n', 'utf8') }, { name: 'CNI_ARGS', value: 'a=b;c=d\nx' }];
  const body = encodeFields(fields);
  const back = decodeFields(body);
  assert.equal(back.map((f) => [f.name, f.value.toString('utf8')]), fields.map((f) => [f.name, f.value.toString()]));
  assert.is(decodeFields(Buffer.alloc(0)).length, 0);
  for (const bad of ['arg 3\nab\n', 'arg 2\nabc', 'arg x\nab\n', '1arg 1\na\n', 'arg  1\na\n', 'arg 01\na\n', 'arg 1\na', `arg 1\na\n${'y'.repeat(100)}`]) {
    assert.throws(() => decodeFields(Buffer.from(bad)), undefined, JSON.stringify(bad));
  }
  assert.throws(() => encodeFields([{ name: 'bad name', value: '' }]));
});

test('answers: output and exit code read back whole whatever the chunk boundaries; stdout and stderr kept apart', () => {
  const out: Output = { writes: [{ fd: 1, data: Buffer.from('{"a":1}\nline two\n') }, { fd: 2, data: Buffer.from('warn: x') }, { fd: 1, data: Buffer.from('no newline') }, { fd: 2, data: Buffer.from('\n\n') }] };
  const wire = encodeAnswer(out, 3);
  for (let cut = 0; cut <= wire.length; cut++) {
    const got: { fd: number; data: string }[] = [];
    const r = new AnswerReader((fd, d) => got.push({ fd, data: d.toString() }));
    r.push(wire.subarray(0, cut));
    r.push(wire.subarray(cut));
    assert.is(r.code, 3);
    const joined = (fd: number) => got.filter((g) => g.fd === fd).map((g) => g.data).join('');
    assert.is(joined(1), '{"a":1}\nline two\nno newline', `cut at ${cut}`);
    assert.is(joined(2), 'warn: x\n\n', `cut at ${cut}`);
  }
  // Lines of one stream that arrive together are written in one piece (a reader that stops
  // early sees what it would have seen of the process); nothing after the exit code counts.
  const got: string[] = [];
  const r = new AnswerReader((_fd, d) => got.push(d.toString()));
  r.push(Buffer.concat([encodeAnswer({ writes: [{ fd: 1, data: Buffer.from('a\nb\nc\n') }] }, 0), Buffer.from('ozzz\n')]));
  assert.equal(got, ['a\nb\nc\n']);
  assert.is(r.code, 0);
});

test('heads: request and status lines, headers by lower-case name; malformed ones refused', () => {
  const h = parseHead('POST /v1/cli HTTP/1.0\r\nContent-Length: 12\r\nX-Tsnetlink-Token: abc');
  assert.equal([h.method, h.path, h.headers.get('content-length'), h.headers.get('x-tsnetlink-token')], ['POST', '/v1/cli', '12', 'abc']);
  assert.is(parseHead('HTTP/1.0 503 Service Unavailable').status, 503);
  assert.is(parseHead(`HTTP/1.0 200 OK\r\nContent-Type: ${OUTPUT_TYPE}`).headers.get('content-type'), OUTPUT_TYPE);
  for (const bad of ['GET', 'POST /x HTTP/2.0', 'post /x HTTP/1.0', 'POST /x HTTP/1.0\r\nno colon']) assert.throws(() => parseHead(bad), undefined, bad);
});

test('the state directory of a CLI argv: --state-dir as the parser reads it (last wins, = form, single dash), else the default', () => {
  assert.is(stateDirOfArgv(['network', 'ls']), '/run/tsnetlink');
  assert.is(stateDirOfArgv(['network', 'ls', '--state-dir', '/a', '--state-dir=/b']), '/b');
  assert.is(stateDirOfArgv(['connect', '-state-dir', 'rel', '-net', 'x', '1']), 'rel');
  assert.is(stateDirOfArgv(['network', 'ls', '--', '--state-dir', '/c']), '/run/tsnetlink');
  // The value as the parser takes it: everything after the first =, newlines too.
  assert.is(stateDirOfArgv(['network', 'ls', '--state-dir=/d\n']), '/d\n');
  assert.is(stateDirOfArgv(['network', 'ls', '--state-dir', '--']), '--');
});

// ------------------------------------------------------------------ requests and their refusals

const f = (name: string, value: string | Buffer): Field => ({ name, value: Buffer.isBuffer(value) ? value : Buffer.from(value) });

test('readCall: a CLI call and a CNI call read from their fields; each malformed request is a BadRequest naming why', () => {
  const cli = readCall('cli', [f('arg', 'network'), f('arg', 'ls'), f('statedir', '/run/tsnetlink'), f('TSNETLINK_FIREWALL', 'nftables')]);
  assert.equal(cli.kind === 'cli' && cli.argv, ['network', 'ls']);
  assert.is(cli.compared['TSNETLINK_FIREWALL'], 'nftables');
  assert.is(cli.compared['TSNETLINK_LOCK_TIMEOUT_MS'], '', 'an absent variable reads as unset');
  const cni = readCall('cni', [f('CNI_COMMAND', 'ADD'), f('CNI_ARGS', ''), f('statedir', '/s'), f('stdin', Buffer.from([0x7b, 0xff, 0x7d]))]);
  assert.equal(cni.kind === 'cni' && cni.env, { CNI_COMMAND: 'ADD' }, 'empty variables are left out, as unset ones read');
  const bad: [string, 'cli' | 'cni', Field[]][] = [
    ['unknown field', 'cli', [f('arg', 'x'), f('statedir', '/s'), f('CNI_COMMAND', 'ADD')]],
    ['no statedir', 'cli', [f('arg', 'x')]],
    ['relative statedir', 'cni', [f('statedir', 'run/x')]],
    ['field twice', 'cni', [f('statedir', '/s'), f('statedir', '/t')]],
    ['not text', 'cni', [f('statedir', '/s'), f('CNI_NETNS', Buffer.from([0xff]))]],
    ['NUL', 'cni', [f('statedir', '/s'), f('CNI_NETNS', '/a\0b')]],
    ['no arguments', 'cli', [f('statedir', '/s')]],
    ['too many arguments', 'cli', [f('statedir', '/s'), ...Array.from({ length: 1025 }, () => f('arg', 'x'))]],
  ];
  for (const [what, route, fields] of bad) assert.instance(catchError(() => readCall(route, fields)), BadRequest, what);
});

test('Calls.declined: another state directory, a differing environment, a command that runs in the caller, a delegated IPAM (keys read as Go reads them)', () => {
  const dir = tempDir();
  const envBefore = process.env['TSNETLINK_STATE_DIR'];
  const listeners = process.listeners('warning').length;
  const calls = new Calls(dir);
  try {
    const cli = (argv: string[], extra: Field[] = [], statedir = dir) => calls.declined(readCall('cli', [...argv.map((a) => f('arg', a)), f('statedir', statedir), ...extra]));
    const cni = (stdin: string) => calls.declined(readCall('cni', [f('CNI_COMMAND', 'ADD'), f('statedir', dir), f('stdin', stdin), f('TSNETLINK_FIREWALL', process.env['TSNETLINK_FIREWALL'] ?? '')]));
    assert.is(cli(['network', 'ls']), undefined);
    assert.match(cli(['network', 'ls'], [], tempDir()) ?? '', 'not the engine');
    assert.match(cli(['network', 'ls'], [f('TSNETLINK_LOCK_TIMEOUT_MS', '1')]) ?? '', '$TSNETLINK_LOCK_TIMEOUT_MS differs');
    assert.match(cli(['run', '-net', 'x', 'true']) ?? '', 'runs in the caller');
    assert.is(cni('{"name":"n","ipam":{"type":"tsnetlink"}}'), undefined);
    assert.is(cni('not json'), undefined, 'the plugin answers a decoding failure; no IPAM plugin runs');
    assert.match(cni('{"name":"n","ipam":{"type":"host-local"}}') ?? '', 'host-local');
    assert.match(cni('{"name":"n","IPAM":{"Type":"dhcp"}}') ?? '', 'dhcp');
    assert.is(process.env['TSNETLINK_STATE_DIR'], dir, 'the plugin code reads the state directory from the environment');
  } finally {
    calls.close();
  }
  assert.is(process.env['TSNETLINK_STATE_DIR'], envBefore, 'put back');
  assert.is(process.listeners('warning').length, listeners, 'warning listeners put back');
});

test('nf_tables events: object messages grouped into their commit, with the committing pid and process from NEWGEN', () => {
  const r = new CommitReader();
  const rule = splitMessages(encode(addRuleRequest({ family: 'ip', table: 'filter', chain: 'FORWARD', exprs: [{ type: 'counter' }] }), 1))[0]!;
  const del = splitMessages(encode(delTableRequest('inet', 'tsnetlink'), 2))[0]!;
  // NEWGEN (type 10 << 8 | 15): nfgenmsg, then NFTA_GEN_ID, NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME.
  const gen = Buffer.alloc(4 + 8 + 8 + 8);
  gen.writeUInt16LE(8, 4); gen.writeUInt16LE(1, 6); gen.writeUInt32BE(42, 8);
  gen.writeUInt16LE(8, 12); gen.writeUInt16LE(2, 14); gen.writeUInt32BE(4321, 16);
  gen.writeUInt16LE(8, 20); gen.writeUInt16LE(3, 22); gen.write('nft\0', 24);
  assert.is(r.read(rule), undefined);
  assert.is(r.read(del), undefined);
  const c = r.read({ len: 16 + gen.length, type: (10 << 8) | 15, flags: 0, seq: 0, pid: 0, payload: gen });
  assert.equal(c, { changes: [{ op: 'new', object: 'rule', family: 2, table: 'filter', chain: 'FORWARD', mentionsOurs: false }, { op: 'del', object: 'table', family: 1, table: 'tsnetlink' }], pid: 4321, process: 'nft' });
  // A rule jumping to one of our chains is told apart by its expressions.
  const jump = splitMessages(encode(addRuleRequest({ family: 'ip', table: 'nat', chain: 'POSTROUTING', exprs: [{ type: 'verdict', verdict: { code: 'jump', chain: 'TSN-POSTROUTING' } }] }), 3))[0]!;
  r.read(jump);
  assert.equal(r.read({ len: 16 + gen.length, type: (10 << 8) | 15, flags: 0, seq: 0, pid: 0, payload: gen })?.changes, [{ op: 'new', object: 'rule', family: 2, table: 'nat', chain: 'POSTROUTING', mentionsOurs: true }]);
});

test('drift: only commits that may have removed or overridden our rules start a check', () => {
  const commit = (...changes: NftChange[]): NftCommit => ({ changes, pid: 1, process: 'x' });
  const ip = 2;
  // Ours: our table, a flush of our chains or of a built-in chain holding our jumps, a policy change, a table gone.
  assert.ok(touchesOurs(commit({ op: 'new', object: 'element', family: 1, table: 'tsnetlink' })));
  assert.ok(touchesOurs(commit({ op: 'del', object: 'rule', family: ip, table: 'nat', chain: 'TSN-HOSTPORTS' })));
  assert.ok(touchesOurs(commit({ op: 'del', object: 'rule', family: ip, table: 'filter', chain: 'FORWARD' })), 'a built-in chain rule whose content is unknown');
  assert.ok(touchesOurs(commit({ op: 'del', object: 'rule', family: ip, table: 'nat', chain: 'POSTROUTING', mentionsOurs: true })), 'our jump deleted');
  assert.ok(touchesOurs(commit({ op: 'new', object: 'chain', family: ip, table: 'filter', chain: 'FORWARD' })));
  assert.ok(touchesOurs(commit({ op: 'del', object: 'table', family: 10, table: 'nat' })));
  // Not ours: another tool adding rules, or deleting its own chains' rules (the stock CNI plugins at every DEL).
  assert.not.ok(touchesOurs(commit({ op: 'new', object: 'rule', family: ip, table: 'nat', chain: 'PREROUTING' })));
  assert.not.ok(touchesOurs(commit({ op: 'del', object: 'rule', family: ip, table: 'nat', chain: 'CNI-HOSTPORT-DNAT' })));
  assert.not.ok(touchesOurs(commit({ op: 'del', object: 'rule', family: ip, table: 'nat', chain: 'POSTROUTING', mentionsOurs: false })), 'the stock plugins\' own POSTROUTING jump deleted');
  assert.not.ok(touchesOurs(commit({ op: 'del', object: 'chain', family: ip, table: 'nat', chain: 'CNI-DN-1234' })));
  assert.not.ok(touchesOurs(commit({ op: 'new', object: 'chain', family: ip, table: 'nat', chain: 'CNI-DN-1234' })));
  assert.not.ok(touchesOurs(commit({ op: 'del', object: 'table', family: 1, table: 'firewalld' })));
});

// ------------------------------------------------------------------ a fake engine

interface Fake {
  dir: string;
  requests: { head: string; fields: Field[] }[];
  close(): Promise<void>;
}

/** An engine stand-in on DIR/engine.sock (or a loopback port): reads one request, answers `reply(request)` raw. */
async function fakeEngine(reply: (fields: Field[]) => string | Buffer, opts: { tcp?: { client: string; proof: string }; thread?: number } = {}): Promise<Fake> {
  const dir = tempDir();
  const requests: Fake['requests'] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      const fields = decodeFields(buf.subarray(end + 4, end + 4 + len));
      requests.push({ head, fields });
      s.end(reply(fields));
    });
    s.on('error', () => undefined);
  });
  if (opts.tcp) {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    writeFileSync(join(dir, 'engine.tcp'), `${port} ${opts.tcp.client} ${opts.tcp.proof} ${process.pid}${opts.thread !== undefined ? ` ${opts.thread}` : ''}\n`, { mode: 0o600 });
  } else await new Promise<void>((r) => server.listen(join(dir, 'engine.sock'), () => r()));
  return { dir, requests, close: () => new Promise((r) => server.close(() => r())) };
}

const taken = (body: string, extra = ''): string => `HTTP/1.0 200 OK\r\nContent-Type: ${OUTPUT_TYPE}\r\n${extra}\r\n${body}`;
const DECLINE = 'HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ntsnetlink engine: run it in your process: test\n';

test('Node client: no engine and a refusal are declined (run it here); an answer is written and its code returned; a cut answer is an error, never run again', async () => {
  const none = tempDir();
  assert.is((await call(join(none, 'engine.sock'), '/v1/cli', Buffer.alloc(0))).kind, 'declined');
  const sink: Buffer[] = [];
  const sinks = { write: (_fd: 1 | 2, d: Buffer) => void sink.push(d) };
  let fake = await fakeEngine(() => DECLINE);
  assert.is(await forwardCli(['network', 'ls', '--state-dir', fake.dir], {}, sinks), undefined);
  assert.equal(fake.requests[0]!.fields.map((x) => `${x.name}=${x.value}`), ['arg=network', 'arg=ls', 'arg=--state-dir', `arg=${fake.dir}`, `statedir=${fake.dir}`, 'TSNETLINK_FIREWALL=', 'TSNETLINK_LOCK_TIMEOUT_MS=', 'TSNETLINK_IPTABLES_RESTORE=']);
  await fake.close();
  fake = await fakeEngine(() => taken(encodeAnswer({ writes: [{ fd: 1, data: Buffer.from('NAME\n') }] }, 1).toString()));
  assert.is(await forwardCli(['network', 'ls', `--state-dir=${fake.dir}`], {}, sinks), 1);
  assert.is(Buffer.concat(sink).toString(), 'NAME\n');
  await fake.close();
  // A 200 of another server (not our content type) took nothing.
  fake = await fakeEngine(() => 'HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhello');
  assert.is(await forwardCli(['network', 'ls', '--state-dir', fake.dir], {}, sinks), undefined);
  await fake.close();
  sink.length = 0;
  fake = await fakeEngine(() => taken('opartial\n'));
  assert.is(await forwardCli(['connect', '--state-dir', fake.dir, '-net', 'n', '1'], {}, sinks), 1);
  assert.match(Buffer.concat(sink).toString(), /^partial\ntsnetlink: the engine took the call and its answer never came whole .*network prune/);
  sink.length = 0;
  assert.is(await forwardCni({ TSNETLINK_STATE_DIR: fake.dir, CNI_COMMAND: 'ADD' }, '{}', '0.4.0', sinks), 1);
  const err = JSON.parse(Buffer.concat(sink).toString().split('\n').find((l) => l.startsWith('{'))!);
  assert.equal([err.cniVersion, err.code], ['0.4.0', 11]);
  await fake.close();
  // Not forwarded at all: switched off, a relative state directory, a command that runs in the caller.
  for (const argv of [['network', 'ls', '--state-dir', 'rel'], ['run', '-net', 'n', 'true'], ['engine']]) assert.is(await forwardCli(argv, {}, sinks), undefined, argv.join(' '));
  assert.is(await forwardCli(['network', 'ls'], { TSNETLINK_ENGINE: 'off' }, sinks), undefined);
});

/** Runs the shim asynchronously (the fake engine answers from this process). */
function shim(env: NodeJS.ProcessEnv, input: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = execFile(SHIM, [], { env: { PATH: process.env['PATH'], ...env }, encoding: 'utf8', timeout: 30_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }));
    p.stdin!.end(input);
  });
}

const BAD_ADD = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: '-bad', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const CONF = '{"cniVersion":"0.4.0","name":"n","type":"tsnetlink"}\n\n';
const haveCurl = spawnSync('sh', ['-c', 'command -v curl']).status === 0;
const isRoot = process.getuid?.() === 0;

for (const client of ['curl', 'bash'] as const) {
  const skip = client === 'curl' ? !haveCurl : !isRoot;
  (skip ? test.skip : test)(`shim, ${client} client: the answer exactly, the fallback to the plugin proper when declined, error 11 when cut short`, async () => {
    const tokens = { client: 'c'.repeat(32), proof: 'p'.repeat(32) };
    const proof = client === 'bash' ? `X-Tsnetlink-Proof: ${tokens.proof}\r\n` : '';
    const opts = client === 'bash' ? { tcp: tokens } : {};
    const env = (dir: string) => ({ ...BAD_ADD, TSNETLINK_STATE_DIR: dir, TSNETLINK_ENGINE_CLIENT: client, TSNETLINK_FIREWALL: 'x y' });
    let fake = await fakeEngine(() => taken(encodeAnswer({ writes: [{ fd: 1, data: Buffer.from('{"ok":1}\n') }, { fd: 2, data: Buffer.from('a $(warning) \\n') }] }, 7).toString(), proof), opts);
    let r = await shim(env(fake.dir), CONF);
    assert.equal([r.code, r.out, r.err], [7, '{"ok":1}\n', 'a $(warning) \\n']);
    const got = Object.fromEntries(fake.requests[0]!.fields.map((x) => [x.name, x.value.toString()]));
    assert.equal([got['CNI_CONTAINERID'], got['statedir'], got['TSNETLINK_FIREWALL'], got['stdin']], ['-bad', fake.dir, 'x y', CONF], 'fields, stdin exact');
    if (client === 'bash') assert.match(fake.requests[0]!.head, `X-Tsnetlink-Token: ${tokens.client}`);
    await fake.close();
    // Declined: the plugin proper runs the call (here it refuses the container id: code 4).
    fake = await fakeEngine(() => DECLINE, opts);
    r = await shim(env(fake.dir), CONF);
    assert.is(r.code, 1);
    assert.is(JSON.parse(r.out).code, 4, r.out + r.err);
    assert.is(fake.requests.length, 1);
    await fake.close();
    // Cut short after the 200: error 11 in the configuration's version, nothing run here.
    fake = await fakeEngine(() => taken('o{"partial', proof), opts);
    r = await shim(env(fake.dir), CONF);
    assert.is(r.code, 1);
    const lines = r.out.trim().split('\n');
    const err = JSON.parse(lines[lines.length - 1]!);
    assert.equal([err.cniVersion, err.code], ['0.4.0', 11]);
    await fake.close();
    if (client === 'bash') {
      // A listener that cannot show the engine's proof took nothing: the plugin proper runs.
      fake = await fakeEngine(() => taken(encodeAnswer({ writes: [] }, 0).toString(), 'X-Tsnetlink-Proof: wrong\r\n'), opts);
      r = await shim(env(fake.dir), CONF);
      assert.is(JSON.parse(r.out).code, 4);
      await fake.close();
    }
  });
}

(isRoot ? test : test.skip)('shim, bash client: the namespaces compared are those of the thread engine.tcp names, not of the JS thread', async () => {
  const tokens = { client: 'c'.repeat(32), proof: 'p'.repeat(32) };
  const proof = `X-Tsnetlink-Proof: ${tokens.proof}\r\n`;
  const home = namespacesOf('self');
  const steady = steadyThread(home);
  assert.ok(steady !== undefined && steady !== process.pid, 'a thread other than the JS thread');
  assert.equal(namespacesOf(`self/task/${steady}`), home);
  const env = (dir: string) => ({ ...BAD_ADD, TSNETLINK_STATE_DIR: dir, TSNETLINK_ENGINE_CLIENT: 'bash', TSNETLINK_ENGINE_DEBUG: '1' });
  // The steady thread named: the engine takes the call.
  let fake = await fakeEngine(() => taken(encodeAnswer({ writes: [{ fd: 1, data: Buffer.from('{"ok":1}\n') }] }, 0).toString(), proof), { tcp: tokens, thread: steady });
  let r = await shim(env(fake.dir), CONF);
  assert.equal([r.code, r.out], [0, '{"ok":1}\n'], r.err);
  await fake.close();
  // A thread that is not the engine's: the client cannot tell where the engine is, and runs the call itself.
  fake = await fakeEngine(() => taken(encodeAnswer({ writes: [] }, 0).toString(), proof), { tcp: tokens, thread: 1 });
  r = await shim(env(fake.dir), CONF);
  assert.is(fake.requests.length, 0);
  assert.match(r.err, 'not in the namespaces of engine pid');
  assert.is(JSON.parse(r.out).code, 4);
  await fake.close();
});

const LAUNCHER = fileURLToPath(new URL('../../../bin/tsnetlink', import.meta.url));
const haveSocat = spawnSync('sh', ['-c', 'command -v socat']).status === 0;

/** A stand-in for node: prints what reached it (NODE_EXTRA_CA_CERTS, TSNETLINK_ENGINE, each argument after the entry in brackets). */
function fakeNode(): string {
  const bin = join(tempDir(), 'fake-node');
  writeFileSync(bin, '#!/bin/sh\nshift\nprintf "%s|%s|" "${NODE_EXTRA_CA_CERTS-unset}" "${TSNETLINK_ENGINE-}"\nfor a; do printf "[%s]" "$a"; done\n', { mode: 0o755 });
  return bin;
}

/** Runs the CLI's launcher asynchronously (the fake engine answers from this process). */
function cli(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(LAUNCHER, argv, { env: { PATH: process.env['PATH'], ...env }, encoding: 'utf8', timeout: 30_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }));
  });
}

/** Arguments a shell client must carry byte for byte: spaces, newlines (a trailing one too), non-ASCII, quotes, backslashes, expansions, an empty one. */
const HARD_ARGS = ['a b', 'x\ny\n', 'é€😀', `'"\\n $(c) \`d\` $HOME *`, '', '-', '\t'];
const bracketed = (argv: readonly string[]): string => argv.map((a) => `[${a}]`).join('');

for (const client of ['bash', 'socat', 'curl'] as const) {
  const skip = client === 'curl' ? !haveCurl : client === 'socat' ? !haveSocat : !isRoot;
  (skip ? test.skip : test)(`CLI launcher, ${client} client: the fields the Node client sends, the answer exactly, the fallback to Node with the same argv when declined, an error when cut short`, async () => {
    const tokens = { client: 'c'.repeat(32), proof: 'p'.repeat(32) };
    const proof = `X-Tsnetlink-Engine: 4242\r\n${client === 'bash' ? `X-Tsnetlink-Proof: ${tokens.proof}\r\n` : ''}`;
    const opts = client === 'bash' ? { tcp: tokens } : {};
    const node = fakeNode();
    const env = { TSNETLINK_ENGINE_CLIENT: client, TSNETLINK_FIREWALL: 'x y', TSNETLINK_IPTABLES_RESTORE: 'é', TSNETLINK_NODE: node, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' };
    const answer = encodeAnswer({ writes: [{ fd: 1, data: Buffer.from('{"ok":1}\nno newline') }, { fd: 2, data: Buffer.from('a $(warning) \\n\n') }] }, 7).toString();
    let fake = await fakeEngine(() => taken(answer, proof), opts);
    const argv = ['connect', ...HARD_ARGS, '--state-dir', fake.dir];
    let r = await cli(argv, env);
    assert.equal([r.code, r.out, r.err], [7, '{"ok":1}\nno newline', 'a $(warning) \\n\n']);
    // The fields exactly as the Node client sends them for the same argv and environment.
    const want = [...argv.map((a) => ['arg', a]), ['statedir', fake.dir], ['TSNETLINK_FIREWALL', 'x y'], ['TSNETLINK_LOCK_TIMEOUT_MS', ''], ['TSNETLINK_IPTABLES_RESTORE', 'é']];
    assert.equal(fake.requests[0]!.fields.map((x) => [x.name, x.value.toString()]), want);
    if (client !== 'bash') {
      await forwardCli(argv, env, { write: () => undefined });
      assert.equal(fake.requests[1]!.fields.map((x) => [x.name, x.value.toString('hex')]), fake.requests[0]!.fields.map((x) => [x.name, x.value.toString('hex')]), 'the Node client\'s body, byte for byte');
    } else assert.match(fake.requests[0]!.head, `X-Tsnetlink-Token: ${tokens.client}`);
    await fake.close();
    // Declined: Node runs the command with the same argv, without NODE_EXTRA_CA_CERTS, not asking the engine again.
    fake = await fakeEngine(() => DECLINE, opts);
    const argv3 = ['network', 'ls', ...HARD_ARGS, `--state-dir=${fake.dir}`];
    r = await cli(argv3, env);
    assert.equal([r.code, r.out], [0, `unset|off|${bracketed(argv3)}`]);
    assert.is(fake.requests.length, 1);
    await fake.close();
    // Cut short after the 200: an error naming the engine, nothing run here.
    fake = await fakeEngine(() => taken('opartial\nOno', proof), opts);
    r = await cli(['disconnect', '-net', 'n', '1', '--state-dir', fake.dir], env);
    assert.equal([r.code, r.out], [1, 'partial\n'], 'a last line without its newline was cut: dropped, as the Node client drops it');
    assert.match(r.err, /^tsnetlink: the engine \(pid \d+\) took the call and its answer never came whole .*: it may have done part of it; `tsnetlink network prune` settles/);
    await fake.close();
    if (client === 'bash') {
      fake = await fakeEngine(() => taken(encodeAnswer({ writes: [] }, 0).toString(), 'X-Tsnetlink-Proof: wrong\r\n'), opts);
      r = await cli(['network', 'ls', '--state-dir', fake.dir], env);
      assert.is(r.out, `unset|off|${bracketed(['network', 'ls', '--state-dir', fake.dir])}`, 'a listener without the proof took nothing');
      await fake.close();
    }
  });
}

(haveSocat ? test : test.skip)('CLI launcher: the state directory it asks is the one stateDirOfArgv reads, for every way of naming it', async () => {
  const node = fakeNode();
  const fake = await fakeEngine(() => DECLINE);
  try {
    const d = fake.dir;
    const cases = [
      ['network', 'ls', '--state-dir', d], ['network', 'ls', `--state-dir=${d}`], ['connect', '-state-dir', d, '-net', 'x', '1'], [`-state-dir=${d}`],
      ['network', 'ls', '--state-dir', '/nonexistent', '--state-dir', d], ['network', 'ls', '--state-dir', d, '--state-dir=/nonexistent'],
      ['network', 'ls', '--', '--state-dir', d], ['network', 'ls', '--state-dir', '--', d], ['network', 'ls', '--state-dir'], ['network', 'ls', `--state-dir=${d}\n`],
      ['network', 'ls', '--state-dir', `${d}/`], ['network', 'ls', '--state-dir', 'rel'], ['network', 'ls', '--state-dir='], ['network', 'ls', '---state-dir', d], ['network', 'ls', '--state-dirx', d],
    ].map((argv) => (argv[0]!.startsWith('-') ? ['network', ...argv] : argv));
    for (const argv of cases) {
      fake.requests.length = 0;
      const r = await cli(argv, { TSNETLINK_ENGINE_CLIENT: 'socat', TSNETLINK_NODE: node });
      const dir = stateDirOfArgv(argv);
      const asked = fake.requests.map((q) => q.fields.find((x) => x.name === 'statedir')!.value.toString());
      assert.equal(asked, dir.replace(/\/+$/, '') === d ? [dir] : [], `${JSON.stringify(argv)}: asked ${JSON.stringify(asked)}, stateDirOfArgv says ${JSON.stringify(dir)}`);
      assert.is(r.out, `unset|${asked.length ? 'off' : ''}|${bracketed(argv)}`, JSON.stringify(argv));
    }
  } finally {
    await fake.close();
  }
});

test('CLI launcher without an engine: every command reaches Node with its argv exactly; NODE_EXTRA_CA_CERTS cleared but for run, whose program inherits the environment', async () => {
  const node = fakeNode();
  const dir = tempDir();
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  for (const [argv, extra, want] of [
    [['network', 'ls', '--state-dir', dir, ...HARD_ARGS], {}, 'unset|'],
    [['connect', '-net', 'n', '1', '--state-dir', 'rel'], {}, 'unset|'],
    [['disconnect', '--state-dir', dir], { TSNETLINK_ENGINE: 'off' }, 'unset|off'],
    [['--help'], {}, 'unset|'],
    [[], {}, 'unset|'],
    [['engine', '--state-dir', dir], {}, 'unset|'],
    [['run', '-net', 'n', 'node', '-e', '0'], {}, `${ca}|`],
  ] as [string[], NodeJS.ProcessEnv, string][]) {
    const r = await cli(argv, { TSNETLINK_NODE: node, NODE_EXTRA_CA_CERTS: ca, ...extra });
    assert.is(r.out, `${want}|${bracketed(argv)}`, JSON.stringify(argv));
  }
});

test('shim without an engine: Node runs the plugin with stdin exactly as given and without NODE_EXTRA_CA_CERTS', async () => {
  const dir = tempDir();
  const bin = join(dir, 'fake-node');
  mkdirSync(join(dir, 'state'), { mode: 0o700 });
  writeFileSync(bin, '#!/bin/sh\nprintf "%s|%s|" "${NODE_EXTRA_CA_CERTS-unset}" "${TSNETLINK_ENGINE-}"\ncat\n', { mode: 0o755 });
  const r = await shim({ ...BAD_ADD, TSNETLINK_STATE_DIR: join(dir, 'state'), TSNETLINK_NODE: bin, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' }, CONF);
  assert.is(r.out, `unset||${CONF}`);
});

test.run();
