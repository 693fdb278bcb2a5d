/** Argument parsing for the CLI: single-dash long flags (`-net`, as mydocker spells them) and GNU style both work. Pure. */
import { ValidationError } from '../errors.js';

/** A flag the parser knows: takes a value or not, may repeat. */
export interface FlagSpec {
  names: readonly string[];
  value?: boolean;
  repeat?: boolean;
}

/** Parsed flags (by first name) and positionals; everything after `--` is left in `rest`. */
export interface Parsed {
  flags: Map<string, string[] | true>;
  positionals: string[];
  rest: string[];
}

/** Options of a parse. */
export interface ParseOptions {
  /**
   * Stop at the first positional, as `docker run IMAGE CMD ARGS...` does: it and everything after
   * it go to `rest` unparsed, so a command's own options (`ip -br addr`) reach the command.
   */
  stopAtPositional?: boolean;
}

/** How a flag is written for people: `-p` for one letter, `--state-dir` for words. */
export function flagName(name: string): string {
  return name.length === 1 ? `-${name}` : `--${name}`;
}

/** Parses argv against `specs`; unknown flags are refused with the list of known ones. */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], opts: ParseOptions = {}): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) for (const n of s.names) byName.set(n, s);
  const out: Parsed = { flags: new Map(), positionals: [], rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=');
      const name = (eq > 0 ? a.slice(0, eq) : a).replace(/^--?/, '');
      // Docker-style bundled short flags: -it
      if (!byName.has(name) && /^-[a-z]{2,3}$/.test(a) && [...a.slice(1)].every((ch) => byName.has(ch) && !byName.get(ch)?.value)) {
        for (const ch of a.slice(1)) out.flags.set((byName.get(ch) as FlagSpec).names[0] as string, true);
        continue;
      }
      const spec = byName.get(name);
      if (!spec) throw new ValidationError('arguments', `unknown option ${a}; known: ${specs.map((s) => s.names.map(flagName).join('/')).join(', ')}`);
      const key = spec.names[0] as string;
      if (!spec.value) {
        out.flags.set(key, true);
        continue;
      }
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new ValidationError('arguments', `${a} needs a value`);
      const prev = out.flags.get(key);
      if (Array.isArray(prev) && spec.repeat) prev.push(v);
      else out.flags.set(key, [v]);
      continue;
    }
    if (opts.stopAtPositional) {
      out.rest = argv.slice(i);
      break;
    }
    out.positionals.push(a);
  }
  return out;
}

/** The last value of a valued flag, or undefined. */
export function value(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v[v.length - 1] : undefined;
}

/** All values of a repeatable flag. */
export function values(p: Parsed, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : [];
}

/** True when a boolean flag is present. */
export function has(p: Parsed, name: string): boolean {
  return p.flags.get(name) === true;
}
