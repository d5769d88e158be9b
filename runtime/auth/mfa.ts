/**
 * A user's second-factor devices, each its own item under
 * `/web/users/<user>/mfa/<device name>`: TOTP authenticator apps, with their
 * secret and the last time step whose code was accepted (codes of that step
 * and earlier are refused: no replay), and WebAuthn security keys, with their
 * credential's ID, public key and the last sign counter seen (webauthn.ts).
 * A user may have several; a login code is accepted from any TOTP device.
 * Adding a TOTP device takes two steps: a new secret is offered for 5 minutes
 * (one offer per user at a time), then a code from the app set up with it
 * proves the setup worked, and only then does it count. A security key is
 * added once its registration ceremony is verified (webauthn.ts).
 */
import { randomUUID } from 'node:crypto';
import { Backend, Item } from '../backend';
import { Keys, rangeEnd } from '../contract/keys';
import { AlreadyExistsError, BadParameterError, CompareFailedError, isReason, NotFoundError } from '../utils/errors';
import { generateTotpSecret, verifyTotp } from './totp';

/** A device as stored (Teleport's MFADevice, with the TOTP step used last). */
export interface MfaDevice {
  kind: 'mfa_device';
  version: 'v1';
  metadata: { name: string };
  id: string;
  added_at: string;
  last_used: string;
  /** A TOTP device: its secret (base32) and the last step used. */
  totp?: { key: string; last_step: number };
  /** A WebAuthn security key (webauthn.ts). */
  webauthn?: WebAuthnKey;
}

/** A security key's credential as registered. */
export interface WebAuthnKey {
  /** The credential ID, base64url. */
  credential_id: string;
  /** The COSE public key, base64url. */
  public_key: string;
  /** The last sign counter the key reported (0: it keeps none). */
  counter: number;
  transports?: string[];
}

export type MfaDeviceType = 'TOTP' | 'WebAuthn';

/** What a device is made of: a TOTP secret or a security key. */
export type MfaSecret = Pick<MfaDevice, 'totp'> | Pick<MfaDevice, 'webauthn'>;

/** A device as shown to its user: never its secret. */
export interface MfaDeviceInfo {
  name: string;
  id: string;
  type: MfaDeviceType;
  added_at: string;
  last_used: string;
}

/** The outcome of checking a code against a user's devices. */
export type TotpCheck = { ok: true; device: MfaDevice } | { ok: false; why: 'no device' | 'replayed' | 'invalid' };

export const MFA_DEVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$/;
/** Devices one user may have. */
export const MAX_MFA_DEVICES = 5;
/** How long an offered secret waits for the code that confirms it. */
export const MFA_OFFER_TTL_MS = 5 * 60_000;

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export const deviceType = (d: MfaDevice): MfaDeviceType => (d.webauthn ? 'WebAuthn' : 'TOTP');

export const deviceInfo = (d: MfaDevice): MfaDeviceInfo => ({ name: d.metadata.name, id: d.id, type: deviceType(d), added_at: d.added_at, last_used: d.last_used });

export function checkDeviceName(name: string): void {
  if (!MFA_DEVICE_NAME.test(name)) {
    throw new BadParameterError('device name: 1 to 64 letters, digits, spaces, ".", "_", "@" or "-", starting with a letter or digit');
  }
}

export class MfaDevices {
  constructor(private readonly backend: Backend) {}

  /** The user's devices with their stored items (for compare-and-swap), by name. */
  private async items(user: string): Promise<{ device: MfaDevice; item: Item }[]> {
    await this.migrateLegacy(user);
    const items = await this.backend.getRange(Keys.userMfaDevices(user), rangeEnd(Keys.userMfaDevices(user)));
    return items.map((item) => ({ device: JSON.parse(item.value.toString()) as MfaDevice, item }));
  }

  /**
   * Before devices, a user had one TOTP record (`/web/users/<user>/totp`): it becomes the device
   * "otp" the first time the user's devices are read, so nobody loses their second factor.
   */
  private async migrateLegacy(user: string): Promise<void> {
    let legacy: { secret: string; last_step: number };
    try {
      legacy = JSON.parse((await this.backend.get(Keys.userTotp(user))).value.toString()) as typeof legacy;
    } catch (err) {
      if (isReason(err, 'not_found')) return;
      throw err;
    }
    await this.create(user, 'otp', { totp: { key: legacy.secret, last_step: legacy.last_step } }, new Date()).catch((err) => {
      if (!isReason(err, 'already_exists')) throw err;
    });
    await this.backend.delete(Keys.userTotp(user)).catch((err) => {
      if (!isReason(err, 'not_found')) throw err;
    });
  }

  async list(user: string): Promise<MfaDevice[]> {
    return (await this.items(user)).map((i) => i.device);
  }

  private async create(user: string, name: string, secret: MfaSecret, now: Date): Promise<MfaDevice> {
    const device: MfaDevice = {
      kind: 'mfa_device',
      version: 'v1',
      metadata: { name },
      id: randomUUID(),
      added_at: now.toISOString(),
      last_used: now.toISOString(),
      ...secret,
    };
    await this.backend.create({ key: Keys.userMfaDevice(user, name), value: json(device) });
    return device;
  }

  /** Sign-up (and sign-up after a reset): the device registered then is the user's only one. */
  async replaceAll(user: string, name: string, secret: MfaSecret, now: Date): Promise<MfaDevice> {
    await this.backend.deleteRange(Keys.userMfaDevices(user), rangeEnd(Keys.userMfaDevices(user)));
    return this.create(user, name, secret, now);
  }

