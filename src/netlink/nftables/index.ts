/** nf_tables over NETLINK_NETFILTER: constants, schemas, expressions, objects, transactions, the Nft handle. */
export * from './constants.js';
export { nfgenmsg, exprSchemas, messages, defOfType, readUdata, writeUdata, commentOf, type WireExpr } from './schemas.js';
export { toWire, fromWire, describeExpr, type Expr, type Verdict } from './expr.js';
export * from './objects.js';
export * as match from './match.js';
export { NftTransactionError, batchRequests, attributeAt, type TransactionFailure, type TransactionOptions } from './transaction.js';
export { Nft, type NftOptions } from './nft.js';
