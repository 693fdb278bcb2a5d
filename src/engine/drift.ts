/**
 * Drift repaired as it happens. The engine listens to the kernel for changes to what tsnetlink
 * owns: rtnetlink link and address events of its tagged links (alias "tsnetlink/..."), and
 * nf_tables commits touching its tables or the iptables-nft tables its rules live in (an
 * `nft flush ruleset`, an `iptables -F`, a policy change). A change that may have broken a
 * network schedules a pass: after a short quiet time (debounce, with a bound on the delay) the
 * library's check() runs, and only when it names problems its repair() runs; both are logged.
 *
 * Its own changes never start a pass: nf_tables commits made by the engine or by a tool it
 * started are told apart by the committing pid the kernel reports, and the link events that
 * count are losses (a tagged link that was up going down, a veth leaving its bridge, a bridge
 * or a bridge address deleted), which a repair never makes. If a pass still follows another,
 * check() finds nothing and nothing is done; and passes are capped per second, so a fight with
 * another manager of the same rules cannot spin. A loss on an endpoint whose operation is under
 * way (its lock file exists: a disconnect sets the host veth down before it deletes it) waits for
 * that operation to end before it counts, however slow a busy machine makes it.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Networks } from '../bridge/networks.js';
import { monitor, type Monitor } from '../netlink/route/monitor.js';
import { Rtnl } from '../netlink/route/rtnl.js';
import { watchSpawns } from '../sys/libc.js';
import type { Link } from '../netlink/route/link.js';
import { NFPROTO } from '../netlink/nftables/constants.js';
import { NftEvents, type NftCommit } from './nftevents.js';

/** Options of the drift watcher. */
export interface DriftOptions {
  /**
   * Quiet time after the last suspicious event before a pass (default 5 ms): an nf_tables commit
   * is heard whole (its NEWGEN ends it), so the wait only gathers the next transactions of the
   * same tool run, which follow within a few milliseconds.
   */
  debounceMs?: number;
  /** Longest wait from the first suspicious event to its pass, however busy (default 50 ms). */
  maxDelayMs?: number;
  /** Most repairs in any second (default 10); more are put off to the next second. */
  maxRepairsPerSecond?: number;
  /** Most checks in any second (default 20). */
  maxChecksPerSecond?: number;
  /** Where the log lines go. */
  log: (line: string) => void;
  /** Also log every event that schedules a pass, and every pass that found nothing. */
  verbose?: boolean;
}

/** What the watcher did, for the status call. */
export interface DriftStats {
  /** Events that scheduled a pass. */
  triggers: number;
  checks: number;
  repairs: number;
  /** Passes put off by the per-second caps. */
  deferred: number;
  /** The last repair: when, why, how long from the first event to the end, what it did. */
  last?: { at: string; reasons: string[]; ms: number; actions: string[]; problems: string[] };
  /** Why the last check ran, and when. */
  lastCheck?: { at: string; reasons: string[] };
}

/** What a pass asks of a loss: still there (drift), gone (an own deletion), or its endpoint's operation still under way. */
type Still = () => boolean | 'busy';

/** iptables-nft's tables that hold tsnetlink's rules, and tsnetlink's own nf_tables tables. */
const IPTABLES_TABLES = new Set(['filter', 'nat', 'raw']);