  /** Adds a verified security key as device `name` (at most MAX_MFA_DEVICES). */
  async addWebAuthn(user: string, name: string, key: WebAuthnKey, now: Date): Promise<MfaDevice> {
    checkDeviceName(name);
    if ((await this.items(user)).length >= MAX_MFA_DEVICES) {
      throw new BadParameterError(`a user may have at most ${MAX_MFA_DEVICES} second-factor devices; remove one first`);
    }
    return this.create(user, name, { webauthn: key }, now).catch((err) => {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`there is already a device named "${name}"`);
      throw err;
    });
  }

  /**
   * Records a security key's use: its new sign counter, compare-and-swap against `seen` (the device
   * as it was when the assertion was checked), so that of two logins racing with one assertion
   * (or with two whose counters are not both new) only one counts.
   */
  async recordWebAuthnUse(user: string, seen: MfaDevice, counter: number, now: Date): Promise<MfaDevice> {
    const item = (await this.items(user)).find((i) => i.device.id === seen.id);
    if (!item || !item.device.webauthn || item.device.webauthn.counter !== seen.webauthn!.counter) {
      throw new CompareFailedError('the security key was used by another login at the same time');
    }
    const next: MfaDevice = { ...item.device, last_used: now.toISOString(), webauthn: { ...item.device.webauthn, counter } };
    await this.backend.compareAndSwap(item.item, { key: item.item.key, value: json(next) });
    return next;
  }

  /** Removes the device `name`; NotFoundError when the user has none by that name. */
  async remove(user: string, name: string): Promise<MfaDevice> {
    const found = (await this.items(user)).find((i) => i.device.metadata.name === name);
    if (!found) throw new NotFoundError(`no second-factor device named "${name}"`);
    await this.backend.delete(found.item.key);
    return found.device;
  }

  /** Deletes every device and a pending offer (`tctl users reset`). */
  async removeAll(user: string): Promise<void> {
    await this.backend.deleteRange(Keys.userMfaDevices(user), rangeEnd(Keys.userMfaDevices(user)));
    for (const key of [Keys.userTotp(user), Keys.userMfaOffer(user)]) {
      await this.backend.delete(key).catch((err) => {
        if (!isReason(err, 'not_found')) throw err;
      });
    }
  }

  /**
   * Checks a code against each of the user's devices and, on a match, moves that device's last
   * step forward (compare-and-swap: of two logins racing with one code, one wins).
   */
  async checkTotp(user: string, code: string, now: Date): Promise<TotpCheck> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const items = await this.items(user);
      if (!items.some((i) => i.device.totp)) return { ok: false, why: 'no device' };
      let replayed = false;
      let raced = false;
      for (const { device, item } of items) {
        if (!device.totp) continue;
        const step = verifyTotp(device.totp.key, code, { timeMs: now.getTime(), afterStep: device.totp.last_step });
        if (step === undefined) {
          replayed ||= verifyTotp(device.totp.key, code, { timeMs: now.getTime() }) !== undefined;
          continue;
        }
        const next: MfaDevice = { ...device, last_used: now.toISOString(), totp: { key: device.totp.key, last_step: step } };
        try {
          await this.backend.compareAndSwap(item, { key: item.key, value: json(next) });
          return { ok: true, device: next };
        } catch (err) {
          if (!isReason(err, 'compare_failed') && !isReason(err, 'not_found')) throw err;
          raced = true;
          break;
        }
      }
      if (!raced) return { ok: false, why: replayed ? 'replayed' : 'invalid' };
    }
    throw new CompareFailedError(`the second factor of user "${user}" kept changing; try again`);
  }

  /** A new secret for the user to set up, replacing any earlier offer. */
  async offerTotp(user: string, now: Date): Promise<{ key: string; expires: Date }> {
    if ((await this.items(user)).length >= MAX_MFA_DEVICES) {
      throw new BadParameterError(`a user may have at most ${MAX_MFA_DEVICES} second-factor devices; remove one first`);
    }
    const offer = { key: generateTotpSecret(), expires: new Date(now.getTime() + MFA_OFFER_TTL_MS) };
    await this.backend.put({ key: Keys.userMfaOffer(user), value: json({ key: offer.key }), expires: offer.expires });
    return offer;
  }

  /**
   * Adds the offered secret as device `name` when `code` comes from it. A wrong code keeps the
   * offer (the user may try again until it expires); a used or expired offer is not found.
   */
  async confirmTotp(user: string, name: string, code: string, now: Date): Promise<MfaDevice> {
    checkDeviceName(name);
    let offer: { key: string };
    try {
      offer = JSON.parse((await this.backend.get(Keys.userMfaOffer(user))).value.toString()) as typeof offer;
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('no new device is being set up, or it took more than 5 minutes: start again');
      throw err;
    }
    const step = verifyTotp(offer.key, code, { timeMs: now.getTime() });
    if (step === undefined) throw new BadParameterError('the code is not from the new device: enter the current code the authenticator app shows for it');
    if ((await this.items(user)).length >= MAX_MFA_DEVICES) {
      throw new BadParameterError(`a user may have at most ${MAX_MFA_DEVICES} second-factor devices; remove one first`);
    }
    const device = await this.create(user, name, { totp: { key: offer.key, last_step: step } }, now).catch((err) => {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`there is already a device named "${name}"`);
      throw err;
    });
    await this.backend.delete(Keys.userMfaOffer(user)).catch((err) => {
      if (!isReason(err, 'not_found')) throw err;
    });
    return device;
  }
}
