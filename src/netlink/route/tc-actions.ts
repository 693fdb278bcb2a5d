/**
 * tc actions: the action list a filter carries (TCA_*_ACT) and standalone actions (RTM_*ACTION
 * with struct tcamsg, `tc actions ...`). Options are typed for mirred, gact and police; other
 * kinds keep theirs as bytes. Encoded as iproute2's tc/m_*.c encode them. Pure.
 */
import { ValidationError } from '../../errors.js';
import { NLM_F } from '../core/constants.js';
import { attr, bytes, nested, nestedArray, rawAttrs, s32, strz, u32, u64, type Attrs, type Codec, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, structCodec, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { parseRate, parseSize, rateSpecOf, rateStruct, rateTable, rtab, xmitSize, xmitTime, kernelPsched, zeroRateSpec, type LinkLayer, type Psched } from './tc-rate.js';
import { validateU32 } from '../core/validate.js';

/** RTM_*ACTION message types. */
export const RTM_ACTION = { NEW: 48, DEL: 49, GET: 50 } as const;

/** TC_ACT_*: what an action verdict does. */
export const TC_ACT = { unspec: -1, ok: 0, reclassify: 1, shot: 2, pipe: 3, stolen: 4, queued: 5, repeat: 6, redirect: 7, trap: 8 } as const;
/** TC_ACT_GOTO_CHAIN: the verdict `goto chain N` is this ORed with N. */
export const TC_ACT_GOTO_CHAIN = 0x20000000;
/** TC_ACT_JUMP: the verdict `jump N` is this ORed with N. */
export const TC_ACT_JUMP = 0x10000000;

/** A verdict as tc names it (`pass`, `drop`, `continue`, `pipe`, `reclassify`, ...), or the kernel's number (`goto chain 5` is TC_ACT_GOTO_CHAIN | 5). */
export type Verdict = keyof typeof TC_ACT | 'pass' | 'drop' | 'continue' | number;
const VERDICTS: Record<string, number> = { ...TC_ACT, pass: 0, drop: 2, continue: -1 };
/** The names tc prints for verdicts, by number. */
const VERDICT_NAMES: Record<number, string> = { [-1]: 'continue', 0: 'pass', 1: 'reclassify', 2: 'drop', 3: 'pipe', 4: 'stolen', 5: 'queued', 6: 'repeat', 7: 'redirect', 8: 'trap' };

/** The kernel's number for a verdict. */
export function verdictOf(v: Verdict, field = 'verdict'): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < -1 || v > 0x7fffffff) throw new ValidationError(field, `${v} is not a verdict`);
    return v;
  }
  const n = VERDICTS[v];
  if (n === undefined) throw new ValidationError(field, `unknown verdict ${JSON.stringify(v)}`);
  return n;
}

/** A verdict as tc prints it: 'pass', 'drop', ..., 'goto chain N', 'jump N', or the number itself. */
export function verdictName(n: number): string | number {
  const name = VERDICT_NAMES[n];
  if (name !== undefined) return name;
  if ((n & 0xf0000000) === TC_ACT_GOTO_CHAIN) return `goto chain ${n & 0x0fffffff}`;
  if ((n & 0xf0000000) === TC_ACT_JUMP) return `jump ${n & 0x0fffffff}`;
  return n;
}

// ------------------------------------------------------------ structs and schemas

/** struct tc_mirred (tc_gen then eaction and ifindex). */
export const tcMirred = structCodec(struct([['index', 'u32'], ['capab', 'u32'], ['action', 's32'], ['refcnt', 's32'], ['bindcnt', 's32'], ['eaction', 's32'], ['ifindex', 'u32']] as const));
export type TcMirred = ReturnType<typeof tcMirred.read>;
/** TCA_{EGRESS,INGRESS}_{REDIR,MIRROR}. */
export const MIRRED_EACTION = { 'egress-redirect': 1, 'egress-mirror': 2, 'ingress-redirect': 3, 'ingress-mirror': 4 } as const;
export type MirredEaction = keyof typeof MIRRED_EACTION;

