/** Starting processes inside a netns. */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions, type SpawnSyncOptions, type SpawnSyncReturns } from 'node:child_process';
import { withNetns, type NetnsHandle } from './netns.js';

/**
 * Spawns `cmd` inside `ns`. libuv forks from the calling thread, and a child inherits that
 * thread's namespaces, so the fork happens inside a withNetns critical section.
 * `ip netns exec NAME CMD ...`
 */
export function spawnInNetns(ns: NetnsHandle, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
  return withNetns(ns, () => spawn(cmd, args, opts));
}

/** Runs `cmd` to completion inside `ns` (blocks the event loop). `ip netns exec NAME CMD ...` */
export function spawnSyncInNetns(ns: NetnsHandle, cmd: string, args: readonly string[] = [], opts: SpawnSyncOptions = {}): SpawnSyncReturns<Buffer | string> {
  return withNetns(ns, () => spawnSync(cmd, args, opts));
}
