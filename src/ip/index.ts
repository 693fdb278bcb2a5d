/**
 * The one address module every layer uses: address text to bytes and back for the wire codecs
 * (bytes), checked parsing of what users give (parse), strict checks for text that reaches a
 * tool (check), subnet arithmetic for bridge networks (cidr) and the ranges that are not for
 * container networks (reserved).
 */
export * from './bytes.js';
export * from './parse.js';
export * from './check.js';
export * from './cidr.js';
export * from './reserved.js';
