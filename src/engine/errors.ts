/** Errors of the engine. */
import { TsnetlinkError } from '../errors.js';

/** The codes of EngineError. */
export type EngineErrorCode =
  | 'EENGINERUNNING' // another engine serves this state directory (it holds engine.lock)
  | 'ESTATEDIR' // a call names a state directory other than the engine's
  | 'ELISTEN'; // the engine's socket could not be made or taken over from systemd

/** The engine cannot start, or a call asked it for something it does not serve. */
export class EngineError extends TsnetlinkError {
  override name = 'EngineError';
  declare readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
