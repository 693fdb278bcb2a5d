/**
 * The nf_tables handle: a NETLINK_NETFILTER socket that lists tables, chains, rules, sets and
 * elements, reads the ruleset generation, and commits transactions (one sendmsg each, all or
 * nothing). What `nft` does, without a process.
 */
import { OverrunError } from '../../errors.js';
import * as libc from '../../sys/libc.js';
import type { Request } from '../core/message.js';
import { KernelTransport, NetlinkSocket, type DumpList, type DumpOptions, type SocketOptions } from '../core/socket.js';
import { NETLINK_NETFILTER, nftMessageName, type Family } from './constants.js';
import { decodeChain, decodeElements, decodeGen, decodeRule, decodeSet, decodeTable, dumpRequests, getGenRequest, type NftChain, type NftElement, type NftRule, type NftSet, type NftTable } from './objects.js';
import { NftTransactionError, batchRequests, settle, type TransactionOptions } from './transaction.js';
import type { RawMessage } from '../core/message.js';

const SO_SNDBUFFORCE = 32;
/** Bytes of receive buffer reserved per request of a transaction: room for an error or an echo each. */
const REPLY_ROOM = 1024;

/** Options of an Nft handle. */
export interface NftOptions extends Omit<SocketOptions, 'protocol' | 'typeName'> {
  /** Grow the socket buffers to fit each transaction and its replies (default true). */
  autoBuffers?: boolean;
}

/** Decoded objects kept per socket, by their message bytes; cleared when it grows past this. */
const DECODED_MAX = 8192;

/** A NETLINK_NETFILTER socket speaking nf_tables. */
export class Nft {
  private sndbuf = 0;
  private rcvbuf = 0;
  private readonly autoBuffers: boolean;
  private readonly decoded = new Map<string, unknown>();

  /**
   * Decodes a dumped object once per socket: a rule, chain or set the kernel dumps again with the
   * same bytes (same handle, same expressions) is the same object. Checking the rules a port
   * mapping relies on reads our table after any commit by anyone (Docker, firewalld, iptables-nft
   * all bump the generation), and decoding a rule's expression tree costs tens of microseconds;
   * looking its bytes up costs one. The nfgenmsg's res_id (the generation) is left out of the
   * key. Objects returned from the list methods are shared between calls: read them, do not
   * change them.
   */
  private memo<T>(decode: (m: RawMessage) => T): (m: RawMessage) => T {
    return (m) => {
      const key = `${m.type}:${m.payload[0] ?? 0}:${m.payload.toString('latin1', 4)}`;
      const hit = this.decoded.get(key) as T | undefined;
      if (hit !== undefined) return hit;
      const v = decode(m);
      if (this.decoded.size >= DECODED_MAX) this.decoded.clear();
      this.decoded.set(key, v);
      return v;
    };
  }

  /** Opens a socket in the calling thread's netns. */
  static open(opts: NftOptions = {}): Nft {
    const { autoBuffers, ...rest } = opts;
    return new Nft(NetlinkSocket.open({ receiveBufferSize: 1 << 20, ...rest, protocol: NETLINK_NETFILTER, typeName: nftMessageName }), { ...(autoBuffers !== undefined ? { autoBuffers } : {}) });
  }

