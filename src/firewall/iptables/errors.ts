import { TsnetlinkError } from '../../errors.js';

/** An iptables tool (iptables-restore, iptables-save, conntrack) failed or could not be run. */
export class IptablesError extends TsnetlinkError {
  override name = 'IptablesError';
  override readonly code = 'EIPTABLES';
  /** The tool's exit status; null when it never ran, was killed, or timed out. */
  readonly exitCode: number | null;
  readonly stderr: string;
  /** The input line iptables-restore blamed ("line 3 failed", "Error occurred at line: 3"), if any. */
  readonly line: number | undefined;
  /** The command line, for the message and for logs. */
  readonly command: string;
  constructor(command: string, exitCode: number | null, stderr: string, detail?: string, options?: { cause?: unknown }) {
    const line = parseFailedLine(stderr);
    const first = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(0, 2).join(' / ');
    const status = exitCode === null ? 'did not complete' : `exited with ${exitCode}`;
    super('EIPTABLES', `${command}: ${status}${detail ? ` (${detail})` : ''}${first ? `: ${first}` : ''}`, options);
    this.exitCode = exitCode;
    this.stderr = stderr;
    this.line = line;
    this.command = command;
  }
}

/** Extracts the line number iptables-restore reports; both the nft and the legacy wording are known. */
export function parseFailedLine(stderr: string): number | undefined {
  // Commit-time errors say "line 4 failed" (legacy, and nft for a missing rule), nft's own
  // "line 2: CHAIN_DEL failed"; parse errors say "Error occurred at line: 4".
  const m =
    /\bline (\d+) failed\b/.exec(stderr) ??
    /Error occurred at line: (\d+)/.exec(stderr) ??
    /\bline:? (\d+)\b/.exec(stderr);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}
