/**
 * IPsec over NETLINK_XFRM: security associations (states) and security policies, as `ip xfrm
 * state` and `ip xfrm policy` manage them. Specs in `ip`'s terms become requests byte for byte
 * like iproute2's (checked against captures in test/fixtures); the kernel's replies decode into
 * typed XfrmState and XfrmPolicy objects whose `raw` keeps the header and attributes. The wire
 * layouts are in xfrm-schema.ts, the names and parts both share in xfrm-spec.ts, the requests and
 * decoders in xfrm-state.ts and xfrm-policy.ts; the operations here (XfrmOps) run them, through
 * the Xfrm handle synchronously or its `promises` twin asynchronously.
 */
import { CodecError } from '../../errors.js';
import { NETLINK } from '../core/constants.js';
import { NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { dumpOp, requestOp, type Op } from '../core/op.js';
import { defineOperations, operationNames, PromiseHandle, SyncHandle, type PromiseMethods, type SyncMethods } from '../core/op-handle.js';
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

/**
 * Every XFRM operation, each written once as a generator of netlink exchanges (core/op.ts): Xfrm
 * runs them synchronously, Xfrm.promises asynchronously. They hold no state.
 */
export class XfrmOps {
  /** Adds an SA; EEXIST when one with its ID exists. `ip xfrm state add ...` */
  *stateAdd(s: XfrmStateSpec): Op<void> {
    yield* requestOp(addStateRequest(s));
  }

  /** Replaces the SA with this ID (ESRCH when there is none). `ip xfrm state update ...` */
  *stateUpdate(s: XfrmStateSpec): Op<void> {
    yield* requestOp(updateStateRequest(s));
  }

  /** Reserves an SPI: the kernel makes a larval SA holding it and returns it. `ip xfrm state allocspi ...` */
  *stateAllocSpi(s: XfrmAllocSpiSpec): Op<XfrmState> {
    const [m] = yield* requestOp(allocSpiRequest(s));
    if (!m) throw new CodecError('XFRM_MSG_ALLOCSPI: no SA in the reply');
    return decodeState(m);
  }

  /** Deletes an SA (ESRCH when there is none). `ip xfrm state delete ID` */
  *stateDelete(id: XfrmStateId): Op<void> {
    yield* requestOp(deleteStateRequest(id));
  }

  /** One SA (ESRCH when there is none). `ip xfrm state get ID` */
  *stateGet(id: XfrmStateId): Op<XfrmState> {
    const [m] = yield* requestOp(getStateRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETSA: no SA in the reply');
    return decodeState(m);
  }

  /** Every SA (of one protocol, within prefixes, when filtered). `ip xfrm state list` */
  *stateList(filter: XfrmStateFilter = {}, opts: DumpOptions = {}): Op<DumpList<XfrmState>> {
    return yield* dumpOp(dumpStateRequest(filter), (m) => (m.type === XFRM_MSG.NEWSA ? decodeState(m) : undefined), opts);
  }

  /** Deletes every SA (of one protocol). `ip xfrm state flush [proto P]` */
  *stateFlush(proto?: XfrmProto | number): Op<void> {
    yield* requestOp(flushStateRequest(proto));
  }

  /** Adds a policy; EEXIST when one with its selector and direction exists. `ip xfrm policy add ...` */
  *policyAdd(p: XfrmPolicySpec): Op<void> {
    yield* requestOp(addPolicyRequest(p));
  }

  /** Adds or replaces a policy. `ip xfrm policy update ...` */
  *policyUpdate(p: XfrmPolicySpec): Op<void> {
    yield* requestOp(updatePolicyRequest(p));
  }

  /** Deletes a policy (ENOENT when there is none). `ip xfrm policy delete ...` */
  *policyDelete(id: XfrmPolicyId): Op<void> {
    yield* requestOp(deletePolicyRequest(id));
  }

  /** One policy (ENOENT when there is none). `ip xfrm policy get ...` */
  *policyGet(id: XfrmPolicyId): Op<XfrmPolicy> {
    const [m] = yield* requestOp(getPolicyRequest(id));
    if (!m) throw new CodecError('XFRM_MSG_GETPOLICY: no policy in the reply');
    return decodePolicy(m);
  }

  /** Every policy, main and sub. `ip xfrm policy list` */
  *policyList(opts: DumpOptions = {}): Op<DumpList<XfrmPolicy>> {
    return yield* dumpOp(dumpPolicyRequest(), (m) => (m.type === XFRM_MSG.NEWPOLICY ? decodePolicy(m) : undefined), opts);
  }

  /** Deletes every policy of a type (main by default). `ip xfrm policy flush [ptype sub]` */
  *policyFlush(ptype?: XfrmPolicyType): Op<void> {
    yield* requestOp(flushPolicyRequest(ptype));
  }
}

/** Every XFRM operation's name, read from XfrmOps (the two handles cannot forget one). */
export const XFRM_OPERATIONS: readonly string[] = operationNames(XfrmOps);

export interface Xfrm extends SyncMethods<XfrmOps> {}

/** A NETLINK_XFRM socket: the IPsec SAs and policies of the netns it was opened in; `promises` is its async twin. */
export class Xfrm extends SyncHandle<XfrmOps, XfrmPromises> {
  /** Opens an XFRM socket in the calling thread's netns (`withNetns(ns, () => Xfrm.open())` for another one). */
  static open(opts: SocketOptions = {}): Xfrm {
    return new Xfrm(NetlinkSocket.open({ ...opts, protocol: NETLINK.XFRM, typeName: xfrmTypeName }));
  }

  /** `socket` must be a NETLINK_XFRM socket (or a fake one in tests). */
  constructor(socket: NetlinkSocket, ops = new XfrmOps()) {
    super(socket, ops, XfrmPromises);
  }
}

export interface XfrmPromises extends PromiseMethods<XfrmOps> {}

/** Every XFRM operation returning a promise (`x.promises`); the socket is used from anywhere, never switching netns. */
export class XfrmPromises extends PromiseHandle<XfrmOps> {
  /** Wraps an open NETLINK_XFRM socket; the synchronous Xfrm on the same socket shares its queue. */
  constructor(socket: NetlinkSocket, ops = new XfrmOps()) {
    super(socket, ops);
  }
}

defineOperations(XFRM_OPERATIONS, Xfrm, XfrmPromises);