/** The process a task belongs to (from /proc/PID/status), or undefined once it is gone. */
function tgidOf(pid: number): number | undefined {
  try {
    return Number(/^Tgid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

/**
 * Longest wait for an endpoint's operation to end before a loss on it counts anyway: an operation
 * killed half-way leaves its lock file behind, and the drift next to it must not go unrepaired.
 */
const BUSY_WAIT_MS = 2_000;
/** How often a pass waiting for an endpoint's operation looks again. */
const BUSY_POLL_MS = 20;

/** How long a tool the engine started is remembered: its commit's event comes well within it. */
const CHILD_MEMORY_MS = 60_000;

/** The built-in iptables chains that hold tsnetlink's jumps and whose policy it sets. */
const BUILTIN_CHAINS = new Set(['FORWARD', 'PREROUTING', 'OUTPUT', 'POSTROUTING', 'INPUT']);

/**
 * Whether an nf_tables commit may have changed what tsnetlink's rules do: anything in its own
 * table; in iptables-nft's tables, a table or chain deleted, a rule deleted from one of its TSN-*
 * chains, a rule deleted from a built-in chain that jumps to one of them (or whose content the
 * event does not carry), or a built-in chain re-declared (a policy change). Another tool adding
 * rules, or deleting rules of its own (the stock CNI plugins' CNI-* chains and their POSTROUTING
 * jumps at every container's end), cannot remove ours, and starts no check.
 */
export function touchesOurs(c: NftCommit): boolean {
  return c.changes.some((x) => {
    if (x.table === 'tsnetlink') return true;
    if ((x.family !== NFPROTO.ip && x.family !== NFPROTO.ip6) || !IPTABLES_TABLES.has(x.table)) return false;
    const ours = x.chain === undefined || x.chain.startsWith('TSN-') || BUILTIN_CHAINS.has(x.chain);
    if (x.op === 'del' && x.object === 'rule' && x.chain !== undefined && BUILTIN_CHAINS.has(x.chain)) return x.mentionsOurs !== false;
    if (x.op === 'del') return x.object === 'table' || ((x.object === 'chain' || x.object === 'rule') && ours);
    return x.object === 'chain' && x.chain !== undefined && BUILTIN_CHAINS.has(x.chain);
  });
}

/** What the watcher remembers of a tagged link. */
interface Seen {
  name: string;
  alias: string;
  up: boolean;
  master: number | undefined;
  bridge: boolean;
}

/** Watches the kernel for drift and repairs it through `nets`. */
export class DriftWatcher {
  readonly stats: DriftStats = { triggers: 0, checks: 0, repairs: 0, deferred: 0 };
  private readonly opts: Required<Omit<DriftOptions, 'log'>> & Pick<DriftOptions, 'log'>;
  private readonly links = new Map<number, Seen>();
  /** Why a pass is due; `still` says at pass time whether the loss is still there (an own deletion is not drift). */
  private readonly reasons = new Map<string, Still | undefined>();
  /** When a pass first found a loss's endpoint busy, by reason. */
  private readonly busySince = new Map<string, number>();
  private rt: Rtnl | undefined;
  private firstAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private readonly checkTimes: number[] = [];
  private readonly repairTimes: number[] = [];
  private rtnl: Monitor | undefined;
  /** Pids of the tools the engine started lately, with when. */
  private readonly children = new Map<number, number>();
  private unwatchSpawns: (() => void) | undefined;
  private nft: NftEvents | undefined;

  private constructor(
    private readonly nets: Networks,
    opts: DriftOptions,
  ) {
    this.opts = { debounceMs: 5, maxDelayMs: 50, maxRepairsPerSecond: 10, maxChecksPerSecond: 20, verbose: false, ...opts };
  }

  /**
   * Subscribes (rtnetlink link and address events, nf_tables commits), then reads the links it
   * follows, then runs one pass: drift that happened while no engine ran is repaired at start.
   */
  static start(nets: Networks, opts: DriftOptions): DriftWatcher {
    const w = new DriftWatcher(nets, opts);
    // Known before the tool runs, so before its commit can be heard (a tool is gone, and its
    // parent unknowable, by the time its event is read).
    w.unwatchSpawns = watchSpawns((pid) => {
      const now = performance.now();
      w.children.set(pid, now);
      for (const [p, t] of w.children) if (t < now - CHILD_MEMORY_MS) w.children.delete(p);
    });
    w.rtnl = monitor({ groups: ['link', 'addr'] });
    w.rtnl.on('link', (e) => (e.type === 'new' ? w.onLink(e.object) : w.onLinkGone(e.object)));
    w.rtnl.on('addr', (e) => {
      const l = w.links.get(e.object.index);
      const { index, cidr } = e.object;
      if (e.type === 'del' && l?.bridge) w.trigger(`address ${cidr} deleted from bridge ${l.name}`, () => w.linkNow(index) !== undefined && !w.rt!.addrList({ link: index }).some((a) => a.cidr === cidr));
    });
    w.rtnl.on('resync', () => w.trigger('rtnetlink events were lost'));
    w.rtnl.on('error', (e: Error) => opts.log(`tsnetlink engine: drift: rtnetlink events: ${e.message}`));
    try {
      w.nft = new NftEvents((c) => w.onCommit(c), () => w.trigger('nf_tables events were lost'));
    } catch (e) {
      opts.log(`tsnetlink engine: drift: no nf_tables events (${(e as Error).message}); firewall drift is repaired by the next operation or repair`);
    }
    w.rt = Rtnl.open();
    for (const l of w.rt.linkList()) w.remember(l);
    w.trigger('engine start');
    return w;
  }

  private remember(l: Link): Seen | undefined {
    if (!l.alias?.startsWith('tsnetlink/')) {
      this.links.delete(l.index);
      return undefined;
    }
    const seen: Seen = { name: l.name, alias: l.alias, up: l.up, master: l.master, bridge: l.kind === 'bridge' };
    this.links.set(l.index, seen);
    return seen;
  }

  private onLink(l: Link): void {
    const before = this.links.get(l.index);
    const now = this.remember(l);
    if (!before || !now) return;
    // A link being deleted goes down first: only one still there and down at pass time counts.
    const index = l.index;
    if (before.up && !now.up) this.trigger(`${now.bridge ? 'bridge' : 'link'} ${now.name} went down`, () => this.endpointBusy(now.alias) || this.linkNow(index)?.up === false);
    // An endpoint's host veth ("tsnetlink/NET/ID"; an ifb has one more part) that left its bridge.
    else if (!now.bridge && now.alias.split('/').length === 3 && before.master !== undefined && now.master === undefined) {
      this.trigger(`veth ${now.name} left its bridge`, () => {
        if (this.endpointBusy(now.alias)) return 'busy';
        const x = this.linkNow(index);
        return x !== undefined && x.master === undefined;
      });
    }
  }

  private onLinkGone(l: Link): void {
    const before = this.links.get(l.index);
    this.links.delete(l.index);
    // A veth goes with its container, which is not drift; a bridge is never deleted but by network rm.
    // network rm deletes it too: drift only while an active network still names it.
    if (before?.bridge) {
      const name = before.name;
      this.trigger(`bridge ${name} deleted`, () => this.nets.store.listNetworks().records.some((n) => n.bridge === name && n.state === 'active'));
    }
  }

  private onCommit(c: NftCommit): void {
    if (!touchesOurs(c)) return;
    // The engine's own commit (the native backend), or one of a tool it started (iptables-restore).
    if (c.pid !== undefined && (c.pid === process.pid || this.children.has(c.pid) || tgidOf(c.pid) === process.pid)) return;
    const what = [...new Set(c.changes.map((x) => `${x.op} ${x.object}`))].slice(0, 4).join(', ');
    this.trigger(`nf_tables commit by ${c.process ?? 'a process'}${c.pid !== undefined ? ` (pid ${c.pid})` : ''}: ${what}`);
  }

  /**
   * 'busy' while an operation holds the endpoint a link's tag names ("tsnetlink/NET/ID", an ifb's
   * with one more part): its lock file exists only while the lock is held, or after a kill.
   */
  private endpointBusy(alias: string): 'busy' | false {
    const [, net, id] = alias.split('/');
    if (net === undefined || id === undefined) return false;
    try {
      return existsSync(this.nets.store.endpointLockPath(net, id)) ? 'busy' : false;
    } catch {
      return false;
    }
  }

  /** The tagged link of `index` as it is now, or undefined when it is gone (or no longer tagged). */
  private linkNow(index: number): Link | undefined {
    try {
      const l = this.rt!.linkGet(index);
      return l.alias?.startsWith('tsnetlink/') ? l : undefined;
    } catch {
      return undefined;
    }
  }

  /** Schedules a pass for `reason` (debounced, its delay bounded); `still` is asked again when the pass comes. */
  private trigger(reason: string, still?: Still): void {
    if (this.closed) return;
    this.stats.triggers++;
    this.reasons.set(reason, still);
    if (this.opts.verbose) this.opts.log(`tsnetlink engine: drift event: ${reason}`);
    if (this.running) {
      this.again = true;
      return;
    }
    const now = performance.now();
    this.firstAt ??= now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.opts.debounceMs, this.firstAt + this.opts.maxDelayMs - now));
    this.timer = setTimeout(() => void this.pass(), wait);
  }

  /** Times within the last second, pruned. */
  private recent(times: number[]): number {
    const now = performance.now();
    while (times.length > 0 && times[0]! < now - 1000) times.shift();
    return times.length;
  }

  private deferred(times: number[], cap: number): boolean {
    if (this.recent(times) < cap) return false;
    this.stats.deferred++;
    this.timer = setTimeout(() => void this.pass(), Math.max(1, times[0]! + 1000 - performance.now()));
    return true;
  }

  private async pass(): Promise<void> {
    this.timer = undefined;
    if (this.closed || this.running) return;
    if (this.deferred(this.checkTimes, this.opts.maxChecksPerSecond)) return;
    const firstAt = this.firstAt ?? performance.now();
    this.firstAt = undefined;
    // Losses that are gone by now were deletions of our own (a disconnect, a network rm); those
    // on an endpoint whose operation is under way wait for it (bounded: a killed one stays busy).
    const now = performance.now();
    const reasons: string[] = [];
    const waiting = new Map<string, Still | undefined>();
    for (const [r, still] of this.reasons) {
      let v: boolean | 'busy';
      try {
        v = still === undefined || still();
      } catch {
        v = true;
      }
      if (v === 'busy') {
        const since = this.busySince.get(r) ?? now;
        this.busySince.set(r, since);
        if (now - since < BUSY_WAIT_MS) {
          waiting.set(r, still);
          continue;
        }
      }
      this.busySince.delete(r);
      if (v !== false) reasons.push(r);
    }
    this.reasons.clear();
    for (const [r, still] of waiting) this.reasons.set(r, still);
    if (reasons.length === 0) {
      if (waiting.size > 0) {
        this.firstAt = firstAt;
        this.timer = setTimeout(() => void this.pass(), BUSY_POLL_MS);
      }
      return;
    }
    this.running = (async () => {
      try {
        this.checkTimes.push(performance.now());
        this.stats.checks++;
        this.stats.lastCheck = { at: new Date().toISOString(), reasons };
        const t0 = performance.now();
        const problems = await this.nets.check();
        if (problems.length === 0) {
          if (this.opts.verbose) this.opts.log(`tsnetlink engine: drift check (${reasons.join('; ')}): consistent, ${(performance.now() - t0).toFixed(1)} ms`);
          return;
        }
        if (this.deferred(this.repairTimes, this.opts.maxRepairsPerSecond)) {
          for (const r of reasons) this.reasons.set(r, undefined);
          this.opts.log(`tsnetlink engine: drift (${reasons.join('; ')}): ${problems.length} problems; repair put off (more than ${this.opts.maxRepairsPerSecond} repairs in a second)`);
          return;
        }
        this.repairTimes.push(performance.now());
        this.stats.repairs++;
        const r = await this.nets.repair();
        const ms = performance.now() - firstAt;
        this.stats.last = { at: new Date().toISOString(), reasons, ms: Math.round(ms * 10) / 10, actions: r.actions, problems: r.problems };
        this.opts.log(`tsnetlink engine: drift (${reasons.join('; ')}): ${problems.length} problems (${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; ...' : ''}); repaired ${ms.toFixed(1)} ms after the first event: ${r.actions.join('; ') || 'nothing changed'}${r.problems.length ? `; not repaired: ${r.problems.join('; ')}` : ''}`);
      } catch (e) {
        this.opts.log(`tsnetlink engine: drift (${reasons.join('; ')}): check or repair failed: ${(e as Error).message}`);
      }
    })();
    await this.running;
    this.running = undefined;
    // Events heard during the pass, and losses still waiting for their endpoint's operation.
    if (this.reasons.size > 0 && !this.closed && this.timer === undefined) {
      this.firstAt ??= performance.now();
      this.timer = setTimeout(() => void this.pass(), this.again ? this.opts.debounceMs : BUSY_POLL_MS);
    }
    this.again = false;
  }

  /** Stops listening; resolves once a running pass has ended. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.all([this.rtnl?.close(), this.nft?.close(), this.running]);
    this.rt?.close();
    this.unwatchSpawns?.();
  }
}
