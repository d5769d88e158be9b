/**
 * Bounded concurrency with backpressure for a server's request handlers: at
 * most `inFlight` run at once, up to `queued` more wait their turn in order,
 * and any beyond that are refused at once (LimitExceededError: HTTP 429),
 * which costs the server almost nothing. Callers back off and retry (the
 * heartbeats and access polls do, with jitter), so an overloaded auth server
 * sheds load instead of piling up work it cannot finish before the callers
 * time out.
 */
import { LimitExceededError } from '../utils/errors';

export interface AdmissionLimits {
  /** Handlers running at once. */
  inFlight: number;
  /** Requests waiting for a slot; more are refused. */
  queued: number;
}

/** The auth API's limits: enough to keep two cores busy on short handlers, a queue that drains in well under a client's 30 s timeout. */
export const AUTH_ADMISSION: AdmissionLimits = { inFlight: 64, queued: 2048 };

export class Admission {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limits: AdmissionLimits) {}

  /** Requests waiting for a slot now. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `fn` when a slot is free; refuses at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < this.limits.inFlight) this.running++;
    else if (this.waiting.length < this.limits.queued) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else throw new LimitExceededError('the auth server is busy: too many requests at once, try again later');
    try {
      return await fn();
    } finally {
      // The slot passes to the next in line, or is freed.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
