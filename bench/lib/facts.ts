/** Machine facts recorded with every run. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { tryRun } from './exec.js';
import { netavarkVersion } from './netavark.js';

function pkgVersion(rel: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** What the run ran on: date, kernel, CPUs, tool and package versions, the commit; recorded with every run. */
export function machineFacts(command: string): Record<string, unknown> {
  const ipt = tryRun('iptables', ['--version']);
  // dist/bench/lib/facts.js -> repository root is three levels up.
  return {
    date: new Date().toISOString(),
    command,
    kernel: os.release(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model,
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    tsnetlink: pkgVersion('../../../package.json'),
    gitCommit: tryRun('git', ['-C', new URL('../../../', import.meta.url).pathname, 'rev-parse', '--short', 'HEAD']),
    koffi: pkgVersion('../../../node_modules/koffi/package.json'),
    iproute2: tryRun('ip', ['-V']),
    iptables: ipt,
    iptablesBackend: ipt === undefined ? undefined : /nf_tables/.test(ipt) ? 'nft' : 'legacy',
    cniPlugins: tryRun('dpkg-query', ['-W', '-f', '${Version}', 'containernetworking-plugins']),
    netavark: netavarkVersion(),
    load1: os.loadavg()[0]?.toFixed(2),
  };
}