/** The mirred action's attributes (TCA_MIRRED_*): its parameters (tc_mirred) and the times kept raw. */
export const mirredAttrs = {
  tm: attr(1, bytes),
  parms: attr(2, tcMirred),
  blockid: attr(4, u32),
} as const satisfies Schema;
export type MirredAttrs = Attrs<typeof mirredAttrs>;

/** struct tc_gact (tc_gen). */
export const tcGact = structCodec(struct([['index', 'u32'], ['capab', 'u32'], ['action', 's32'], ['refcnt', 's32'], ['bindcnt', 's32']] as const));
export type TcGact = ReturnType<typeof tcGact.read>;
/** struct tc_gact_p: with probability, another verdict. */
export const tcGactP = structCodec(struct([['ptype', 'u16'], ['pval', 'u16'], ['paction', 's32']] as const));
/** PGACT_*: how gact picks the packets that get its second verdict. */
export const PGACT = { netrand: 1, determ: 2 } as const;

/** The gact action's attributes (TCA_GACT_*). */
export const gactAttrs = {
  tm: attr(1, bytes),
  parms: attr(2, tcGact),
  prob: attr(3, tcGactP),
} as const satisfies Schema;
export type GactAttrs = Attrs<typeof gactAttrs>;

/** struct tc_police. */
export const tcPolice = rateStruct('tc_police', [
  ['index', 'u32'], ['action', 's32'], ['limit', 'u32'], ['burst', 'u32'], ['mtu', 'u32'],
  ['rate', 'spec'], ['peakrate', 'spec'], ['refcnt', 's32'], ['bindcnt', 's32'], ['capab', 'u32'],
] as const);
export type TcPolice = ReturnType<typeof tcPolice.read>;

/** The police action's attributes (TCA_POLICE_*), in the order tc sends them. */
export const policeAttrs = {
  tbf: attr(1, tcPolice),
  rate: attr(2, rtab),
  rate64: attr(8, u64),
  peakrate: attr(3, rtab),
  peakrate64: attr(9, u64),
  avrate: attr(4, u32),
  result: attr(5, s32),
  pktrate64: attr(10, u64),
  pktburst64: attr(11, u64),
  tm: attr(6, bytes),
} as const satisfies Schema;
export type PoliceAttrs = Attrs<typeof policeAttrs>;

/** TCA_ACT_* of one action; `options` is bytes here and typed by kind below. */
const actionBase = {
  kind: attr(1, strz),
  options: attr(2, bytes, { nestedFlag: true }),
  index: attr(3, u32),
  stats: attr(4, bytes),
  cookie: attr(6, bytes),
  flags: attr(7, bytes),
  hwStats: attr(8, bytes),
  usedHwStats: attr(9, bytes),
  inHwCount: attr(10, u32),
} as const satisfies Schema;
const withOptions = <S extends Schema>(s: S) => ({ ...actionBase, options: attr(2, nested(s), { nestedFlag: true }) }) as const satisfies Schema;
/** A mirred action's attributes, options typed (`action mirred ...`). */
export const mirredActionAttrs = withOptions(mirredAttrs);
/** A gact action's attributes, options typed (`action pass|drop|...`). */
export const gactActionAttrs = withOptions(gactAttrs);
/** A police action's attributes, options typed (`action police ...`). */
export const policeActionAttrs = withOptions(policeAttrs);

/** One action (TCA_ACT_*): options typed for mirred, gact and police, bytes for other kinds. */
export type ActionAttrs =
  | Attrs<typeof actionBase>
  | (Attrs<typeof mirredActionAttrs> & { kind: 'mirred' })
  | (Attrs<typeof gactActionAttrs> & { kind: 'gact' })
  | (Attrs<typeof policeActionAttrs> & { kind: 'police' });

const actionSchemas: Record<string, Schema> = { mirred: mirredActionAttrs, gact: gactActionAttrs, police: policeActionAttrs };