  /** `socket` must be a NETLINK_NETFILTER socket (or a fake one in tests). */
  constructor(
    readonly socket: NetlinkSocket,
    opts: { autoBuffers?: boolean } = {},
  ) {
    this.autoBuffers = opts.autoBuffers ?? true;
  }

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }

  /** The current ruleset generation (it changes with every commit, of anyone). `nft list ruleset` reads it first */
  genId(): number {
    const [m] = this.socket.request(getGenRequest());
    if (!m) throw new NftTransactionError('EPROTO', 'NFT_MSG_GETGEN: no reply', [], false);
    return decodeGen(m);
  }

  /** `nft list tables [FAMILY]` */
  listTables(family?: Family, opts: DumpOptions = {}): DumpList<NftTable> {
    return this.socket.dump(dumpRequests.tables(family ?? 'inet'), decodeTable, opts).filter((t) => family === undefined || t.family === family) as DumpList<NftTable>;
  }

  /** `nft list chains` of one table. */
  listChains(family: Family, table: string, opts: DumpOptions = {}): DumpList<NftChain> {
    // The kernel may answer a chain dump with every table's chains: the table is filtered here too.
    return this.socket.dump(dumpRequests.chains(family, table), this.memo(decodeChain), { retries: 3, ...opts }).filter((c) => c.family === family && c.table === table) as DumpList<NftChain>;
  }

  /** The rules of a table (or of one chain), in chain order. `nft -a list table FAMILY TABLE` */
  listRules(family: Family, table: string, chain?: string, opts: DumpOptions = {}): DumpList<NftRule> {
    return this.socket.dump(dumpRequests.rules(family, table, chain), this.memo(decodeRule), { retries: 3, ...opts }).filter((r) => r.family === family && r.table === table && (chain === undefined || r.chain === chain)) as DumpList<NftRule>;
  }

  /** `nft list sets FAMILY` of one table. */
  listSets(family: Family, table: string, opts: DumpOptions = {}): DumpList<NftSet> {
    return this.socket.dump(dumpRequests.sets(family, table), this.memo(decodeSet), { retries: 3, ...opts }).filter((x) => x.family === family && x.table === table) as DumpList<NftSet>;
  }

  /** `nft list set|map FAMILY TABLE NAME`: its elements. */
  listElements(family: Family, table: string, set: string, opts: DumpOptions = {}): NftElement[] {
    return this.socket.dump(dumpRequests.elements(family, table, set), decodeElements, { retries: 3, ...opts }).flat();
  }

  /**
   * Commits `reqs` as one transaction (`nft -f FILE`): all of them or none. Resolves to the
   * messages each request's NLM_F_ECHO brought back; throws NftTransactionError when nothing
   * was applied (each failure mapped to its request, ERESTART when `genId` is stale).
   */
  commit(reqs: readonly Request[], opts: TransactionOptions = {}): RawMessage[][] {
    const all = batchRequests(reqs, opts);
    if (this.autoBuffers) this.fitBuffers(all);
    let replies;
    try {
      replies = this.socket.exchange(all, (m, i) => i === all.length - 1 && m.type === 2).replies;
    } catch (e) {
      if (e instanceof OverrunError) {
        throw new NftTransactionError('ENOBUFS', 'nf_tables transaction: the kernel dropped replies (receive buffer full), so whether it committed is unknown; read the ruleset back', [], undefined, { cause: e });
      }
      throw e;
    }
    return settle(reqs, replies);
  }

  /** Grows SO_SNDBUF to the batch (a netlink datagram must fit it whole) and SO_RCVBUF to its possible replies. */
  private fitBuffers(reqs: readonly Request[]): void {
    const t = this.socket.transport;
    if (!(t instanceof KernelTransport)) return;
    let bytes = 0;
    for (const r of reqs) bytes += (16 + r.size + 3) & ~3;
    if (this.sndbuf === 0) this.sndbuf = libc.getsockoptInt(t.fd, libc.SOL_SOCKET, libc.SO_SNDBUF) / 2;
    if (bytes + 4096 > this.sndbuf) {
      this.sndbuf = bytes * 2 + 65536;
      libc.setsockoptInt(t.fd, libc.SOL_SOCKET, SO_SNDBUFFORCE, this.sndbuf);
    }
    if (this.rcvbuf === 0) this.rcvbuf = libc.getsockoptInt(t.fd, libc.SOL_SOCKET, libc.SO_RCVBUF) / 2;
    const want = reqs.length * REPLY_ROOM;
    if (want > this.rcvbuf) {
      this.rcvbuf = want * 2;
      libc.setsockoptInt(t.fd, libc.SOL_SOCKET, libc.SO_RCVBUFFORCE, this.rcvbuf);
    }
  }
}
