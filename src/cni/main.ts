#!/usr/bin/env node
/**
 * tsnetlink-cni: the CNI plugin executable (conflist `"type": "tsnetlink"`). It reads
 * CNI_COMMAND and stdin, prints the result or the spec's error object on stdout, and exits 0 or
 * 1. VERSION loads nothing but ./version.js; the other commands import the bridge layer (and so
 * koffi) only once the request has been checked.
 */
import { readFileSync } from 'node:fs';
import { CURRENT_VERSION, versionResult } from './version.js';

function readStdin(): string {
  try {
    return process.stdin.isTTY ? '' : readFileSync(0, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'EAGAIN' || (e as { code?: string }).code === 'EOF') return '';
    throw e;
  }
}

function print(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Runs one CNI call; resolves to the exit status. */
async function run(): Promise<number> {
  if (process.env['CNI_COMMAND'] === 'VERSION') {
    print(versionResult(readStdin()));
    return 0;
  }
  const { runCommand } = await import('./dispatch.js');
  return runCommand(process.env, readStdin, print);
}

run().then(
  (status) => {
    process.exitCode = status;
  },
  (e: unknown) => {
    // Only a bug reaches here: dispatch turns every error into the spec's object.
    print({ cniVersion: CURRENT_VERSION, code: 100, msg: `tsnetlink-cni: ${(e as Error)?.message ?? String(e)}` });
    process.exitCode = 1;
  },
);
