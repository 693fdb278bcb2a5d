/**
 * Per-call stdout and stderr inside the engine. The CLI's commands and the CNI plugin write to
 * process.stdout and process.stderr, as a process does; the engine runs many calls at once in
 * one process, so each call runs in an async context of its own, and a write made in it (also
 * from a timer, a promise or a warning listener it led to) is kept for that call's answer
 * instead of reaching the engine's own output. Writes outside any call pass through.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Output } from './protocol.js';

/** One call's captured output, and which front end it runs (for the format of warnings). */
export interface Sink extends Output {
  kind: 'cli' | 'cni';
  /** Warnings printed so far (Node adds a hint to the first one). */
  warnings: number;
}

const context = new AsyncLocalStorage<Sink>();
type Write = typeof process.stdout.write;
let original: { out: Write; err: Write } | undefined;

/** Writes a line to the engine's own stderr, never into a call's answer. */
export function logLine(line: string): void {
  const write = original?.err ?? process.stderr.write.bind(process.stderr);
  write(`${line}\n`);
}

function patched(fd: 1 | 2, through: Write): Write {
  return function write(this: unknown, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const sink = context.getStore();
    if (!sink) return (through as (...a: unknown[]) => boolean)(chunk, encoding, cb);
    const data = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array);
    const last = sink.writes[sink.writes.length - 1];
    if (last && last.fd === fd) last.data = Buffer.concat([last.data, data]);
    else sink.writes.push({ fd, data });
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  } as Write;
}

/** Routes process.stdout and process.stderr writes made inside a call to that call (once per process). */
export function installCapture(): void {
  if (original) return;
  original = { out: process.stdout.write.bind(process.stdout) as Write, err: process.stderr.write.bind(process.stderr) as Write };
  process.stdout.write = patched(1, original.out);
  process.stderr.write = patched(2, original.err);
}

/** The call whose context is running now, if any. */
export function currentSink(): Sink | undefined {
  return context.getStore();
}

/** Runs `fn` as one call: what it writes is returned with its result instead of printed. */
export async function captured<T>(kind: Sink['kind'], fn: () => Promise<T>): Promise<{ value: T; output: Output }> {
  installCapture();
  const sink: Sink = { kind, writes: [], warnings: 0 };
  const value = await context.run(sink, fn);
  return { value, output: { writes: sink.writes } };
}
