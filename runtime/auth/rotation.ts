/**
 * Certificate authority rotation (formats.md §1.7, Teleport 4.x's phases): a
 * CA moves from its keys to new ones without a moment when something signed
 * by one is not trusted where it is checked.
 *
 *   standby ──► init ──► update_clients ──► update_servers ──► standby
 *                 │            │                   │
 *                 └────────────┴──► rollback ◄─────┘ ──► standby
 *
 * - init: new keys are made and trusted everywhere, not used yet.
 * - update_clients: the new keys sign (users get certificates from them);
 *   the old ones are still trusted.
 * - update_servers: servers move to certificates from the new keys; the old
 *   ones are still trusted.
 * - standby (from update_servers): the old keys are dropped: what they signed
 *   is refused from then on.
 * - rollback: the old keys sign again, both are trusted; standby from there
 *   drops the new keys.
 *
 * The CA's key lists keep the signing key first (formats.md §1.1): [old, new]
 * in init and rollback, [new, old] in update_clients and update_servers, one
 * key in standby. This module only computes the next CA; where it is stored,
 * keys are made and dropped, and phases are stepped on time, is the caller's.
 */
import { randomUUID } from 'node:crypto';
import { BadParameterError } from '../utils/errors';
import type { CertAuthority } from './resources';

export type RotationPhase = 'standby' | 'init' | 'update_clients' | 'update_servers' | 'rollback';
export const ROTATION_PHASES: readonly RotationPhase[] = ['standby', 'init', 'update_clients', 'update_servers', 'rollback'];
export type RotationMode = 'manual' | 'auto';

export interface Rotation {
  state: 'standby' | 'in_progress';
  phase?: RotationPhase;
  mode?: RotationMode;
  /** The rotation's ID (new with each rotation). */
  current_id?: string;
  started?: string;
  /** Nanoseconds, as Teleport's JSON of a duration. */
  grace_period?: number;
  last_rotated?: string;
  /** Auto mode: when each phase starts. */
  schedule?: { update_clients: string; update_servers: string; standby: string };
}

/** As `tctl auth rotate` gives it. */
export interface RotateRequest {
  /** @default 'init' for a manual rotation, unused for an auto one (it starts in init and steps by its schedule) */
  targetPhase?: RotationPhase;
  mode: RotationMode;
  /** How long old certificates stay trusted, from the start. */
  gracePeriodMs: number;
}

/** The keys a rotation starts with, made by the caller in the CA's key store. */
export interface NewCAKeys {
  /** The SSH public key, authorized_keys form, base64 (as `checking_keys`). */
  checkingKey: string;
  /** The SSH key's reference, base64 (as `signing_keys`). */
  signingKey: string;
  /** The TLS CA certificate and its key's reference, base64 (as `tls_key_pairs`). */
  tlsKeyPair: { cert: string; key: string };
}

/** What a step leaves: the next CA, and the references of keys nothing uses any more (to delete from their store). */
export interface RotationStep {
  ca: CertAuthority;
  discarded: string[];
}

/** Grace periods `tctl auth rotate` takes: 0 (manual steps only) to 30 days. */
export const MAX_GRACE_PERIOD_MS = 30 * 24 * 3600_000;
/** The shortest grace period of an auto rotation: each of its three steps gets a third. */
export const MIN_AUTO_GRACE_PERIOD_MS = 3_000;

const NEXT: Record<RotationPhase, readonly RotationPhase[]> = {
  standby: ['init'],
  init: ['update_clients', 'rollback'],
  update_clients: ['update_servers', 'rollback'],
  update_servers: ['standby', 'rollback'],
  rollback: ['standby'],
};

export const rotationOf = (ca: CertAuthority): Rotation => (ca.spec.rotation ?? { state: 'standby' }) as Rotation;
export const phaseOf = (ca: CertAuthority): RotationPhase => rotationOf(ca).phase ?? 'standby';

/**
 * Which of a CA's keys (by position in its lists) servers present certificates from: the old one
 * while only clients move (update_clients), else the first. Clients always use the first.
 */
export const servingKeyIndexIn = (phase: RotationPhase): number => (phase === 'update_clients' ? 1 : 0);
export const servingKeyIndex = (ca: CertAuthority): number => servingKeyIndexIn(phaseOf(ca));

/** Whether `to` may follow the CA's phase; BadParameterError saying why not. */
export function checkTransition(ca: CertAuthority, to: RotationPhase): void {
  const from = phaseOf(ca);
  if (!NEXT[from].includes(to)) {
    throw new BadParameterError(
      `the ${ca.spec.type} CA is in phase ${from}: it can go to ${NEXT[from].join(' or ')}, not to ${to}` +
        (from === 'standby' ? ' (start a rotation with --phase=init, or without --manual)' : ''),
    );
  }
}

function swap<T>(list: readonly T[]): T[] {
  if (list.length !== 2) throw new BadParameterError(`a CA in rotation has two keys, this one has ${list.length}`);
  return [list[1], list[0]];
}

const keysOf = (ca: CertAuthority) => ({ signing: ca.spec.signing_keys, checking: ca.spec.checking_keys, tls: ca.spec.tls_key_pairs });
const withKeys = (ca: CertAuthority, k: ReturnType<typeof keysOf>, rotation: Rotation): CertAuthority => ({
  ...ca,
  spec: { ...ca.spec, signing_keys: k.signing, checking_keys: k.checking, tls_key_pairs: k.tls, rotation: rotation as CertAuthority['spec']['rotation'] },
});
/** The second of each list (the keys dropped when a rotation or a rollback completes). */
const refsAt = (k: ReturnType<typeof keysOf>, i: number) => [k.signing[i], k.tls[i]?.key].filter((r): r is string => !!r);
const first = (k: ReturnType<typeof keysOf>) => ({ signing: k.signing.slice(0, 1), checking: k.checking.slice(0, 1), tls: k.tls.slice(0, 1) });