/** The string of the first attribute of `type` in b[o, end) (a kind), without looking further. */
export function kindIn(b: Buffer, o: number, end: number, type = 1): string | undefined {
  for (const a of rawAttrs(b, o, end)) if ((a.type & 0x3fff) === type) return a.data.toString('utf8').replace(/\0.*$/s, '');
  return undefined;
}
const actionSchema = (kind: string | undefined): Schema => (kind !== undefined && actionSchemas[kind]) || actionBase;

/** One action, its options schema chosen by its TCA_ACT_KIND. */
export const actionCodec: Codec<ActionAttrs> & { schemaAt(b: Buffer, o: number, l: number): Schema } = {
  size: (v) => nested(actionSchema(v.kind)).size(v as never),
  write: (b, o, v) => nested(actionSchema(v.kind)).write(b, o, v as never),
  read: (b, o, l) => nested(actionSchema(kindIn(b, o, o + l))).read(b, o, l) as ActionAttrs,
  schemaAt: (b, o, l) => actionSchema(kindIn(b, o, o + l)),
};
/** A list of actions (TCA_*_ACT, TCA_ACT_TAB): nests numbered 1, 2, ... in order of execution. */
export const actionList = Object.assign(nestedArray(actionCodec), {
  /** For tools that describe messages: the numbered entries, each an action. */
  // A filter's list counts from 1; the kernel's standalone dump (tcf_dump_walker) from 0.
  schema: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`action${i}`, attr(i, actionCodec)])) as Schema,
});

// ------------------------------------------------------------ specs: what to send

/** The police action's limits, in tc's terms. Rates in bytes/s or text ('1mbit'); sizes in bytes or text ('10kb'). */
export interface PoliceSpec {
  rate?: number | string;
  /** Bucket (`burst`), required with rate. */
  burst?: number | string;
  /** Largest packet (`mtu`), required with peakrate. */
  mtu?: number | string;
  peakrate?: number | string;
  /** Police on the rate estimator instead of a token bucket (`avrate`). */
  avrate?: number | string;
  mpu?: number;
  overhead?: number;
  linklayer?: LinkLayer;
  /** Verdict for traffic over the limit (default 'reclassify', as tc). */
  exceed?: Verdict;
  /** Verdict for traffic within the limit (default 'pass'; tc sends it only when it is not 'pass'). */
  conform?: Verdict;
  /** Packets per second (`pkts_rate`) with a bucket of `pktsBurst` packets, instead of a byte rate. */
  pktsRate?: number;
  pktsBurst?: number;
}

/** One action of a filter or a standalone action, as tc takes it. `index` names a shared action instance. */
export type ActionSpec =
  | { kind: 'mirred'; action: MirredEaction; dev: LinkRef; verdict?: Verdict; index?: number }
  | { kind: 'gact'; verdict: Verdict; random?: { type: 'netrand' | 'determ'; verdict: Verdict; value: number }; index?: number }
  | ({ kind: 'police'; index?: number } & PoliceSpec);

function mirredOptions(a: Extract<ActionSpec, { kind: 'mirred' }>, ifindex: number): MirredAttrs {
  const eaction = MIRRED_EACTION[a.action];
  if (eaction === undefined) throw new ValidationError('mirred', `unknown action ${JSON.stringify(a.action)}`);
  // A redirect steals the packet, a mirror lets it go on: tc's defaults.
  const verdict = a.verdict !== undefined ? verdictOf(a.verdict, 'mirred verdict') : eaction === 1 || eaction === 3 ? TC_ACT.stolen : TC_ACT.pipe;
  return { parms: { index: a.index ?? 0, capab: 0, action: verdict, refcnt: 0, bindcnt: 0, eaction, ifindex } };
}

