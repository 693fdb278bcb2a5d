/** tsnetlink/ip: the address module (parsing, strict checks, subnet arithmetic, reserved ranges); pure, no FFI. */
export * from '../ip/index.js';
