/** tsnetlink/testing: the fake kernel (a Transport that answers like the kernel) and fixture helpers, for tests without root. */
export * from '../netlink/core/testing.js';
