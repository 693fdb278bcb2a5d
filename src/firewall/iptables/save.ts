/**
 * A reader for `iptables-save` output: which chains exist per table and which rules they hold.
 * Only the builders use it, to find jumps that are missing, duplicated or stale.
 */
import { ValidationError } from '../../errors.js';

/** One `-A CHAIN ...` line of iptables-save output. */
export interface SavedRule {
  chain: string;
  /** Everything after the chain name, verbatim (iptables-save output is canonical), e.g. `-j TSN-FORWARD`. */
  spec: string;
  /** The `-j`/`-g` target, if any. */
  target: string | undefined;
}

/** The chains and rules of one table, in save order. */
export interface SavedTable {
  chains: string[];
  rules: SavedRule[];
}

/** Tables by name ("nat", "filter", ...), in the order iptables-save printed them. */
export type SavedRuleset = Map<string, SavedTable>;

/** Parses iptables-save output; comments, counters and policies are dropped. */
export function parseSave(text: string): SavedRuleset {
  const tables: SavedRuleset = new Map();
  let current: SavedTable | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      const name = line.slice(1);
      // The name is echoed back into restore text by removeAllText, so it must be inert.
      if (!/^[a-z_]{1,32}$/.test(name)) throw new ValidationError('saveText', `line ${i + 1}: bad table name ${JSON.stringify(name)}`);
      current = tables.get(name) ?? { chains: [], rules: [] };
      tables.set(name, current);
    } else if (line === 'COMMIT') {
      current = undefined;
    } else if (current && line.startsWith(':')) {
      const chain = line.slice(1).split(/\s+/)[0] ?? '';
      if (chain !== '' && !current.chains.includes(chain)) current.chains.push(chain);
    } else if (current && line.startsWith('-A ')) {
      const m = /^-A (\S+)\s*(.*)$/.exec(line);
      if (!m?.[1]) continue;
      const spec = m[2] ?? '';
      current.rules.push({ chain: m[1], spec, target: targetOf(tokenize(spec)) });
    }
    // Anything else (a line outside a table) is not iptables-save output; ignoring it is safer than guessing.
  }
  return tables;
}

/** A token of a rule line; `quoted` marks an argument that was written in double quotes. */
export interface Token {
  text: string;
  quoted: boolean;
}

/** Splits a rule line like the restore tokenizer does: whitespace, with "double quotes" and \" escapes. */
export function tokenize(line: string): Token[] {
  const out: Token[] = [];
  let cur = '';
  let inToken = false;
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '\\' && i + 1 < line.length) cur += line[++i];
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') {
      quoted = true;
      wasQuoted = true;
      inToken = true;
    } else if (/\s/.test(ch)) {
      if (inToken) out.push({ text: cur, quoted: wasQuoted });
      cur = '';
      inToken = false;
      wasQuoted = false;
    } else {
      cur += ch;
      inToken = true;
    }
  }
  if (inToken) out.push({ text: cur, quoted: wasQuoted });
  return out;
}

// Tokenized rather than matched with a regex, and quoted arguments skipped, so that a comment
// reading "-j TSN-X" is not taken for a jump (iptables-save always quotes comment text).
function targetOf(tokens: Token[]): string | undefined {
  for (let i = 0; i < tokens.length - 1; i++) {
    const t = tokens[i] as Token;
    if (!t.quoted && (t.text === '-j' || t.text === '-g' || t.text === '--jump' || t.text === '--goto')) return tokens[i + 1]?.text;
  }
  return undefined;
}