export function checkGracePeriod(mode: RotationMode, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_GRACE_PERIOD_MS) throw new BadParameterError('--grace-period must be between 0s and 720h');
  if (mode === 'auto' && ms < MIN_AUTO_GRACE_PERIOD_MS) {
    throw new BadParameterError(`an automatic rotation needs a --grace-period of at least ${MIN_AUTO_GRACE_PERIOD_MS / 1000}s (each of its three steps gets a third)`);
  }
}

/**
 * The CA after moving it to `to`. Starting a rotation (standby → init) needs `fresh`, the new
 * keys; every other step only reorders or drops keys.
 */
export function rotate(ca: CertAuthority, to: RotationPhase, opts: { now: Date; mode: RotationMode; gracePeriodMs: number; fresh?: NewCAKeys }): RotationStep {
  checkTransition(ca, to);
  const current = rotationOf(ca);
  const keys = keysOf(ca);
  const now = opts.now.toISOString();
  switch (to) {
    case 'init': {
      if (!opts.fresh) throw new BadParameterError('starting a rotation needs new keys');
      checkGracePeriod(opts.mode, opts.gracePeriodMs);
      const started = opts.now.getTime();
      const at = (fraction: number) => new Date(started + opts.gracePeriodMs * fraction).toISOString();
      const rotation: Rotation = {
        state: 'in_progress',
        phase: 'init',
        mode: opts.mode,
        current_id: randomUUID(),
        started: now,
        grace_period: opts.gracePeriodMs * 1_000_000,
        ...(current.last_rotated ? { last_rotated: current.last_rotated } : {}),
        ...(opts.mode === 'auto' ? { schedule: { update_clients: at(1 / 3), update_servers: at(2 / 3), standby: at(1) } } : {}),
      };
      const next = { signing: [...keys.signing, opts.fresh.signingKey], checking: [...keys.checking, opts.fresh.checkingKey], tls: [...keys.tls, opts.fresh.tlsKeyPair] };
      return { ca: withKeys(ca, next, rotation), discarded: [] };
    }
    case 'update_clients':
      return { ca: withKeys(ca, { signing: swap(keys.signing), checking: swap(keys.checking), tls: swap(keys.tls) }, { ...current, phase: 'update_clients' }), discarded: [] };
    case 'update_servers':
      return { ca: withKeys(ca, keys, { ...current, phase: 'update_servers' }), discarded: [] };
    case 'rollback': {
      // the old keys sign again: they are second after update_clients
      const back = phaseOf(ca) === 'init' ? keys : { signing: swap(keys.signing), checking: swap(keys.checking), tls: swap(keys.tls) };
      const { schedule: _schedule, ...manual } = current;
      return { ca: withKeys(ca, back, { ...manual, phase: 'rollback', mode: 'manual' }), discarded: [] };
    }
    case 'standby': {
      // from update_servers: the new keys stay (first); from rollback: the old ones (first)
      const rotation: Rotation = { state: 'standby', phase: 'standby', last_rotated: phaseOf(ca) === 'update_servers' ? now : current.last_rotated, current_id: current.current_id };
      return { ca: withKeys(ca, first(keys), stripUndefined(rotation)), discarded: refsAt(keys, 1) };
    }
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** An auto rotation's next phase once its time has come, else undefined. */
export function dueStep(ca: CertAuthority, now: Date): RotationPhase | undefined {
  const r = rotationOf(ca);
  if (r.state !== 'in_progress' || r.mode !== 'auto' || !r.schedule) return undefined;
  const due = (at: string) => new Date(at).getTime() <= now.getTime();
  switch (r.phase) {
    case 'init':
      return due(r.schedule.update_clients) ? 'update_clients' : undefined;
    case 'update_clients':
      return due(r.schedule.update_servers) ? 'update_servers' : undefined;
    case 'update_servers':
      return due(r.schedule.standby) ? 'standby' : undefined;
    default:
      return undefined;
  }
}

/** When an auto rotation takes its next step (undefined when none is scheduled). */
export function nextDue(ca: CertAuthority): Date | undefined {
  const r = rotationOf(ca);
  if (r.state !== 'in_progress' || r.mode !== 'auto' || !r.schedule) return undefined;
  const at = { init: r.schedule.update_clients, update_clients: r.schedule.update_servers, update_servers: r.schedule.standby }[r.phase as 'init'];
  return at ? new Date(at) : undefined;
}

/** `tctl status`'s words for a CA's rotation (Teleport's Rotation.String). */
export function describeRotation(ca: CertAuthority): string {
  const r = rotationOf(ca);
  if (r.state !== 'in_progress') return r.last_rotated ? `rotated ${r.last_rotated}` : 'never updated';
  const words: Record<RotationPhase, string> = {
    standby: 'standby',
    init: 'initialized',
    update_clients: 'rotating clients',
    update_servers: 'rotating servers',
    rollback: 'rolling back',
  };
  const ending = r.schedule ? `, ending: ${r.schedule.standby}` : '';
  return `${words[r.phase ?? 'standby']} (mode: ${r.mode ?? 'manual'}, started: ${r.started}${ending})`;
}
