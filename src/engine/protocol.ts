/**
 * The engine's wire protocol, spoken by every client (the Node client, and the shell clients of
 * the CNI shim: bash over loopback TCP, sh with curl or socat over the unix socket).
 *
 * A call is one HTTP/1.0 POST with a Content-Length: `/v1/cli` (a CLI command's argv) or
 * `/v1/cni` (a CNI call's environment and stdin). Its body is a list of fields, each
 * `NAME LENGTH\nVALUE\n` with LENGTH the value's size in bytes, so that a shell can write one
 * with `${#value}` and nothing else, and any byte but NUL survives.
 *
 * The answer says at once whether the engine took the call. "200" with the content type below
 * is written, and flushed, before the engine changes anything; any other status (or none) means
 * it ran nothing, and the client runs the call itself. After the 200 the body comes as lines,
 * each a tag and text: `o` a line of stdout, `O` stdout text without a newline, `e` and `E` the
 * same for stderr, and `x` the exit code, always last. An answer that ends before its `x` line
 * means the engine died during the call: the client reports that as an error and does not run
 * the call again, since part of it may have been done (intent records and prune settle it).
 * A line-per-tag body is what `while read -r` in a shell can take apart without a parser.
 */

/** The engine's unix socket, in the state directory. */
export const SOCKET_NAME = 'engine.sock';
/** The loopback TCP port and tokens for the bash client, in the state directory (root only, 0600). */
export const TCP_FILE_NAME = 'engine.tcp';
/** The lock an engine holds for its whole life, so that one state directory has at most one engine. */
export const LOCK_NAME = 'engine.lock';
/** The state directory a client uses when none is named (the library's default). */
export const DEFAULT_STATE_DIR = '/run/tsnetlink';

/** The content type of an accepted call's answer: what tells a client the engine took it. */
export const OUTPUT_TYPE = 'application/x-tsnetlink-output';
/** The header a TCP client checks against the engine's token, so that no other listener can pass for the engine. */
export const PROOF_HEADER = 'x-tsnetlink-proof';
/** The header carrying the client's token on TCP. */
export const TOKEN_HEADER = 'x-tsnetlink-token';

/** Largest request body the engine reads (a CNI configuration is a few KiB). */
export const MAX_BODY_BYTES = 1 << 20;
/** Largest request line plus headers. */
export const MAX_HEAD_BYTES = 16 << 10;
/** Most argv entries of a CLI call. */
export const MAX_ARGS = 1024;

/**
 * Environment variables that change what a call does and are read from the process's
 * environment by the code it runs: the engine serves a call only when the caller's values equal
 * its own (unset and empty count as the same, as the code reads them), otherwise the caller
 * runs it itself.
 */
export const COMPARED_ENV = ['TSNETLINK_FIREWALL', 'TSNETLINK_LOCK_TIMEOUT_MS', 'TSNETLINK_IPTABLES_RESTORE'] as const;
/** The same for a CNI call, which also reads its debug switch. */
export const CNI_COMPARED_ENV = [...COMPARED_ENV, 'TSNETLINK_CNI_DEBUG'] as const;
/** The environment a CNI call is made of (the CNI specification's variables). */
export const CNI_ENV = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'] as const;

/** The CLI commands the engine runs; the others run in the caller (`run` starts a program there). */
export const SERVED_COMMANDS: readonly string[] = ['network', 'connect', 'disconnect'];

