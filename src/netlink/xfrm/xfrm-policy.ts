/**
 * XFRM policies, as `ip xfrm policy` manages them: specs with selectors and templates become
 * NEWPOLICY, UPDPOLICY, DELPOLICY, GETPOLICY and FLUSHPOLICY requests byte for byte like
 * iproute2's, and the kernel's policy messages decode into typed XfrmPolicy objects. Pure.
 */
import { ValidationError } from '../../errors.js';
import { decodePayload, request, type RawMessage, type Request } from '../core/message.js';
import { validateU32 } from '../core/validate.js';
import { XFRM_MSG, bareMessage, policyIdMessage, policyInfoMessage, type UserTmpl, type UserpolicyInfo, type XfrmAttrs } from './xfrm-schema.js';
import {
  AF_INET, XFRM_MODE, XFRM_POLICY_ACTION, XFRM_POLICY_DIR, XFRM_POLICY_FLAG, XFRM_POLICY_TYPE, XFRM_PROTO, XFRM_SHARE, familyNumber, familyOf, flagNames, flagsOf, getAddress, getCurrent, getLifetime, getSelector,
  markOf, nameOf, numberOf, putAddress, putLifetime, putSelector,
  type Header, type XfrmAction, type XfrmCurrent, type XfrmDir, type XfrmLifetime, type XfrmLifetimeSpec, type XfrmMarkSpec, type XfrmMode, type XfrmPolicyFlag, type XfrmPolicyType, type XfrmProto, type XfrmSelector,
  type XfrmSelectorSpec, type XfrmShare,
} from './xfrm-spec.js';

/** One transform a policy requires (`tmpl src A dst B proto P [spi N] [reqid N] [mode M] [level use]`). */
export interface XfrmTemplateSpec {
  /** Tunnel endpoints (required by the kernel in tunnel mode). */
  src?: string;
  dst?: string;
  proto: XfrmProto | number;
  spi?: number;
  reqid?: number;
  mode?: XfrmMode;
  /** 'use': the SA is optional (`level use`); 'required' by default. */
  level?: 'required' | 'use';
  share?: XfrmShare;
}

/** A template as the kernel reports it. */
export interface XfrmTemplate {
  family: 4 | 6 | number;
  src: string;
  dst: string;
  proto: XfrmProto | number;
  spi: number;
  reqid: number;
  mode: XfrmMode | number;
  share: XfrmShare | number;
  /** `level use`. */
  optional: boolean;
  aalgos: number;
  ealgos: number;
  calgos: number;
}

/** Names a policy: its selector and direction, or its index (and the mark and type it was added with). */
export interface XfrmPolicyId {
  sel?: XfrmSelectorSpec;
  dir: XfrmDir;
  /** The kernel's index of the policy; when given, the selector is not used to find it. */
  index?: number;
  ptype?: XfrmPolicyType;
  /** The mark and if_id are part of a policy's identity: give the ones it was added with. */
  mark?: XfrmMarkSpec;
  ifId?: number;
}

/** A policy to add or update: `ip xfrm policy add SELECTOR dir DIR [priority N] [action A] [tmpl ...]`. */
export interface XfrmPolicySpec {
  sel: XfrmSelectorSpec;
  dir: XfrmDir;
  priority?: number;
  index?: number;
  action?: XfrmAction;
  flags?: readonly XfrmPolicyFlag[];
  ptype?: XfrmPolicyType;
  lifetime?: XfrmLifetimeSpec;
  templates?: readonly XfrmTemplateSpec[];
  mark?: XfrmMarkSpec;
  ifId?: number;
}

function templateOf(t: XfrmTemplateSpec, family: number, i: number): UserTmpl {
  const h: Header = { aalgos: 0xffffffff, ealgos: 0xffffffff, calgos: 0xffffffff };
  let af = 0;
  if (t.dst !== undefined) af = familyNumber(putAddress(h, 'idDaddr', t.dst, `templates[${i}].dst`));
  if (t.src !== undefined) {
    const f = familyNumber(putAddress(h, 'saddr', t.src, `templates[${i}].src`));
    if (af && f !== af) throw new ValidationError(`templates[${i}]`, 'src and dst are of different families');
    af = f;
  }
  h['family'] = af || family;
  h['idProto'] = numberOf(XFRM_PROTO, t.proto, `templates[${i}].proto`);
  if (t.spi !== undefined) h['idSpi'] = validateU32(t.spi, `templates[${i}].spi`);
  if (t.reqid !== undefined) h['reqid'] = validateU32(t.reqid, `templates[${i}].reqid`);
  if (t.mode !== undefined) h['mode'] = numberOf(XFRM_MODE, t.mode, `templates[${i}].mode`);
  if (t.share !== undefined) h['share'] = numberOf(XFRM_SHARE, t.share, `templates[${i}].share`);
  if (t.level !== undefined && t.level !== 'required' && t.level !== 'use') throw new ValidationError(`templates[${i}].level`, "must be 'required' or 'use'");
  h['optional'] = t.level === 'use' ? 1 : 0;
  return h as UserTmpl;
}

function policyAttrs(p: { ptype?: XfrmPolicyType | undefined; mark?: XfrmMarkSpec | undefined; ifId?: number | undefined }): XfrmAttrs {
  const a: XfrmAttrs = {};
  if (p.ptype !== undefined && p.ptype !== 'main') a.policyType = { type: numberOf(XFRM_POLICY_TYPE, p.ptype, 'ptype'), pad1: 0, reserved1: 0, reserved2: 0, pad2: 0 };
  if (p.mark) a.mark = markOf(p.mark, 'mark');
  if (p.ifId !== undefined) a.ifId = validateU32(p.ifId, 'ifId');
  return a;
}

