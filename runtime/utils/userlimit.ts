/**
 * `connection_limits.max_users`: how many distinct users may hold
 * connections at once. A user already connected may open more connections;
 * a new user over the limit is refused. Counts connections per user.
 */
export class UserLimit {
  private readonly connections = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Counts one more connection of `user`; false (nothing counted) when that would exceed the limit. */
  tryAdd(user: string): boolean {
    const n = this.connections.get(user);
    if (n === undefined && this.connections.size >= this.max) return false;
    this.connections.set(user, (n ?? 0) + 1);
    return true;
  }

  /** Forgets one connection of `user`. */
  remove(user: string): void {
    const n = (this.connections.get(user) ?? 1) - 1;
    if (n > 0) this.connections.set(user, n);
    else this.connections.delete(user);
  }
}
