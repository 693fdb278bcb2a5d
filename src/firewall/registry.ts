/**
 * The firewall backends, one row each: a new backend is a folder beside iptables/ and nftables/
 * that implements the Firewall interface, plus one row here. Nothing else names a backend: the
 * bridge layer asks this module for the host's firewall and records a network's backend by the
 * row's name.
 */
import { ValidationError } from '../errors.js';
import type { Firewall } from './types.js';
import { RoutedFirewall } from './router.js';
import { IptablesFirewall } from './iptables/backend.js';
import type { IptablesOptions } from './iptables/restore.js';
import { NftablesFirewall } from './nftables/firewall.js';
import { NftPortFilter } from './nftables/portfilter.js';
import { Nft } from '../netlink/nftables/nft.js';

/** What a backend may be given when it is made. */
export interface BackendOptions {
  /** Which iptables tools to run, for the iptables backend. */
  iptables?: IptablesOptions;
}

/** One backend: how to make it, and whether this host can run it (asked once, synchronously). */
export interface BackendEntry {
  make(opts: BackendOptions): Firewall;
  /** Undefined when usable here; otherwise why not, in words. */
  unusable(): string | undefined;
}

/**
 * The registry, in the order a host without networks tries them: native nf_tables first (one
 * netlink transaction per change, no process), iptables-restore where nf_tables is missing.
 */
export const REGISTRY = {
  nftables: { make: () => new NftablesFirewall(), unusable: nftablesUnusable },
  iptables: { make: (o) => new IptablesFirewall(o.iptables ?? {}), unusable: () => undefined },
} satisfies Record<string, BackendEntry>;

/** A backend's name as a network record, an option or $TSNETLINK_FIREWALL gives it. */
export type BackendName = keyof typeof REGISTRY;

/** The backends a network can record. */
export const BACKENDS = Object.keys(REGISTRY) as readonly BackendName[];

/** The backend named by an option, or by $TSNETLINK_FIREWALL; undefined when neither says. */
export function chosenBackend(option: string | undefined, env = process.env['TSNETLINK_FIREWALL']): BackendName | undefined {
  const v = option ?? (env === '' ? undefined : env);
  if (v === undefined) return undefined;
  if (!(BACKENDS as readonly string[]).includes(v)) throw new ValidationError('firewall', `must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(v)}${option === undefined ? ' (from $TSNETLINK_FIREWALL)' : ''}`);
  return v as BackendName;
}

/** The backend a host without networks gets, and why an earlier row was passed over. */
export interface DefaultBackend {
  name: BackendName;
  /** Set when a backend before it in the registry cannot run here: "nftables: <reason>". */
  passedOver?: string;
}

let probed: DefaultBackend | undefined;

/** The first usable backend in the registry's order, probed once per process. */
export function defaultBackend(): DefaultBackend {
  return (probed ??= pickBackend(BACKENDS.map((name) => [name, () => REGISTRY[name].unusable()])));
}

/**
 * The first row whose probe finds nothing in its way, naming the rows passed over and why; when
 * none can run, the last (its own errors at first use say more than a probe can).
 */
export function pickBackend<B extends string>(rows: readonly (readonly [B, () => string | undefined])[]): { name: B; passedOver?: string } {
  const skipped: string[] = [];
  for (const [name, unusable] of rows) {
    const why = unusable();
    if (why === undefined) return { name, ...(skipped.length ? { passedOver: skipped.join('; ') } : {}) };
    skipped.push(`${name}: ${why}`);
  }
  const last = rows[rows.length - 1];
  if (!last) throw new ValidationError('firewall', 'no firewall backend is registered');
  return { name: last[0], passedOver: skipped.join('; ') };
}

/** Whether this process can open nf_tables: a socket, one generation read, closed again. */
function nftablesUnusable(): string | undefined {
  try {
    const nft = Nft.open();
    try {
      nft.genId();
    } finally {
      nft.close();
    }
    return undefined;
  } catch (e) {
    return `nf_tables is not usable here (${(e as Error).message})`;
  }
}

/** Where a host's networks are recorded, for the router. */
export interface RecordedBackends {
  /** The backend a network's record names (undefined: no such network, or no readable record). */
  backendOf(network: string): BackendName | undefined;
  /** The backends any record names. */
  inUse(): BackendName[];
}

/**
 * The firewall of a host's networks: every backend made now (a bad iptables binary is refused
 * here, not at the first connect -p), each network routed to the backend its record names, the
 * bridge-port filter kept in step, and new networks on the chosen backend, else the default.
 */
export function hostFirewall(recorded: RecordedBackends, explicit: BackendName | undefined, opts: BackendOptions = {}): RoutedFirewall {
  const made = new Map<string, Firewall>(BACKENDS.map((b) => [b, REGISTRY[b].make(opts)]));
  return new RoutedFirewall(
    BACKENDS,
    explicit,
    (b) => made.get(b) as Firewall,
    (n) => recorded.backendOf(n),
    () => recorded.inUse(),
    new NftPortFilter(),
    () => defaultBackend().name,
  );
}