/** One field of a request body. */
export interface Field {
  name: string;
  value: Buffer;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Encodes fields as a request body: `NAME LENGTH\nVALUE\n` each. */
export function encodeFields(fields: readonly { name: string; value: string | Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    if (!NAME_RE.test(f.name)) throw new TypeError(`bad field name ${JSON.stringify(f.name)}`);
    const v = typeof f.value === 'string' ? Buffer.from(f.value, 'utf8') : f.value;
    parts.push(Buffer.from(`${f.name} ${v.length}\n`), v, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** Decodes a request body into its fields; throws a message for the first malformed byte. */
export function decodeFields(body: Buffer): Field[] {
  const out: Field[] = [];
  let off = 0;
  while (off < body.length) {
    const nl = body.indexOf(0x0a, off);
    if (nl < 0 || nl - off > 80) throw new Error(`field header at byte ${off} is not "NAME LENGTH\\n"`);
    const m = /^([A-Za-z_][A-Za-z0-9_]{0,63}) (0|[1-9][0-9]{0,7})$/.exec(body.subarray(off, nl).toString('latin1'));
    if (!m) throw new Error(`field header at byte ${off} is not "NAME LENGTH\\n"`);
    const len = Number(m[2]);
    const start = nl + 1;
    if (start + len + 1 > body.length || body[start + len] !== 0x0a) throw new Error(`field ${m[1]} at byte ${off}: its ${len} bytes and newline run past the body`);
    out.push({ name: m[1]!, value: body.subarray(start, start + len) });
    off = start + len + 1;
  }
  return out;
}

/** What a call wrote, in order: stdout (1) and stderr (2) chunks. */
export interface Output {
  writes: { fd: 1 | 2; data: Buffer }[];
}

/** Encodes an accepted call's answer body: its output as tagged lines, then the exit code. */
export function encodeAnswer(out: Output, code: number): Buffer {
  const lines: string[] = [];
  for (const w of out.writes) {
    const [full, part] = w.fd === 1 ? ['o', 'O'] : ['e', 'E'];
    const text = w.data.toString('utf8');
    const pieces = text.split('\n');
    const last = pieces.pop()!;
    for (const p of pieces) lines.push(`${full}${p}\n`);
    if (last !== '') lines.push(`${part}${last}\n`);
  }
  lines.push(`x${code}\n`);
  return Buffer.from(lines.join(''), 'utf8');
}

/**
 * Reads an accepted call's answer body as it arrives: hands each piece of output to `write` and
 * keeps the exit code once its line came.
 */
export class AnswerReader {
  private pending: Buffer = Buffer.alloc(0);
  /** The exit code, once the `x` line arrived. */
  code: number | undefined;

  constructor(private readonly write: (fd: 1 | 2, data: Buffer) => void) {}

  /**
   * Feeds bytes of the body. The lines of one stream that arrive together are written in one
   * piece, as the call wrote them, so a reader that stops early (`| head`) sees what it would
   * have seen of the call run in the process.
   */
  push(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let run: { fd: 1 | 2; parts: Buffer[] } | undefined;
    const flush = (): void => {
      if (run) this.write(run.fd, Buffer.concat(run.parts));
      run = undefined;
    };
    let nl: number;
    while ((nl = this.pending.indexOf(0x0a)) >= 0) {
      const line = this.pending.subarray(0, nl);
      this.pending = this.pending.subarray(nl + 1);
      if (this.code !== undefined) continue;
      const tag = String.fromCharCode(line[0] ?? 0);
      const text = line.subarray(1);
      const fd = tag === 'o' || tag === 'O' ? 1 : tag === 'e' || tag === 'E' ? 2 : undefined;
      if (fd !== undefined) {
        if (run?.fd !== fd) {
          flush();
          run = { fd, parts: [] };
        }
        run.parts.push(Buffer.from(text));
        if (tag === 'o' || tag === 'e') run.parts.push(Buffer.from('\n'));
      } else if (tag === 'x' && /^\d{1,3}$/.test(text.toString('latin1'))) {
        flush();
        this.code = Number(text.toString('latin1'));
      }
    }
    flush();
  }
}

/** A parsed HTTP head: the request line's method and path, or the status line's code, and headers by lower-case name. */
export interface Head {
  first: string;
  method?: string;
  path?: string;
  status?: number;
  headers: Map<string, string>;
}

/** Parses an HTTP/1.x head (without the blank line that ends it); throws a message when it is malformed. */
export function parseHead(text: string): Head {
  const [first = '', ...rest] = text.split('\r\n');
  const headers = new Map<string, string>();
  for (const l of rest) {
    const c = l.indexOf(':');
    if (c <= 0) throw new Error(`malformed header line ${JSON.stringify(l.slice(0, 80))}`);
    headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
  }
  const req = /^([A-Z]{1,10}) (\S{1,200}) HTTP\/1\.[01]$/.exec(first);
  if (req) return { first, method: req[1]!, path: req[2]!, headers };
  const st = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(first);
  if (st) return { first, status: Number(st[1]), headers };
  throw new Error(`malformed first line ${JSON.stringify(first.slice(0, 80))}`);
}

/** The head of a request a client sends. */
export function requestHead(path: string, bodyLength: number, token?: string): string {
  return `POST ${path} HTTP/1.0\r\nHost: tsnetlink\r\nContent-Length: ${bodyLength}\r\n${token ? `X-Tsnetlink-Token: ${token}\r\n` : ''}\r\n`;
}

/** The state directory a CLI argv names with --state-dir (the last one wins, as the parser takes it), or the default. */
export function stateDirOfArgv(argv: readonly string[]): string {
  let dir = DEFAULT_STATE_DIR;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    const m = /^--?state-dir(?:=(.*))?$/s.exec(a);
    if (!m) continue;
    const v = m[1] ?? argv[++i];
    if (v !== undefined) dir = v;
  }
  return dir;
}