function gactOptions(a: Extract<ActionSpec, { kind: 'gact' }>): GactAttrs {
  const o: GactAttrs = { parms: { index: a.index ?? 0, capab: 0, action: verdictOf(a.verdict, 'gact verdict'), refcnt: 0, bindcnt: 0 } };
  if (a.random) {
    const ptype = PGACT[a.random.type];
    if (ptype === undefined) throw new ValidationError('gact random', `type ${JSON.stringify(a.random.type)} is not netrand or determ`);
    o.prob = { ptype, pval: validateU32(a.random.value, 'gact random value', 0, 10000), paction: verdictOf(a.random.verdict, 'gact random verdict') };
  }
  return o;
}

function policeOptions(a: PoliceSpec & { index?: number }, p: Psched): PoliceAttrs {
  const rate64 = a.rate !== undefined ? parseRate(a.rate) : 0;
  const prate64 = a.peakrate !== undefined ? parseRate(a.peakrate) : 0;
  const avrate = a.avrate !== undefined ? parseRate(a.avrate) : 0;
  const buffer = a.burst !== undefined ? parseSize(a.burst) : 0;
  const mtu = a.mtu !== undefined ? parseSize(a.mtu) : 0;
  const mpu = a.mpu ?? 0;
  if (rate64 && avrate) throw new ValidationError('police', 'give rate or avrate, not both');
  if (!rate64 && !avrate && !a.index && !mtu && !a.pktsRate) throw new ValidationError('police', 'give rate, avrate, mtu, pktsRate or the index of an existing policer');
  if (rate64 && !buffer) throw new ValidationError('police', 'burst is required with rate');
  if (a.pktsRate && !a.pktsBurst) throw new ValidationError('police', 'pktsBurst is required with pktsRate');
  if (a.pktsRate && rate64) throw new ValidationError('police', 'give rate or pktsRate, not both');
  if (prate64 && (!rate64 || !mtu)) throw new ValidationError('police', 'peakrate needs rate and mtu');
  const tbl = { mtu, mpu, linklayer: a.linklayer ?? 'ethernet' } as const;
  const tbf: TcPolice = {
    index: a.index ?? 0, action: verdictOf(a.exceed ?? 'reclassify', 'police exceed'), limit: 0, burst: 0, mtu,
    rate: zeroRateSpec(), peakrate: zeroRateSpec(), refcnt: 0, bindcnt: 0, capab: 0,
  };
  const o: PoliceAttrs = { tbf };
  if (rate64) {
    const r32 = Math.min(rate64, 0xffffffff);
    // tc sizes the table with the 64-bit rate and writes 2^32 - 1 in the spec when it does not fit.
    const t = rateTable(rate64, p, tbl);
    tbf.rate = rateSpecOf(t, r32, { overhead: a.overhead ?? 0, mpu });
    tbf.burst = xmitTime(rate64, buffer, p);
    o.rate = t.table;
    if (rate64 > 0xffffffff) o.rate64 = BigInt(rate64);
  }
  if (prate64) {
    const t = rateTable(prate64, p, tbl);
    tbf.peakrate = rateSpecOf(t, Math.min(prate64, 0xffffffff), { overhead: a.overhead ?? 0, mpu });
    o.peakrate = t.table;
    if (prate64 > 0xffffffff) o.peakrate64 = BigInt(prate64);
  }
  if (avrate) o.avrate = avrate;
  const conform = a.conform !== undefined ? verdictOf(a.conform, 'police conform') : 0;
  if (conform) o.result = conform;
  if (a.pktsRate) {
    o.pktrate64 = BigInt(a.pktsRate);
    o.pktburst64 = BigInt(xmitTime(a.pktsRate, a.pktsBurst ?? 0, p));
  }
  return o;
}

/** The TCA_ACT_* attributes of an action spec; `ifindex` is the resolved mirred target. */
export function actionAttrs(a: ActionSpec, ifindex: number, p: Psched): ActionAttrs {
  if (a.kind === 'mirred') return { kind: 'mirred', options: mirredOptions(a, ifindex) };
  if (a.kind === 'gact') return { kind: 'gact', options: gactOptions(a) };
  if (a.kind === 'police') return { kind: 'police', options: policeOptions(a, p) };
  throw new ValidationError('action', `unsupported action ${JSON.stringify((a as { kind: unknown }).kind)}`);
}

