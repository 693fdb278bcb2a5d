#!/usr/bin/env node
/**
 * The `tsnetlink` command: `mydocker network ...` and `mydocker run -net ... -p ...`, done right.
 * This entry loads only argument parsing, help and the engine's client; each command imports
 * what it needs when it runs, so `--help`, `--version` and usage errors cost no more than Node's
 * own start, and a command a running engine takes costs Node's start and one round trip.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { out, Usage } from './common.js';
import { HELP, USAGE } from './usage.js';
import { forwardCli } from '../engine/client.js';

/** The package's version, from the package.json above this file (dist/src/cli/ or the bundle in dist/bundle/). */
function version(): string {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tsnetlink' && pkg.version) return pkg.version;
    } catch {
      /* not at this level */
    }
  }
  return 'unknown';
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    process.stderr.write(`${HELP}\n`);
    return 2;
  }
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') {
    const topic = rest.filter((a) => !a.startsWith('-')).join(' ');
    out(USAGE[topic] ?? HELP);
    return 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    out(`tsnetlink ${version()}`);
    return 0;
  }
  // Library warnings (a skipped unreadable record, a failed conntrack flush) as one plain line.
  process.removeAllListeners('warning');
  process.on('warning', (w) => process.stderr.write(`tsnetlink: warning: ${w.message.replace(/^tsnetlink: /, '')}\n`));
  // A running engine takes the command when it serves this state directory: then neither the
  // commands bundle nor koffi is loaded here. Otherwise (or when it declines) it runs here.
  const forwarded = await forwardCli(argv);
  if (forwarded !== undefined) return forwarded;
  return runInProcess(argv);
}

/**
 * Runs a command (`network`, `run`, `connect`, `disconnect`, `engine`) in this process and
 * returns its exit code; errors become one `tsnetlink: ...` line on stderr. The engine runs the
 * commands it serves through this too, so their output and exit codes are the process's own.
 */
export async function runInProcess(argv: readonly string[]): Promise<number> {
  const [cmd = '', ...rest] = argv;
  try {
    if (!['network', 'run', 'connect', 'disconnect', 'engine'].includes(cmd)) throw new Usage('command', `unknown command ${JSON.stringify(cmd)}; see tsnetlink --help`);
    if (cmd === 'engine') return await (await import('./engine.js')).engine(rest);
    const commands = await import('./commands.js');
    switch (cmd) {
      case 'network':
        return await commands.network(rest);
      case 'run':
        return await commands.run(rest);
      case 'connect':
        return await commands.connect(rest);
      default:
        return await commands.disconnect(rest);
    }
  } catch (e) {
    // By code, not instanceof: the commands live in another bundle with their own copy of the classes.
    const err = e as Error & { code?: string };
    process.stderr.write(`tsnetlink: ${err.message}${err.code && !err.message.includes(err.code) && err.name !== 'NotPrivileged' ? ` [${err.code}]` : ''}\n`);
    return err.code === 'EINVAL' ? 2 : 1;
  }
}

// Run when executed (also through the npm bin symlink), not when imported by tests.
const invoked = process.argv[1] ? realpathSync(process.argv[1]) : '';
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
