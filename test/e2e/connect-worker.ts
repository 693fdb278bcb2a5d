/**
 * Child process of bridge-concurrency.e2e.test: one "runtime" connecting one container.
 * Prints 'ready' once loaded, connects on a 'go' line, disconnects on a 'disconnect' line, and
 * prints one JSON line per phase ({ ok, ... } or { error }), so all children contend at once.
 * argv: network containerPid endpointId [portSpec]
 */
import { createInterface } from 'node:readline';
import { Networks } from '../../src/index.js';

const [network = '', pidText = '', id = '', port] = process.argv.slice(2);
const nets = new Networks();
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitFor(word: string): Promise<void> {
  for (;;) {
    const { value, done } = await lines.next();
    if (done) throw new Error(`stdin closed before "${word}"`);
    if (String(value).trim() === word) return;
  }
}

function reply(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

function describe(e: unknown): unknown {
  const x = e as { name?: string; code?: string; message?: string; step?: string };
  return { name: x?.name, code: x?.code, step: x?.step, message: x?.message ?? String(e) };
}

let code = 0;
try {
  nets.host; // open the host socket before the barrier: the race is about connect itself
  process.stdout.write('ready\n');
  await waitFor('go');
  try {
    const t0 = performance.now();
    const ep = await nets.connect(network, Number(pidText), { id, ...(port ? { ports: [port] } : {}) });
    reply({ ok: true, ms: performance.now() - t0, ep });
  } catch (e) {
    reply({ ok: false, error: describe(e) });
    code = 1;
  }
  await waitFor('disconnect');
  try {
    reply({ ok: await nets.disconnect(network, id) });
  } catch (e) {
    reply({ ok: false, error: describe(e) });
    code = 1;
  }
} finally {
  nets.close();
}
process.exit(code);
