/** CLI argument parsing (pure), and the CLI's usage errors that are caught before anything is touched. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ValidationError } from '../../src/errors.js';
import { parseArgs, value, values, has, type FlagSpec } from '../../src/cli/args.js';
import { main } from '../../src/cli/main.js';

const specs: FlagSpec[] = [
  { names: ['state-dir'], value: true },
  { names: ['help', 'h'] },
  { names: ['json'] },
  { names: ['net', 'network'], value: true },
  { names: ['p', 'publish'], value: true, repeat: true },
  { names: ['i', 'interactive'] },
  { names: ['t', 'tty'] },
  { names: ['subnet'], value: true },
];

function refused(fn: () => unknown, what: string): ValidationError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ValidationError, `${what}: ${String(e)}`);
    return e as ValidationError;
  }
  return assert.unreachable(`${what}: accepted`) as never;
}

test('seed style: run -net NAME -p H:C -p ... -- CMD ARGS', () => {
  const p = parseArgs(['-net', 'testbridge', '-p', '8080:80', '-p', '53:53/udp', '--', 'sh', '-c', 'exit 3'], specs);
  assert.is(value(p, 'net'), 'testbridge');
  assert.equal(values(p, 'p'), ['8080:80', '53:53/udp']);
  assert.equal(p.rest, ['sh', '-c', 'exit 3']);
  assert.equal(p.positionals, []);
});

test('GNU style: --net=NAME, --network NAME, --publish, -h, flags after positionals', () => {
  const p = parseArgs(['create', '--subnet=192.168.10.1/24', 'testbridge', '--network', 'n1', '--publish=1:2', '--json', '-h'], specs);
  assert.equal(p.positionals, ['create', 'testbridge']);
  assert.is(value(p, 'subnet'), '192.168.10.1/24');
  assert.is(value(p, 'net'), 'n1', 'alias stored under the first name');
  assert.equal(values(p, 'p'), ['1:2']);
  assert.ok(has(p, 'json'));
  assert.ok(has(p, 'help'));
  assert.is(parseArgs(['-net=x'], specs).flags.get('net')?.toString(), 'x');
});

test('bundled short booleans: -it and -ti', () => {
  for (const a of ['-it', '-ti']) {
    const p = parseArgs([a, '-net', 'x'], specs);
    assert.ok(has(p, 'i') && has(p, 't'), a);
    assert.is(value(p, 'net'), 'x');
  }
});

test('a non-repeatable valued flag keeps the last value; helpers on absent flags', () => {
  const p = parseArgs(['-net', 'a', '-net', 'b'], specs);
  assert.is(value(p, 'net'), 'b');
  assert.is(value(p, 'subnet'), undefined);
  assert.equal(values(p, 'p'), []);
  assert.not.ok(has(p, 'json'));
  assert.not.ok(has(p, 'net'), 'has() is for booleans');
});

test('everything after -- is left alone; a lone - is a positional', () => {
  const p = parseArgs(['-', '--', '-net', 'x', '--bogus', '--'], specs);
  assert.equal(p.positionals, ['-']);
  assert.equal(p.rest, ['-net', 'x', '--bogus', '--']);
  assert.is(value(p, 'net'), undefined);
});

test('run mode: everything from the first positional on belongs to the command (as docker run)', () => {
  const p = parseArgs(['-net', 'tb', '-p', '80:80', 'ip', '-br', 'addr', '--', 'x'], specs, { stopAtPositional: true });
  assert.is(value(p, 'net'), 'tb');
  assert.equal(p.rest, ['ip', '-br', 'addr', '--', 'x']);
  assert.equal(parseArgs(['-net', 'tb', '--', 'sh', '-c', 'true'], specs, { stopAtPositional: true }).rest, ['sh', '-c', 'true'], '-- still accepted');
});

test('unknown options and missing values are ValidationErrors with a helpful message', () => {
  const u = refused(() => parseArgs(['--bogus'], specs), '--bogus');
  assert.match(u.message, /unknown option --bogus/);
  assert.match(u.message, /--net/, 'lists the known options');
  assert.match(u.message, /-p\/--publish/, 'one-letter options as typed: -p, not --p');
  assert.not.match(u.message, /--p\b|--i\b|--t\b/);
  assert.match(refused(() => parseArgs(['-net'], specs), '-net without value').message, /needs a value/);
  assert.match(refused(() => parseArgs(['-p'], specs), '-p without value').message, /needs a value/);
  refused(() => parseArgs(['-pi'], specs), '-pi: p takes a value, so it cannot be bundled');
  refused(() => parseArgs(['-ix'], specs), '-ix: x unknown');
});

/** Runs main() with stdout/stderr captured. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  let out = '';
  let err = '';
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

test('main: --help exits 0 with usage; no arguments exits 2 with usage', async () => {
  const h = await cli(['--help']);
  assert.is(h.code, 0);
  assert.match(h.out, /tsnetlink network create --driver bridge --subnet CIDR /);
  assert.match(h.out, /tsnetlink run/);
  const none = await cli([]);
  assert.is(none.code, 2);
  assert.match(none.out + none.err, /Usage/);
});

test('main: --version, and every command has its own help (exit 0, that command\'s usage)', async () => {
  const v = await cli(['--version']);
  assert.is(v.code, 0);
  assert.match(v.out, /^tsnetlink \d+\.\d+\.\d+\n$/);
  const cases: [string[], RegExp][] = [
    [['network', '--help'], /Usage: tsnetlink network COMMAND/],
    [['network', '-h'], /Usage: tsnetlink network COMMAND/],
    [['network', 'create', '--help'], /Usage: tsnetlink network create --driver bridge --subnet CIDR/],
    [['network', 'rm', '-h'], /Usage: tsnetlink network rm/],
    [['network', 'check', '--help'], /Usage: tsnetlink network check/],
    [['run', '-h'], /Usage: tsnetlink run \[OPTIONS\] -net NAME CMD/],
    [['run', '--help'], /--name ID/],
    [['connect', '--help'], /Usage: tsnetlink connect/],
    [['disconnect', '-h'], /Usage: tsnetlink disconnect/],
    [['help', 'network', 'create'], /Usage: tsnetlink network create/],
  ];
  for (const [argv, usage] of cases) {
    const r = await cli(argv);
    assert.is(r.code, 0, `${argv.join(' ')}: ${r.err}`);
    assert.match(r.out, usage, argv.join(' '));
  }
});

test('main: bad usage exits 2 with a message, before touching anything', async () => {
  const cases: [string[], RegExp][] = [
    [['bogus'], /unknown command "bogus"/],
    [['network'], /unknown subcommand/],
    [['network', 'frobnicate'], /unknown subcommand "frobnicate"/],
    [['network', 'create', 'testbridge'], /usage: tsnetlink network create/],
    [['network', 'create', '--subnet', '192.168.10.1/24'], /usage: tsnetlink network create/],
    [['network', 'create', '--subnet', '192.168.10.1/24', 'a', 'b'], /usage/],
    [['network', 'inspect'], /usage: tsnetlink network inspect/],
    [['network', 'rm'], /usage: tsnetlink network rm/],
    [['network', 'ls', '--bogus'], /unknown option --bogus/],
    [['run', '-p', '80:80', '--', 'true'], /usage: tsnetlink run/],
    [['run', '-x', '-net', 'tb', 'true'], /unknown option -x.*tsnetlink run --help/],
    [['run', '-net', 'x'], /usage: tsnetlink run/],
    [['run', '-net'], /needs a value/],
    [['connect', '-net', 'x'], /usage: tsnetlink connect/],
    [['connect', '-net', 'x', 'notapid'], /is not a PID/],
    [['disconnect', '12'], /usage: tsnetlink disconnect/],
  ];
  for (const [argv, msg] of cases) {
    const r = await cli(argv);
    assert.is(r.code, 2, `${argv.join(' ')}: exit code (stderr: ${r.err})`);
    assert.match(r.err, msg, `${argv.join(' ')}: message`);
    assert.match(r.err, /^tsnetlink: /, 'prefixed with the program name');
    assert.is(r.out, '', `${argv.join(' ')}: nothing on stdout`);
  }
});

test.run();
