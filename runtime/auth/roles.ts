/**
 * Roles as stored in the cluster state: the default `admin` role, reads and
 * writes of role resources. What roles allow is decided in access/decision.ts.
 */
import { Backend } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { formatDuration } from '../config/duration';
import { isReason, NotFoundError } from '../utils/errors';
import { defaultAdminRole, Role, roleSchema, User } from './resources';

/** A role as YAML/JSON for people: durations written back in Go form. */
export function displayRole(role: Role): unknown {
  const o = { ...role.spec.options } as Record<string, unknown>;
  for (const k of ['max_session_ttl', 'client_idle_timeout'] as const) {
    if (typeof o[k] === 'number') o[k] = formatDuration(o[k] as number);
  }
  return { ...role, spec: { ...role.spec, options: o } };
}

export class Roles {
  constructor(private readonly backend: Backend) {}

  /** Creates the default `admin` role unless it exists. */
  async init(): Promise<void> {
    const role = defaultAdminRole();
    try {
      await this.backend.create({ key: Keys.role(role.metadata.name), value: Buffer.from(JSON.stringify(displayRole(role))) });
    } catch (err) {
      if (!isReason(err, 'already_exists')) throw err;
    }
  }

  async get(name: string): Promise<Role> {
    try {
      const item = await this.backend.get(Keys.role(name));
      return roleSchema.parse(JSON.parse(item.value.toString()));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`role "${name}" not found`);
      throw err;
    }
  }

  async list(): Promise<Role[]> {
    const items = await this.backend.getRange(Keys.roles(), rangeEnd(Keys.roles()));
    return items.map((i) => roleSchema.parse(JSON.parse(i.value.toString())));
  }

  async upsert(role: Role, create = false): Promise<void> {
    const item = { key: Keys.role(role.metadata.name), value: Buffer.from(JSON.stringify(displayRole(role))) };
    await (create ? this.backend.create(item) : this.backend.put(item));
  }

  async delete(name: string): Promise<void> {
    try {
      await this.backend.delete(Keys.role(name));
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError(`role "${name}" not found`);
      throw err;
    }
  }

  /** The roles of a user; a role that no longer exists is an error (fail closed). */
  async forUser(user: User): Promise<Role[]> {
    return Promise.all(user.spec.roles.map((r) => this.get(r)));
  }
}