/** The links an action list names (mirred targets), keyed for withIndexes. */
export function actionRefs(actions: readonly ActionSpec[] | undefined): Record<string, LinkRef | undefined> {
  const refs: Record<string, LinkRef | undefined> = {};
  actions?.forEach((a, i) => {
    if (a.kind === 'mirred') refs[`action${i}`] = a.dev;
  });
  return refs;
}

/** An action list's attributes once its mirred targets are resolved. */
export function actionListAttrs(actions: readonly ActionSpec[], idx: Partial<Record<string, number>>, p: Psched): ActionAttrs[] {
  return actions.map((a, i) => actionAttrs(a, idx[`action${i}`] ?? 0, p));
}

// ------------------------------------------------------------ decoded actions

/** An action as `tc actions show` or a filter's listing shows it (its attributes are in the message's `raw`). */
export interface TcAction {
  kind: string;
  /** The instance index the kernel gave it (shared by filters that name it). */
  index?: number;
  mirred?: { eaction: MirredEaction | number; ifindex: number; action: number };
  gact?: { verdict: string | number; random?: { type: 'netrand' | 'determ' | number; verdict: string | number; value: number } };
  /** Rates in bytes/s, burst and mtu in bytes; verdicts as tc names them. */
  police?: { rate: number; burst: number; mtu: number; exceed: string | number; conform: string | number; peakrate?: number; avrate?: number; pktsRate?: number; pktsBurst?: number };
}

/** The typed view of one decoded action. */
export function actionView(a: ActionAttrs, p: Psched = kernelPsched()): TcAction {
  const out: TcAction = { kind: a.kind ?? '' };
  const opts = a.options;
  if (!opts || Buffer.isBuffer(opts)) return out;
  if (a.kind === 'mirred') {
    const m = (opts as MirredAttrs).parms;
    if (m) {
      const ea = (Object.keys(MIRRED_EACTION) as MirredEaction[]).find((k) => MIRRED_EACTION[k] === m.eaction);
      out.index = m.index;
      out.mirred = { eaction: ea ?? m.eaction, ifindex: m.ifindex, action: m.action };
    }
  } else if (a.kind === 'gact') {
    const g = opts as GactAttrs;
    if (g.parms) {
      out.index = g.parms.index;
      out.gact = { verdict: verdictName(g.parms.action) };
      if (g.prob && g.prob.ptype) {
        const t = g.prob.ptype === PGACT.netrand ? 'netrand' : g.prob.ptype === PGACT.determ ? 'determ' : g.prob.ptype;
        out.gact.random = { type: t, verdict: verdictName(g.prob.paction), value: g.prob.pval };
      }
    }
  } else if (a.kind === 'police') {
    const o = opts as PoliceAttrs;
    const t = o.tbf;
    if (t) {
      const rate = o.rate64 !== undefined ? Number(o.rate64) : t.rate.rate;
      out.index = t.index;
      out.police = { rate, burst: rate ? xmitSize(rate, t.burst, p) : 0, mtu: t.mtu, exceed: verdictName(t.action), conform: verdictName(o.result ?? 0) };
      const peak = o.peakrate64 !== undefined ? Number(o.peakrate64) : t.peakrate.rate;
      if (peak) out.police.peakrate = peak;
      if (o.avrate) out.police.avrate = o.avrate;
      if (o.pktrate64 !== undefined) {
        out.police.pktsRate = Number(o.pktrate64);
        if (o.pktburst64 !== undefined) out.police.pktsBurst = xmitSize(Number(o.pktrate64), Number(o.pktburst64), p);
      }
    }
  }
  return out;
}

// ------------------------------------------------------------ standalone actions (tc actions ...)

/** struct tcamsg. */
export const tcamsg = struct([['family', 'u8'], ['pad1', 'u8'], ['pad2', 'u16']] as const);

