/**
 * IPsec over NETLINK_XFRM: security associations (states) and security policies, as `ip xfrm
 * state` and `ip xfrm policy` manage them. Specs in `ip`'s terms become requests byte for byte
 * like iproute2's (checked against captures in test/fixtures); the kernel's replies decode into
 * typed XfrmState and XfrmPolicy objects whose `raw` keeps the header and attributes. The wire
 * layouts are in xfrm-schema.ts, the names and parts both share in xfrm-spec.ts, the requests and
 * decoders in xfrm-state.ts and xfrm-policy.ts; the Xfrm handle here runs them.
 */
import { CodecError } from '../../errors.js';
import { NETLINK } from '../core/constants.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { XFRM_MSG, xfrmTypeName } from './xfrm-schema.js';
import {
  addStateRequest, allocSpiRequest, decodeState, deleteStateRequest, dumpStateRequest, flushStateRequest, getStateRequest, updateStateRequest,
  type XfrmAllocSpiSpec, type XfrmState, type XfrmStateFilter, type XfrmStateId, type XfrmStateSpec,
} from './xfrm-state.js';
import { addPolicyRequest, decodePolicy, deletePolicyRequest, dumpPolicyRequest, flushPolicyRequest, getPolicyRequest, updatePolicyRequest, type XfrmPolicy, type XfrmPolicyId, type XfrmPolicySpec } from './xfrm-policy.js';
import type { XfrmPolicyType, XfrmProto } from './xfrm-spec.js';

export * from './xfrm-state.js';
export * from './xfrm-policy.js';
export {
  XFRM_PROTO, XFRM_MODE, XFRM_STATE_FLAG, XFRM_SA_XFLAG, XFRM_POLICY_DIR, XFRM_POLICY_ACTION, XFRM_POLICY_FLAG, XFRM_POLICY_TYPE, XFRM_ENCAP, XFRM_SHARE, XFRM_INF,
  type XfrmProto, type XfrmMode, type XfrmStateFlag, type XfrmExtraFlag, type XfrmDir, type XfrmAction, type XfrmPolicyFlag, type XfrmPolicyType, type XfrmEncapType, type XfrmShare,
  type XfrmSelectorSpec, type XfrmSelector, type XfrmLifetimeSpec, type XfrmLifetime, type XfrmCurrent, type XfrmKey, type XfrmMarkSpec,
} from './xfrm-spec.js';

/** A NETLINK_XFRM socket: the IPsec SAs and policies of the netns it was opened in. */
export class Xfrm {
  /** Opens an XFRM socket in the calling thread's netns (`withNetns(ns, () => Xfrm.open())` for another one). */
  static open(opts: SocketOptions = {}): Xfrm {
    return new Xfrm(NetlinkSocket.open({ ...opts, protocol: NETLINK.XFRM, typeName: xfrmTypeName }));
  }

  /** `socket` must be a NETLINK_XFRM socket (or a fake one in tests). */
  constructor(readonly socket: NetlinkSocket) {}

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }

  /** Adds an SA; EEXIST when one with its ID exists. `ip xfrm state add ...` */
  stateAdd(s: XfrmStateSpec): void {
    this.socket.request(addStateRequest(s));
  }

  /** Replaces the SA with this ID (ESRCH when there is none). `ip xfrm state update ...` */
  stateUpdate(s: XfrmStateSpec): void {
    this.socket.request(updateStateRequest(s));
  }

  /** Reserves an SPI: the kernel makes a larval SA holding it and returns it. `ip xfrm state allocspi ...` */
  stateAllocSpi(s: XfrmAllocSpiSpec): XfrmState {
    const [m] = this.socket.request(allocSpiRequest(s));
    if (!m) throw new CodecError('XFRM_MSG_ALLOCSPI: no SA in the reply');
    return decodeState(m);
  }

  /** Deletes an SA (ESRCH when there is none). `ip xfrm state delete ID` */
  stateDelete(id: XfrmStateId): void {
    this.socket.request(deleteStateRequest(id));
  }

  /** One SA (ESRCH when there is none). `ip xfrm state get ID` */
  stateGet(id: XfrmStateId): XfrmState {
    const [m] = this.socket.request(getStateRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETSA: no SA in the reply');
    return decodeState(m);
  }

  /** Every SA (of one protocol, within prefixes, when filtered). `ip xfrm state list` */
  stateList(filter: XfrmStateFilter = {}, opts: DumpOptions = {}): DumpList<XfrmState> {
    return this.socket.dump(dumpStateRequest(filter), (m) => (m.type === XFRM_MSG.NEWSA ? decodeState(m) : undefined), opts);
  }

  /** Deletes every SA (of one protocol). `ip xfrm state flush [proto P]` */
  stateFlush(proto?: XfrmProto | number): void {
    this.socket.request(flushStateRequest(proto));
  }

  /** Adds a policy; EEXIST when one with its selector and direction exists. `ip xfrm policy add ...` */
  policyAdd(p: XfrmPolicySpec): void {
    this.socket.request(addPolicyRequest(p));
  }

  /** Adds or replaces a policy. `ip xfrm policy update ...` */
  policyUpdate(p: XfrmPolicySpec): void {
    this.socket.request(updatePolicyRequest(p));
  }

  /** Deletes a policy (ENOENT when there is none). `ip xfrm policy delete ...` */
  policyDelete(id: XfrmPolicyId): void {
    this.socket.request(deletePolicyRequest(id));
  }

  /** One policy (ENOENT when there is none). `ip xfrm policy get ...` */
  policyGet(id: XfrmPolicyId): XfrmPolicy {
    const [m] = this.socket.request(getPolicyRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETPOLICY: no policy in the reply');
    return decodePolicy(m);
  }

  /** Every policy, main and sub. `ip xfrm policy list` */
  policyList(opts: DumpOptions = {}): DumpList<XfrmPolicy> {
    return this.socket.dump(dumpPolicyRequest(), (m) => (m.type === XFRM_MSG.NEWPOLICY ? decodePolicy(m) : undefined), opts);
  }

  /** Deletes every policy of a type (main by default). `ip xfrm policy flush [ptype sub]` */
  policyFlush(ptype?: XfrmPolicyType): void {
    this.socket.request(flushPolicyRequest(ptype));
  }
}
