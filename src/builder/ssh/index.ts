/**
 * The `ssh` driver: polyarch's own engine on a remote host reached with system ssh, no
 * daemon there — the connection and handshake (connect.ts), the wire (protocol.ts), the
 * context sent by content (context.ts), the client side of a build (build.ts) and the node
 * side (serve.ts, `polyarch __node serve`).
 */
import { PolyarchError } from '../../util/errors.js';

export * from './build.js';
export * from './connect.js';
export * from './context.js';
export * from './driver.js';

/** Whether `err` is an ssh node's session ending mid-build (not the build failing there). */
export function isConnectionLost(err: unknown): boolean {
  return (
    err instanceof PolyarchError &&
    err.code === 'UNAVAILABLE' &&
    /connection was lost mid-build/.test(err.message)
  );
}
