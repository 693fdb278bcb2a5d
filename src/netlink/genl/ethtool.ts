/**
 * The ethtool generic netlink family: link info and state, features (offloads) with their
 * names, and setting features. Bitsets are requested verbose, so every bit comes with its name.
 * The Ethtool handle runs the operations synchronously and its `promises` twin asynchronously;
 * the functions taking a Genl (getFeatures(g, link), ...) are the synchronous form kept as they were.
 */
import { attr, flag, nested, repeated, strz, u8, u32, bytes, type Attrs, type Schema } from '../core/attr.js';
import { Genl, type GenlOps } from './genl.js';
import type { SocketOptions } from '../core/socket.js';
import type { Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
import { refKey, type LinkRef } from '../core/ref.js';

export const ETHTOOL_GENL_NAME = 'ethtool';
/** ETHTOOL_MSG_* sent to the kernel. */
export const ETHTOOL_MSG = { STRSET_GET: 1, LINKINFO_GET: 2, LINKINFO_SET: 3, LINKMODES_GET: 4, LINKMODES_SET: 5, LINKSTATE_GET: 6, DEBUG_GET: 7, DEBUG_SET: 8, WOL_GET: 9, WOL_SET: 10, FEATURES_GET: 11, FEATURES_SET: 12 } as const;
/** ETHTOOL_FLAG_* of the request header. */
export const ETHTOOL_FLAG = { COMPACT_BITSETS: 1, OMIT_REPLY: 2, STATS: 4 } as const;

/** ETHTOOL_A_HEADER_*: which device, and request flags. */
export const headerAttrs = { devIndex: attr(1, u32), devName: attr(2, strz), flags: attr(3, u32), phyIndex: attr(4, u32) } as const satisfies Schema;

/** ETHTOOL_A_STRSET_*: string sets (feature names, link modes, ...) by id. */
export const ETH_SS = { TEST: 0, STATS: 1, PRIV_FLAGS: 2, FEATURES: 4, LINK_MODES: 9 } as const;
export const strsetAttrs = {
  header: attr(1, nested(headerAttrs), { nestedFlag: true }),
  stringsets: attr(
    2,
    nested({
      stringset: repeated(
        1,
        nested({
          id: attr(1, u32),
          count: attr(2, u32),
          strings: attr(3, nested({ string: repeated(1, nested({ index: attr(1, u32), value: attr(2, strz) } as const), { nestedFlag: true }) } as const), { nestedFlag: true }),
        } as const),
        { nestedFlag: true },
      ),
    } as const),
    { nestedFlag: true },
  ),
  countsOnly: attr(3, flag),
} as const satisfies Schema;

/** One bit of a verbose bitset: its index, name, and (without NOMASK) whether it is set. */
export const bitAttrs = { index: attr(1, u32), name: attr(2, strz), value: attr(3, flag) } as const satisfies Schema;
/** ETHTOOL_A_BITSET_*: verbose (BITS with names) or compact (SIZE, VALUE, MASK bitmaps). */
export const bitsetAttrs = {
  nomask: attr(1, flag),
  size: attr(2, u32),
  bits: attr(3, nested({ bit: repeated(1, nested(bitAttrs), { nestedFlag: true }) } as const), { nestedFlag: true }),
  value: attr(4, bytes),
  mask: attr(5, bytes),
} as const satisfies Schema;
export type Bitset = Attrs<typeof bitsetAttrs>;

const header = attr(1, nested(headerAttrs), { nestedFlag: true });

export const linkinfoAttrs = { header, port: attr(2, u8), phyaddr: attr(3, u8), tpMdix: attr(4, u8), tpMdixCtrl: attr(5, u8), transceiver: attr(6, u8) } as const satisfies Schema;
export const linkstateAttrs = { header, link: attr(2, u8), sqi: attr(3, u32), sqiMax: attr(4, u32), extState: attr(5, u8), extSubstate: attr(6, u8), extDownCnt: attr(7, u32) } as const satisfies Schema;
export const featuresAttrs = {
  header,
  hw: attr(2, nested(bitsetAttrs), { nestedFlag: true }),
  wanted: attr(3, nested(bitsetAttrs), { nestedFlag: true }),
  active: attr(4, nested(bitsetAttrs), { nestedFlag: true }),
  nochange: attr(5, nested(bitsetAttrs), { nestedFlag: true }),
} as const satisfies Schema;

/**
 * The names of the bits set in a bitset: a verbose one names its bits (all listed bits when
 * NOMASK, else those with VALUE); a compact one is a bitmap of u32 words, named by `names`.
 */
export function bitsetNames(b: Bitset | undefined, names: readonly string[] = []): Set<string> {
  const out = new Set<string>();
  if (!b) return out;
  for (const bit of b.bits?.bit ?? []) if (bit.name !== undefined && (b.nomask || bit.value)) out.add(bit.name);
  if (b.value) {
    // The bitmap is u32 words in host (little-endian) order, so bit i is bit i % 8 of byte i / 8:
    // read by byte, a bitmap shorter than its SIZE or not a whole number of words ends the walk.
    const bits = Math.min(b.size ?? Infinity, b.value.length * 8);
    for (let i = 0; i < bits; i++) if (((b.value[i >> 3] as number) >> (i & 7)) & 1) out.add(names[i] ?? `bit${i}`);
  }
  return out;
}

/** The attributes of a STRSET_GET for one string set, as ethtool sends them. */
export function strsetRequestAttrs(id: number): Attrs<typeof strsetAttrs> {
  return { header: {}, stringsets: { stringset: [{ id }] } };
}

/** The attributes of a FEATURES_GET, compact bitsets as ethtool asks for them. */
export function getFeaturesAttrs(link: LinkRef): Attrs<typeof featuresAttrs> {
  return { header: devHeader(link, ETHTOOL_FLAG.COMPACT_BITSETS) };
}

/** One device feature as `ethtool -k` shows it. */
export interface Feature {
  active: boolean;
  /** Cannot be changed (`[fixed]`): not in the device's hw features, or in nochange. */
  fixed: boolean;
  /** Requested by the user (`ethtool -K`), whatever the device does. */
  wanted: boolean;
}

function devHeader(link: LinkRef, flags = 0): Attrs<typeof headerAttrs> {
  const k = refKey(link);
  return { ...(typeof k === 'number' ? { devIndex: k } : { devName: k }), ...(flags ? { flags } : {}) };
}

/** The attributes of ETHTOOL_MSG_FEATURES_SET: the listed bits are the mask, VALUE marks those turned on. */
export function setFeaturesAttrs(link: LinkRef, changes: Record<string, boolean>): Attrs<typeof featuresAttrs> {
  return { header: devHeader(link, ETHTOOL_FLAG.COMPACT_BITSETS), wanted: { bits: { bit: Object.entries(changes).map(([name, on]) => ({ name, ...(on ? { value: true as const } : {}) })) } } };
}

/** The names of the feature bits of each handle's family cache, asked of the kernel once. */
const namesCache = new WeakMap<GenlOps, string[]>();

/**
 * The ethtool operations, each written once as a generator of netlink exchanges (core/op.ts):
 * Ethtool and the functions below run them synchronously, Ethtool.promises asynchronously.
 */
export class EthtoolOps {
  /** Runs over a generic netlink handle's operations (its family cache is shared). */
  constructor(readonly genl: GenlOps) {}

  /** The names of the feature bits, by bit index (ETH_SS_FEATURES). `ethtool --show-features` uses the same list */
  *featureNames(): Op<string[]> {
    let n = namesCache.get(this.genl);
    if (!n) {
      const [r] = yield* this.genl.request(ETHTOOL_GENL_NAME, ETHTOOL_MSG.STRSET_GET, strsetAttrs, strsetRequestAttrs(ETH_SS.FEATURES));
      const byIndex = new Map<number, string>();
      let count = 0;
      for (const set of r?.attrs.stringsets?.stringset ?? []) {
        for (const st of set.strings?.string ?? []) {
          count++;
          if (st.index !== undefined) byIndex.set(st.index, st.value ?? '');
        }
      }
      // The kernel numbers a set's strings 0..count-1 and sends them all: an index beyond the
      // strings received names nothing, and a sparse array up to it could take minutes to walk.
      n = Array.from({ length: count }, (_, i) => byIndex.get(i) ?? '');
      namesCache.set(this.genl, n);
    }
    return n;
  }

  /** A device's features by name. `ethtool -k DEV` */
  *getFeatures(link: LinkRef): Op<Record<string, Feature>> {
    const all = yield* this.featureNames();
    const [r] = yield* this.genl.request(ETHTOOL_GENL_NAME, ETHTOOL_MSG.FEATURES_GET, featuresAttrs, getFeaturesAttrs(link));
    const a = r?.attrs ?? {};
    const hw = bitsetNames(a.hw, all);
    const active = bitsetNames(a.active, all);
    const wanted = bitsetNames(a.wanted, all);
    const nochange = bitsetNames(a.nochange, all);
    const names = new Set([...all.filter(Boolean), ...hw, ...active, ...wanted, ...nochange]);
    const out: Record<string, Feature> = {};
    for (const n of names) out[n] = { active: active.has(n), fixed: !hw.has(n) || nochange.has(n), wanted: wanted.has(n) };
    return out;
  }

  /** Turns features on or off by name. `ethtool -K DEV NAME on|off ...` */
  *setFeatures(link: LinkRef, changes: Record<string, boolean>): Op<void> {
    yield* this.genl.request(ETHTOOL_GENL_NAME, ETHTOOL_MSG.FEATURES_SET, featuresAttrs, setFeaturesAttrs(link, changes));
  }

  /** Whether the link has carrier, as `ethtool DEV` reports "Link detected". */
  *getLinkState(link: LinkRef): Op<{ link?: boolean }> {
    const [r] = yield* this.genl.request(ETHTOOL_GENL_NAME, ETHTOOL_MSG.LINKSTATE_GET, linkstateAttrs, { header: devHeader(link) });
    return r?.attrs.link === undefined ? {} : { link: r.attrs.link === 1 };
  }

  /** Port type and transceiver of a link. `ethtool DEV` (the link info part) */
  *getLinkInfo(link: LinkRef): Op<{ port?: number; transceiver?: number; phyaddr?: number }> {
    const [r] = yield* this.genl.request(ETHTOOL_GENL_NAME, ETHTOOL_MSG.LINKINFO_GET, linkinfoAttrs, { header: devHeader(link) });
    const a = r?.attrs ?? {};
    return { ...(a.port !== undefined ? { port: a.port } : {}), ...(a.transceiver !== undefined ? { transceiver: a.transceiver } : {}), ...(a.phyaddr !== undefined ? { phyaddr: a.phyaddr } : {}) };
  }
}

/** Every ethtool operation's name, read from EthtoolOps. */
export const ETHTOOL_OPERATIONS: readonly string[] = operationNames(EthtoolOps);

export interface Ethtool extends SyncMethods<Omit<EthtoolOps, 'genl'>> {}

/** The ethtool family on a generic netlink socket; `promises` is its async twin. */
export class Ethtool extends SyncHandle<EthtoolOps, EthtoolPromises> {
  /** Opens a generic netlink socket in the calling thread's netns. */
  static open(opts: SocketOptions = {}): Ethtool {
    return new Ethtool(Genl.open(opts));
  }

  /** Runs on `genl`'s socket, sharing its family cache. */
  constructor(readonly genl: Genl) {
    super(genl.socket, new EthtoolOps(genl.ops), EthtoolPromises);
  }
}

export interface EthtoolPromises extends PromiseMethods<Omit<EthtoolOps, 'genl'>> {}

/** Every ethtool operation returning a promise (`Ethtool.open().promises`, or `new Ethtool(g).promises`). */
export class EthtoolPromises extends PromiseHandle<EthtoolOps> {}

defineOperations(ETHTOOL_OPERATIONS, Ethtool, EthtoolPromises);

/** The names of the feature bits, by bit index (ETH_SS_FEATURES). `ethtool --show-features` uses the same list */
export function featureNames(g: Genl): string[] {
  return new Ethtool(g).featureNames();
}

/** A device's features by name. `ethtool -k DEV` */
export function getFeatures(g: Genl, link: LinkRef): Record<string, Feature> {
  return new Ethtool(g).getFeatures(link);
}

/** Turns features on or off by name. `ethtool -K DEV NAME on|off ...` */
export function setFeatures(g: Genl, link: LinkRef, changes: Record<string, boolean>): void {
  new Ethtool(g).setFeatures(link, changes);
}

/** Whether the link has carrier, as `ethtool DEV` reports "Link detected". */
export function getLinkState(g: Genl, link: LinkRef): { link?: boolean } {
  return new Ethtool(g).getLinkState(link);
}

/** Port type and transceiver of a link. `ethtool DEV` (the link info part) */
export function getLinkInfo(g: Genl, link: LinkRef): { port?: number; transceiver?: number; phyaddr?: number } {
  return new Ethtool(g).getLinkInfo(link);
}