/** struct nla_bitfield32: a value and the bits of it that count. */
export const bitfield32 = structCodec(struct([['value', 'u32'], ['selector', 'u32']] as const));

/** TCA_ROOT_*: the attributes of an action message. */
export const actionRootAttrs = {
  tab: attr(1, actionList),
  flags: attr(2, bitfield32),
  count: attr(3, u32),
  timeDelta: attr(4, u32),
  extWarnMsg: attr(5, strz),
} as const satisfies Schema;
export type ActionRootAttrs = Attrs<typeof actionRootAttrs>;
/** An RTM_*ACTION message: tcamsg and TCA_ROOT_* (`tc actions ...`). */
export const actionMessage: MessageDef<keyof ReturnType<typeof tcamsg.read>, typeof actionRootAttrs> = { header: tcamsg, attrs: actionRootAttrs };

/** TCA_ACT_FLAG_LARGE_DUMP_ON: as many actions per message as fit (tc always asks for it). */
const LARGE_DUMP_ON = 1;

function actionsRequest(type: number, flags: number, actions: readonly ActionSpec[], p: Psched): Request {
  if (actions.length === 0) throw new ValidationError('actions', 'give at least one action');
  return withIndexes(actionRefs(actions), (idx) => request(actionMessage, type, flags, {}, { tab: actionListAttrs(actions, idx, p) }));
}
/** tc actions add action KIND ... [index N] [action ...] */
export function addActionRequest(actions: readonly ActionSpec[], p: Psched = kernelPsched()): Request {
  return actionsRequest(RTM_ACTION.NEW, NLM_F.CREATE | NLM_F.EXCL, actions, p);
}
/** tc actions replace action KIND ... index N */
export function replaceActionRequest(actions: readonly ActionSpec[], p: Psched = kernelPsched()): Request {
  return actionsRequest(RTM_ACTION.NEW, NLM_F.CREATE | NLM_F.REPLACE, actions, p);
}
/** tc actions change action KIND ... index N: the action must exist. */
export function changeActionRequest(actions: readonly ActionSpec[], p: Psched = kernelPsched()): Request {
  return actionsRequest(RTM_ACTION.NEW, NLM_F.REPLACE, actions, p);
}

/** A standalone action named by kind and index. */
export interface ActionRef {
  kind: string;
  index: number;
}
function byIndexRequest(type: number, refs: readonly ActionRef[]): Request {
  const tab: ActionAttrs[] = refs.map((r) => ({ kind: r.kind, index: validateU32(r.index, 'action index', 1) }));
  return request(actionMessage, type, 0, {}, { tab });
}
/** tc actions del action KIND index N */
export function deleteActionRequest(refs: readonly ActionRef[]): Request {
  return byIndexRequest(RTM_ACTION.DEL, refs);
}
/** tc actions get action KIND index N */
export function getActionRequest(refs: readonly ActionRef[]): Request {
  return byIndexRequest(RTM_ACTION.GET, refs);
}
/** tc actions ls action KIND (a dump: every instance of one kind) */
export function dumpActionRequest(kind: string): Request {
  return request(actionMessage, RTM_ACTION.GET, 0, {}, { tab: [{ kind }], flags: { value: LARGE_DUMP_ON, selector: LARGE_DUMP_ON } });
}
/** tc actions flush action KIND */
export function flushActionRequest(kind: string): Request {
  return request(actionMessage, RTM_ACTION.DEL, NLM_F.ROOT, {}, { tab: [{ kind }], flags: { value: LARGE_DUMP_ON, selector: LARGE_DUMP_ON } });
}

/** Decodes an RTM_NEWACTION / RTM_DELACTION message: the actions of its table. */
export function decodeActions(m: RawMessage, p: Psched = kernelPsched()): TcAction[] {
  const { attrs } = decodePayload(actionMessage, m.payload);
  return (attrs.tab ?? []).map((a) => actionView(a, p));
}
