/**
 * nf_tables transactions: BATCH_BEGIN, the requests, BATCH_END, sent in one sendmsg. The kernel
 * runs the whole batch inside that call and commits all of it or none of it; it answers a
 * request only when it fails (or echoes it when asked), and BATCH_END, sent with NLM_F_ACK,
 * only once the commit succeeded. So the outcome is known exactly: committed (the END ack came)
 * or not (each failing request has its error, mapped back to it).
 */
import { NetlinkError, TsnetlinkError } from '../../errors.js';
import { NLA_HDRLEN, NLA_TYPE_MASK, align4, type Schema } from '../core/attr.js';
import { NLM_F, NLMSG } from '../core/constants.js';
import { encode, request, type RawMessage, type Request } from '../core/message.js';
import { parseError } from '../core/socket.js';
import { NFNL_MSG, NFNL_SUBSYS_NFTABLES, nftMessageName } from './constants.js';
import { defOfType, messages } from './schemas.js';

/** Options of one transaction. */
export interface TransactionOptions {
  /** The ruleset generation the batch was computed from: the kernel refuses it (ERESTART) if the ruleset changed since. */
  genId?: number;
}

/** One request the kernel refused, with what it said. */
export interface TransactionFailure {
  /** Position of the request in the transaction (0-based); -1 for the batch itself (a stale generation). */
  index: number;
  operation: string;
  error: NetlinkError;
  /** The attribute the kernel's extended ack points at, as a path of schema names ("expressions/elem[2]/data"). */
  attribute?: string;
}

/**
 * A transaction that did not commit: nothing of it was applied. `code` is the first failure's
 * errno name; ERESTART means the ruleset changed since `genId` (read again and retry); ENOBUFS
 * means replies were lost (the receive buffer overflowed) and the outcome must be read back.
 */
export class NftTransactionError extends TsnetlinkError {
  override name = 'NftTransactionError';
  readonly failures: TransactionFailure[];
  /** false: certainly not applied; undefined: unknown (replies were lost). */
  readonly committed: false | undefined;
  constructor(code: string, message: string, failures: TransactionFailure[], committed: false | undefined, options?: { cause?: unknown }) {
    super(code, message, options);
    this.failures = failures;
    this.committed = committed;
  }
}

const batchHeader = { family: 0, version: 0, resId: NFNL_SUBSYS_NFTABLES };

/** The whole datagram's requests: BATCH_BEGIN (with the generation guard), `reqs`, BATCH_END with NLM_F_ACK. */
export function batchRequests(reqs: readonly Request[], opts: TransactionOptions & { ackEnd?: boolean } = {}): Request[] {
  const begin = request(messages.batch, NFNL_MSG.BATCH_BEGIN, 0, batchHeader, opts.genId !== undefined ? { genId: opts.genId } : {});
  const end = request(messages.batch, NFNL_MSG.BATCH_END, opts.ackEnd === false ? 0 : NLM_F.ACK, batchHeader, {});
  return [begin, ...reqs, end];
}

/** Names the attribute at byte `offset` of an encoded message, by its schema ("expressions/elem[2]/data"). */
export function attributeAt(msg: Buffer, offset: number): string | undefined {
  const def = defOfType(msg.readUInt16LE(4));
  if (!def || offset < 16 + def.header.size) return undefined;
  const path: string[] = [];
  let schema: Schema | undefined = def.attrs;
  let off = 16 + def.header.size;
  let end = msg.readUInt32LE(0);
  let seen = new Map<number, number>();
  while (off + NLA_HDRLEN <= end) {
    const len = msg.readUInt16LE(off);
    const type = msg.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN) break;
    const nth = seen.get(type) ?? 0;
    seen.set(type, nth + 1);
    if (offset >= off && offset < off + align4(len)) {
      const entry = Object.entries(schema ?? {}).find(([, d]) => d.type === type);
      const name = entry ? entry[0] : `attr ${type}`;
      path.push(name === 'elem' ? `elem[${nth}]` : name);
      if (offset === off) break;
      const c = entry?.[1].codec as { schema?: Schema; schemaAt?: (b: Buffer, o: number, l: number) => Schema } | undefined;
      schema = c?.schemaAt ? c.schemaAt(msg, off + NLA_HDRLEN, len - NLA_HDRLEN) : c?.schema;
      if (!schema) break;
      end = off + len;
      off += NLA_HDRLEN;
      seen = new Map();
      continue;
    }
    off += align4(len);
  }
  return path.join('/') || undefined;
}

/**
 * Reads a transaction's replies: echoes per request, the END ack, and failures mapped to their
 * requests. Throws NftTransactionError when the batch did not commit.
 */
export function settle(reqs: readonly Request[], replies: readonly { index: number; message: RawMessage }[]): RawMessage[][] {
  const echoes: RawMessage[][] = reqs.map(() => []);
  const failures: TransactionFailure[] = [];
  let committed = false;
  const last = reqs.length + 1;
  for (const { index, message: m } of replies) {
    if (m.type === NLMSG.ERROR) {
      const err = parseError(m, undefined, nftMessageName);
      if (!err) {
        if (index === last) committed = true;
        continue;
      }
      const i = index - 1;
      const f: TransactionFailure = { index: i === last - 1 ? reqs.length : i, operation: i < 0 || i >= reqs.length ? (i < 0 ? 'NFNL_MSG_BATCH_BEGIN' : 'NFNL_MSG_BATCH_END') : nftMessageName((reqs[i] as Request).type), error: err };
      if (i < 0) f.index = -1;
      if (i >= 0 && i < reqs.length && err.offset !== undefined) {
        const at = attributeAt(encode(reqs[i] as Request), err.offset);
        if (at) f.attribute = at;
      }
      failures.push(f);
    } else if (index >= 1 && index <= reqs.length && m.type !== NLMSG.DONE && m.type !== NLMSG.NOOP) {
      (echoes[index - 1] as RawMessage[]).push(m);
    }
  }
  if (failures.length > 0) {
    const f = failures[0] as TransactionFailure;
    const where = f.index < 0 ? 'the batch' : `request ${f.index + 1} of ${reqs.length} (${f.operation}${f.attribute ? `, at ${f.attribute}` : ''})`;
    const more = failures.length > 1 ? `; ${failures.length - 1} more failed` : '';
    const why = f.error.code === 'ERESTART' ? ': the ruleset changed since it was read' : '';
    throw new NftTransactionError(f.error.code, `nf_tables transaction refused, nothing applied: ${where}: ${f.error.message}${why}${more}`, failures, false, { cause: f.error });
  }
  if (!committed) throw new NftTransactionError('EPROTO', 'nf_tables transaction: neither an error nor the commit acknowledgement came back', [], undefined);
  return echoes;
}
