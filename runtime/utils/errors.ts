/**
 * Typed errors shared by every layer. Each carries a machine-readable `reason`
 * that maps to an HTTP status on the auth API and back again in its client, so
 * a NotFound raised by the backend reaches `tctl` as a NotFound.
 */

export type ErrorReason =
  | 'not_found'
  | 'already_exists'
  | 'compare_failed'
  | 'bad_parameter'
  | 'access_denied'
  | 'limit_exceeded'
  | 'connection_problem'
  | 'internal';

export class TeleportError extends Error {
  constructor(
    readonly reason: ErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotFoundError extends TeleportError {
  constructor(message: string) {
    super('not_found', message);
  }
}
export class AlreadyExistsError extends TeleportError {
  constructor(message: string) {
    super('already_exists', message);
  }
}
export class CompareFailedError extends TeleportError {
  constructor(message: string) {
    super('compare_failed', message);
  }
}
export class BadParameterError extends TeleportError {
  constructor(message: string) {
    super('bad_parameter', message);
  }
}
export class AccessDeniedError extends TeleportError {
  constructor(message: string) {
    super('access_denied', message);
  }
}
export class LimitExceededError extends TeleportError {
  constructor(message: string) {
    super('limit_exceeded', message);
  }
}
export class ConnectionProblemError extends TeleportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('connection_problem', message, options);
  }
}

const STATUS: Record<ErrorReason, number> = {
  not_found: 404,
  already_exists: 409,
  compare_failed: 412,
  bad_parameter: 400,
  access_denied: 403,
  limit_exceeded: 429,
  connection_problem: 502,
  internal: 500,
};

export function httpStatusOf(reason: ErrorReason): number {
  return STATUS[reason];
}

/** Rebuilds a typed error from a reason carried over the wire. */
export function errorFromReason(reason: string, message: string): TeleportError {
  switch (reason) {
    case 'not_found':
      return new NotFoundError(message);
    case 'already_exists':
      return new AlreadyExistsError(message);
    case 'compare_failed':
      return new CompareFailedError(message);
    case 'bad_parameter':
      return new BadParameterError(message);
    case 'access_denied':
      return new AccessDeniedError(message);
    case 'limit_exceeded':
      return new LimitExceededError(message);
    case 'connection_problem':
      return new ConnectionProblemError(message);
    default:
      return new TeleportError('internal', message);
  }
}

export function isReason(err: unknown, reason: ErrorReason): boolean {
  return err instanceof TeleportError && err.reason === reason;
}
