/**
 * A proxy's or node's copy of the cluster's access data (users, roles, user CA
 * keys), loaded from the auth service and kept current by long polls of
 * `GET /v1/access` (access/feed.ts): a change reaches it as soon as the auth
 * service sees it. When the auth service cannot be reached the last copy
 * keeps deciding; before the first copy arrives every decision is a refusal.
 */
import { z } from 'zod';
import { parseAuthorizedKey } from '../../sshcert';
import { Logger } from '../../utils/logger';
import type { AuthClient } from '../client';
import { Role, roleSchema, User } from '../resources';
import { AccessDecision, AccessRequest, AccessView, checkAccess } from './decision';
import type { AccessSnapshot } from './feed';

/** How long the auth service holds a poll when nothing changes; below the client's 30 s timeout. */
export const ACCESS_POLL_WAIT_MS = 20_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;

export interface Loaded {
  version: string;
  users: Map<string, User>;
  roles: Map<string, Role>;
  userCAKeys: Buffer[];
}

/** A user as the snapshot carries it: only what decisions read (the full `userSchema` costs ten times as much per user). */
const snapshotUser = z.object({ name: z.string(), roles: z.array(z.string()), traits: z.record(z.string(), z.array(z.string())) });

/** Parses a snapshot; a record that does not parse is dropped (a user or role that cannot be read grants nothing). */
export function parseSnapshot(s: AccessSnapshot, log: Logger): Loaded {
  const users = new Map<string, User>();
  for (const u of s.users) {
    const parsed = snapshotUser.safeParse(u);
    if (!parsed.success) {
      log.warn('ignoring a user record that does not parse', { error: parsed.error.message });
      continue;
    }
    const { name, roles, traits } = parsed.data;
    users.set(name, { kind: 'user', version: 'v2', metadata: { name }, spec: { roles, traits } });
  }
  const roles = new Map<string, Role>();
  for (const r of s.roles) {
    const parsed = roleSchema.safeParse(r);
    if (parsed.success) roles.set(parsed.data.metadata.name, parsed.data);
    else log.warn('ignoring a role that does not parse', { error: parsed.error.message });
  }
  const userCAKeys = s.user_ca_keys.map((line) => parseAuthorizedKey(line).blob);
  return { version: s.version, users, roles, userCAKeys };
}

export class AccessCache implements AccessView {
  private data?: Loaded;
  private stopped = false;

  constructor(
    private readonly client: Pick<AuthClient, 'get'>,
    private readonly log: Logger,
  ) {}

  /** Whether a copy has been loaded (decisions before that are refusals). */
  get loaded(): boolean {
    return this.data !== undefined;
  }

  /** Loads the first copy (throws if the auth service cannot give one), then keeps it current in the background. */
  async start(): Promise<void> {
    this.apply(await this.fetch('', 0));
    void this.run();
  }

  private fetch(version: string, waitMs: number): Promise<AccessSnapshot> {
    return this.client.get<AccessSnapshot>(`/v1/access?version=${encodeURIComponent(version)}&wait=${waitMs}`);
  }

  private apply(s: AccessSnapshot): void {
    if (this.data && s.version === this.data.version) return;
    this.data = parseSnapshot(s, this.log);
  }

  private async run(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.stopped) {
      try {
        this.apply(await this.fetch(this.data?.version ?? '', ACCESS_POLL_WAIT_MS));
        backoff = RETRY_MIN_MS;
      } catch (err) {
        if (this.stopped) return;
        this.log.warn('cannot refresh the roles and users from the auth service; deciding from the last copy', { error: err, loaded: this.loaded });
        await new Promise((resolve) => setTimeout(resolve, backoff).unref());
        backoff = Math.min(backoff * 2, RETRY_MAX_MS);
      }
    }
  }

  user(name: string): User | undefined {
    return this.data?.users.get(name);
  }

  role(name: string): Role | undefined {
    return this.data?.roles.get(name);
  }

  /** The user CA keys trusted now (none before the first load: nobody can log in). */
  userCAKeys(): Buffer[] {
    return this.data?.userCAKeys ?? [];
  }

  /** The access decision from the current copy; a refusal when none is loaded yet (fail closed). */
  check(req: AccessRequest): AccessDecision {
    if (!this.data) return { allowed: false, reason: 'access denied: the roles and users of the cluster are not loaded yet; try again shortly' };
    return checkAccess(this, req);
  }

  /** Stops polling; the poll in flight ends when its client is closed. */
  stop(): void {
    this.stopped = true;
  }
}
