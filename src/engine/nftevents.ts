/**
 * nf_tables change events: a NETLINK_NETFILTER socket in the NFNLGRP_NFTABLES group hears every
 * committed change to the ruleset, whoever made it (nft, iptables-nft, firewalld, our own native
 * backend). The kernel announces each object a transaction added or deleted, then one NEWGEN
 * with the new generation and the pid and name of the process that committed it; so changes
 * are handed over per transaction, with who made them. Read off the event loop's poller, never
 * blocking it.
 */
import { CodecError, OverrunError } from '../errors.js';
import { rawAttrs } from '../netlink/core/attr.js';
import { splitMessages, type RawMessage } from '../netlink/core/message.js';
import { KernelTransport } from '../netlink/core/socket.js';
import { NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFT_MSG } from '../netlink/nftables/constants.js';

/** The nf_tables multicast group of ruleset changes (NFNLGRP_NFTABLES). */
export const NFNLGRP_NFTABLES = 7;

/** One object a transaction added or deleted. */
export interface NftChange {
  op: 'new' | 'del';
  object: 'table' | 'chain' | 'rule' | 'set' | 'element';
  /** NFPROTO_* of its table. */
  family: number;
  table: string;
  /** The chain of a rule (NFTA_RULE_CHAIN) or the name of a chain (NFTA_CHAIN_NAME). */
  chain?: string;
  /**
   * Of a rule: whether it names one of tsnetlink's chains or carries its comment (a jump to a
   * TSN-* chain, "tsnetlink:" in its user data); undefined when the message has neither its
   * expressions nor its user data, so nothing is known.
   */
  mentionsOurs?: boolean;
}

/** One committed transaction: its changes, and the process that committed it (NFTA_GEN_PROC_PID, _NAME). */
export interface NftCommit {
  changes: NftChange[];
  pid: number | undefined;
  process: string | undefined;
}

const KINDS: Record<number, [NftChange['op'], NftChange['object']]> = {
  [NFT_MSG.NEWTABLE]: ['new', 'table'], [NFT_MSG.DELTABLE]: ['del', 'table'],
  [NFT_MSG.NEWCHAIN]: ['new', 'chain'], [NFT_MSG.DELCHAIN]: ['del', 'chain'],
  [NFT_MSG.NEWRULE]: ['new', 'rule'], [NFT_MSG.DELRULE]: ['del', 'rule'],
  [NFT_MSG.NEWSET]: ['new', 'set'], [NFT_MSG.DELSET]: ['del', 'set'],
  [NFT_MSG.NEWSETELEM]: ['new', 'element'], [NFT_MSG.DELSETELEM]: ['del', 'element'],
};

/** The NUL-terminated string of attribute `type` in an nf_tables payload (after its 4-byte nfgenmsg). */
function stringAttr(payload: Buffer, type: number): string | undefined {
  for (const a of rawAttrs(payload, 4, payload.length)) if ((a.type & 0x3fff) === type) return a.data.toString('utf8').replace(/\0.*$/s, '');
  return undefined;
}

/** Whether a rule message names a TSN-* chain or carries a "tsnetlink:" comment (NFTA_RULE_EXPRESSIONS 4, NFTA_RULE_USERDATA 7). */
function ruleMentionsOurs(payload: Buffer): boolean | undefined {
  let seen = false;
  for (const a of rawAttrs(payload, 4, payload.length)) {
    const type = a.type & 0x3fff;
    if (type !== 4 && type !== 7) continue;
    seen = true;
    if (a.data.includes('TSN-') || a.data.includes('tsnetlink:')) return true;
  }
  return seen ? false : undefined;
}

function u32Attr(payload: Buffer, type: number): number | undefined {
  for (const a of rawAttrs(payload, 4, payload.length)) if ((a.type & 0x3fff) === type && a.data.length >= 4) return a.data.readUInt32BE(0);
  return undefined;
}

/**
 * Groups nf_tables event messages into commits: each object message is kept until the NEWGEN
 * that ends its transaction, which says who committed it. Pure, so tests feed it built messages.
 */
export class CommitReader {
  private pending: NftChange[] = [];

  /** Reads one message; returns the commit it ends, if it is a NEWGEN. */
  read(m: RawMessage): NftCommit | undefined {
    if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES) return undefined;
    const msg = m.type & 0xff;
    if (msg === NFT_MSG.NEWGEN) {
      const commit = { changes: this.pending, pid: u32Attr(m.payload, 2), process: stringAttr(m.payload, 3) };
      this.pending = [];
      return commit;
    }
    const kind = KINDS[msg];
    if (kind) {
      // NFTA_RULE_CHAIN is attribute 2 of a rule, NFTA_CHAIN_NAME attribute 3 of a chain.
      const chain = kind[1] === 'rule' ? stringAttr(m.payload, 2) : kind[1] === 'chain' ? stringAttr(m.payload, 3) : undefined;
      const mentionsOurs = kind[1] === 'rule' ? ruleMentionsOurs(m.payload) : undefined;
      this.pending.push({ op: kind[0], object: kind[1], family: m.payload[0] ?? 0, table: stringAttr(m.payload, 1) ?? '', ...(chain !== undefined ? { chain } : {}), ...(mentionsOurs !== undefined ? { mentionsOurs } : {}) });
    }
    return undefined;
  }

  /** Forgets a transaction's messages (events were lost). */
  reset(): void {
    this.pending = [];
  }
}

/** Listens for nf_tables commits until close(). */
export class NftEvents {
  private readonly transport: KernelTransport;
  private readonly stopWatch: () => Promise<void>;
  private readonly reader = new CommitReader();
  private closed = false;

  /** `onCommit` gets each transaction; `onLost` is called when events were dropped (the socket's buffer overflowed). */
  constructor(
    private readonly onCommit: (c: NftCommit) => void,
    private readonly onLost: () => void,
  ) {
    this.transport = new KernelTransport({ protocol: NETLINK_NETFILTER, groups: [NFNLGRP_NFTABLES], receiveBufferSize: 8 << 20 });
    this.stopWatch = this.transport.watch(() => this.drain());
  }

  private drain(): void {
    for (let i = 0; i < 4096 && !this.closed; i++) {
      let msgs: RawMessage[];
      try {
        const dgram = this.transport.receive(0);
        if (dgram === null) return;
        msgs = splitMessages(dgram);
      } catch (e) {
        // The buffer overflowed, or a datagram came cut: what was lost is unknown. Any other
        // failure of the socket is reported the same way once, and reading stops until the
        // poller calls again.
        this.reader.reset();
        this.onLost();
        if (e instanceof OverrunError || e instanceof CodecError) continue;
        return;
      }
      for (const m of msgs) {
        let commit: NftCommit | undefined;
        try {
          commit = this.reader.read(m);
        } catch {
          // A malformed message: its transaction still ends with a NEWGEN, read as usual.
        }
        if (commit) this.onCommit(commit);
      }
    }
    // A long burst: yield to the event loop, the poller calls again while data is left.
    if (!this.closed) setImmediate(() => this.drain());
  }

  /** Stops listening and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stopWatch();
    this.transport.close();
  }
}
