/** Every CLI command, loaded by main.ts only when one runs (help and usage errors never load them). */
export { network } from './network.js';
export { run, connect, disconnect } from './container.js';
