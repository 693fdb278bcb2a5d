/**
 * One CNI call from its environment and stdin to its output: checks the request completely,
 * runs the command, and turns any failure into the spec's error object (with the request's
 * version when it could be read).
 */
import { CniError, CNI_CODES, toCniError } from './errors.js';
import { configVersion, decodeConfig, parseConfig, parseEnv } from './config.js';
import { CURRENT_VERSION, versionResult } from './version.js';

/** Runs the call described by `env`; prints its result or error through `print`; returns the exit status. */
export async function runCommand(env: NodeJS.ProcessEnv, readStdin: () => string, print: (o: unknown) => void): Promise<number> {
  let version: string = CURRENT_VERSION;
  try {
    const e = parseEnv(env);
    let stdin: string;
    try {
      stdin = readStdin();
    } catch (err) {
      throw new CniError(CNI_CODES.ioFailure, `error reading the network config from stdin: ${(err as Error).message}`);
    }
    if (e.command === 'VERSION') {
      print(versionResult(stdin));
      return 0;
    }
    let raw: Record<string, unknown> | undefined;
    let conf;
    try {
      raw = decodeConfig(stdin);
      version = configVersion(raw, e.command);
      conf = parseConfig(raw, e);
    } catch (err) {
      if (e.command !== 'DEL') throw err;
      // A DEL must never strand a container: with a configuration it cannot read (changed
      // since the ADD, or sent in a shape it refuses), what the attachment's own record names
      // is released all the same.
      const { cmdDelByRecord } = await import('./attach.js');
      await cmdDelByRecord(e, raw, stdin, err);
      return 0;
    }
    switch (e.command) {
      case 'ADD': {
        const { cmdAdd } = await import('./attach.js');
        print(await cmdAdd(e, conf, stdin));
        return 0;
      }
      case 'DEL': {
        const { cmdDel } = await import('./attach.js');
        await cmdDel(e, conf, stdin);
        return 0;
      }
      case 'GC': {
        const { cmdGc } = await import('./attach.js');
        await cmdGc(e, conf, stdin);
        return 0;
      }
      case 'CHECK': {
        const { cmdCheck } = await import('./inspect.js');
        await cmdCheck(e, conf, stdin);
        return 0;
      }
      case 'STATUS': {
        const { cmdStatus } = await import('./inspect.js');
        await cmdStatus(e, conf, stdin);
        return 0;
      }
    }
  } catch (err) {
    const c = toCniError(err);
    if (process.env['TSNETLINK_CNI_DEBUG']) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    print(c.toJSON(version));
    return 1;
  }
}
