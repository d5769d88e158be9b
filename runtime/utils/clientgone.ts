/**
 * A peer that went away mid-request or mid-connection (a reset, a broken
 * pipe, an aborted HTTP request) is the client's doing, not a fault of the
 * server: callers log it at debug level, without a stack, so a client cannot
 * fill the log by hanging up.
 */

const GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);

/** Whether `err` says the other end of the connection went away. */
export function isClientGone(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (code !== undefined && GONE_CODES.has(code)) || err.message === 'aborted';
}
