/** Netns ids (RTM_NEWNSID / RTM_DELNSID / RTM_GETNSID): `ip netns set NAME ID`, `ip netns list-id`. Pure. */
import { attr, s32, u32, type Attrs, type Schema } from '../core/attr.js';
import { decodePayload, request, struct, type MessageDef, type RawMessage, type Request } from '../core/message.js';
import { validateU32 } from '../core/validate.js';

export const RTM_NSID = { NEW: 88, DEL: 89, GET: 90 } as const;

/** struct rtgenmsg, one byte of family, padded to 4 as every sender aligns it. */
export const rtgenmsg = struct([['family', 'u8'], ['pad1', 'u8'], ['pad2', 'u16']] as const);
export type RtGenMsg = ReturnType<typeof rtgenmsg.read>;

export const nsidAttrs = {
  fd: attr(3, u32),
  pid: attr(2, u32),
  nsid: attr(1, s32),
  targetNsid: attr(4, s32),
  currentNsid: attr(5, s32),
} as const satisfies Schema;
export type NsidAttrs = Attrs<typeof nsidAttrs>;
export const nsidMessage: MessageDef<keyof RtGenMsg, typeof nsidAttrs> = { header: rtgenmsg, attrs: nsidAttrs };

/** A netns id: the number this netns uses for another one (-1: none assigned). */
export interface NetnsId {
  nsid: number;
  /** In RTM_GETNSID replies for a pid or fd: the id of the caller's own netns as seen there. */
  currentNsid?: number;
  raw: { header: RtGenMsg; attrs: NsidAttrs };
}

/** Decodes an RTM_NEWNSID / RTM_DELNSID message. */
export function decodeNetnsId(m: RawMessage): NetnsId {
  const { header, attrs } = decodePayload(nsidMessage, m.payload);
  const n: NetnsId = { nsid: attrs.nsid ?? -1, raw: { header, attrs } };
  if (attrs.currentNsid !== undefined) n.currentNsid = attrs.currentNsid;
  return n;
}

/** Which netns: an fd of it (from openNetns) or a pid living in it. */
export type NetnsTarget = { fd: number } | { pid: number };

function target(t: NetnsTarget): NsidAttrs {
  return 'fd' in t ? { fd: validateU32(t.fd, 'netns fd') } : { pid: validateU32(t.pid, 'pid', 1) };
}

/** ip netns set NAME ID (assign `nsid` to the netns open as fd, or of pid; -1 lets the kernel pick) */
export function setNsidRequest(t: NetnsTarget, nsid: number): Request {
  return request(nsidMessage, RTM_NSID.NEW, 0, {}, { ...target(t), nsid: nsid === -1 ? -1 : validateU32(nsid, 'nsid', 0, 0x7fffffff) });
}

/** ip netns list-id target-nsid... (the id this netns has for the one open as fd, or of pid) */
export function getNsidRequest(t: NetnsTarget): Request {
  return request(nsidMessage, RTM_NSID.GET, 0, {}, target(t));
}

/** ip netns list-id (dump of every id this netns has assigned) */
export function dumpNsidRequest(): Request {
  return request(nsidMessage, RTM_NSID.GET, 0, {});
}
