/** `tsnetlink engine`, loaded by main.ts only when it runs: the engine and the CNI plugin it serves stay out of the other commands' bundle. */
export { engine } from '../engine/command.js';