function policyRequest(type: number, p: XfrmPolicySpec): Request {
  const h: Header = {};
  const family = putSelector(h, p.sel, AF_INET) || AF_INET;
  putLifetime(h, p.lifetime);
  h['dir'] = numberOf(XFRM_POLICY_DIR, p.dir, 'dir');
  if (p.priority !== undefined) h['priority'] = validateU32(p.priority, 'priority');
  if (p.index !== undefined) h['index'] = validateU32(p.index, 'index');
  if (p.action !== undefined) h['action'] = numberOf(XFRM_POLICY_ACTION, p.action, 'action');
  h['flags'] = flagsOf(XFRM_POLICY_FLAG, p.flags, 'flags');
  const a = policyAttrs(p);
  if (p.templates?.length) a.tmpl = p.templates.map((t, i) => templateOf(t, family, i));
  return request(policyInfoMessage, type, 0, h, a);
}

/** ip xfrm policy add SELECTOR dir DIR [ptype sub] [priority N] [action allow|block] [mark M] [if_id N] [tmpl ...] */
export function addPolicyRequest(p: XfrmPolicySpec): Request {
  return policyRequest(XFRM_MSG.NEWPOLICY, p);
}
/** ip xfrm policy update SELECTOR dir DIR ... (adds, or replaces the policy with this selector and direction) */
export function updatePolicyRequest(p: XfrmPolicySpec): Request {
  return policyRequest(XFRM_MSG.UPDPOLICY, p);
}

function policyIdRequest(type: number, p: XfrmPolicyId): Request {
  const h: Header = {};
  putSelector(h, p.sel, AF_INET);
  h['dir'] = numberOf(XFRM_POLICY_DIR, p.dir, 'dir');
  if (p.index !== undefined) h['index'] = validateU32(p.index, 'index');
  return request(policyIdMessage, type, 0, h, policyAttrs(p));
}
/** ip xfrm policy delete { SELECTOR | index N } dir DIR [ptype sub] [mark M] [if_id N] */
export function deletePolicyRequest(p: XfrmPolicyId): Request {
  return policyIdRequest(XFRM_MSG.DELPOLICY, p);
}
/** ip xfrm policy get { SELECTOR | index N } dir DIR [ptype sub] [mark M] [if_id N] */
export function getPolicyRequest(p: XfrmPolicyId): Request {
  return policyIdRequest(XFRM_MSG.GETPOLICY, p);
}
/** ip xfrm policy list (a GETPOLICY dump: every policy of both types) */
export function dumpPolicyRequest(): Request {
  return request(bareMessage, XFRM_MSG.GETPOLICY, 0, {});
}
/** ip xfrm policy flush [ptype sub] */
export function flushPolicyRequest(ptype?: XfrmPolicyType): Request {
  return request(bareMessage, XFRM_MSG.FLUSHPOLICY, 0, {}, policyAttrs({ ptype }));
}

/** A policy as the kernel reports it (`ip xfrm policy list`). */
export interface XfrmPolicy {
  selector: XfrmSelector;
  dir: XfrmDir | number;
  action: XfrmAction | number;
  priority: number;
  index: number;
  flags: (XfrmPolicyFlag | number)[];
  /** 'main' unless the kernel says otherwise. */
  ptype: XfrmPolicyType | number;
  lifetime: XfrmLifetime;
  current: XfrmCurrent;
  templates: XfrmTemplate[];
  mark?: { value: number; mask: number };
  ifId?: number;
  raw: { header: UserpolicyInfo; attrs: XfrmAttrs };
}

/** Decodes a policy message (XFRM_MSG_NEWPOLICY, UPDPOLICY); a short or malformed one is a CodecError. */
export function decodePolicy(m: RawMessage): XfrmPolicy {
  const { header: h, attrs: a } = decodePayload(policyInfoMessage, m.payload);
  const p: XfrmPolicy = {
    selector: getSelector(h),
    dir: nameOf(XFRM_POLICY_DIR, h.dir),
    action: nameOf(XFRM_POLICY_ACTION, h.action),
    priority: h.priority,
    index: h.index,
    flags: flagNames(XFRM_POLICY_FLAG, h.flags),
    ptype: nameOf(XFRM_POLICY_TYPE, a.policyType?.type ?? 0),
    lifetime: getLifetime(h),
    current: getCurrent(h),
    templates: (a.tmpl ?? []).map((t) => ({
      family: familyOf(t.family),
      src: getAddress(t, 'saddr', t.family),
      dst: getAddress(t, 'idDaddr', t.family),
      proto: nameOf(XFRM_PROTO, t.idProto),
      spi: t.idSpi,
      reqid: t.reqid,
      mode: nameOf(XFRM_MODE, t.mode),
      share: nameOf(XFRM_SHARE, t.share),
      optional: t.optional !== 0,
      aalgos: t.aalgos,
      ealgos: t.ealgos,
      calgos: t.calgos,
    })),
    raw: { header: h, attrs: a },
  };
  if (a.mark) p.mark = { value: a.mark.v, mask: a.mark.m };
  if (a.ifId !== undefined) p.ifId = a.ifId;
  return p;
}
