/**
 * WebAuthn security keys as a second factor, with @simplewebauthn/server:
 * the registration ceremony (sign-up, the account page) and the assertion
 * ceremony (logins, account changes). The relying party is the proxy the
 * browser talks to: its ID is the proxy's public host name and the origin
 * its public web address (runtime/proxy/relyingparty.ts works them out from
 * the request and refuses another origin); both are stored with the
 * challenge when it is made, and the browser's answer is checked against
 * those. A challenge is 32 random bytes, stored server side under
 * `/web/webauthn_challenges/<challenge>` with a TTL of CHALLENGE_TTL_MS,
 * bound to one user and one purpose (and, at sign-up, one sign-up token),
 * and used once: it is deleted before the answer is checked. User
 * verification is preferred, not required (a key without a PIN still
 * counts, as in Teleport). The sign counter is stored; an assertion whose
 * counter does not increase (when the key keeps one) is refused as a
 * possible clone.
 */
import { randomBytes } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type AuthenticatorTransportFuture,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { z } from 'zod';
import { Backend } from '../backend';
import { Clock } from '../backend/clock';
import { Keys } from '../contract/keys';
import { AccessDeniedError, BadParameterError, isReason } from '../utils/errors';
import { RateLimiter } from '../utils/ratelimit';
import type { MfaDevice, WebAuthnKey } from './mfa';

/** How long a challenge waits for the browser's answer. */
export const CHALLENGE_TTL_MS = 2 * 60_000;
/** How long the browser lets the user touch their key. */
const CEREMONY_TIMEOUT_MS = 60_000;
/**
 * Challenges made per user: 20 at once, then one every 3 s. Each is a record in the backend until it
 * is answered or its TTL ends, so without a limit whoever can ask for them (a signed-in browser, the
 * holder of a sign-up token or of a tsh login page) could fill the backend; with it a user has at most
 * about 60 outstanding (20 + CHALLENGE_TTL_MS / 3 s), and a real login or sign-up needs one or two.
 */
export const CHALLENGE_LIMIT = { burst: 20, perSecond: 1 / 3 } as const;

const b64url = z.string().max(16384).regex(/^[A-Za-z0-9_-]*$/, 'base64url');

/** The relying party a ceremony runs for: the proxy's public host name and web origin. */
export const relyingPartySchema = z.object({ id: z.string().min(1).max(253), origin: z.string().min(1).max(300) }).strict();
export type RelyingParty = z.infer<typeof relyingPartySchema>;

/** navigator.credentials.create's answer, as JSON (WebAuthn's RegistrationResponseJSON). */
export const registrationResponseSchema = z
  .object({
    id: b64url,
    rawId: b64url,
    type: z.literal('public-key'),
    response: z
      .object({ clientDataJSON: b64url, attestationObject: b64url, transports: z.array(z.string().max(32)).max(8).optional() })
      .passthrough(),
    authenticatorAttachment: z.string().max(32).optional(),
    clientExtensionResults: z.record(z.string(), z.unknown()),
  })
  .strict();

/** navigator.credentials.get's answer, as JSON (WebAuthn's AuthenticationResponseJSON). */
export const assertionResponseSchema = z
  .object({
    id: b64url,
    rawId: b64url,
    type: z.literal('public-key'),
    response: z.object({ clientDataJSON: b64url, authenticatorData: b64url, signature: b64url, userHandle: b64url.optional() }).strict(),
    authenticatorAttachment: z.string().max(32).optional(),
    clientExtensionResults: z.record(z.string(), z.unknown()),
  })
  .strict();

export type RegistrationResponse = z.infer<typeof registrationResponseSchema>;
export type AssertionResponse = z.infer<typeof assertionResponseSchema>;

/** Whom and what a challenge is for: a user's login (or account change), adding a key, or a sign-up token's key. */
export interface ChallengeBinding {
  user: string;
  purpose: 'login' | 'register' | 'signup';
  /** The sign-up token's digest (never the token itself: challenges are stored), for `signup`. */
  token?: string;
}

interface ChallengeRecord extends ChallengeBinding {
  rp_id: string;
  origin: string;
}

/** The outcome of checking an assertion against a user's keys; `why` is for the audit log only. */
export type AssertionCheck = { ok: true; device: MfaDevice; counter: number } | { ok: false; why: string };

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

/** The challenge a browser answered, from its clientDataJSON; BadParameterError when there is none. */
function answeredChallenge(clientDataJSON: string): string {
  let challenge: unknown;
  try {
    challenge = (JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString()) as { challenge?: unknown }).challenge;
  } catch {
    throw new BadParameterError('webauthn response: clientDataJSON is not JSON');
  }
  if (typeof challenge !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(challenge)) throw new BadParameterError('webauthn response: clientDataJSON has no challenge');
  return challenge;
}

const sameBinding = (a: ChallengeBinding, b: ChallengeBinding) => a.user === b.user && a.purpose === b.purpose && (a.token ?? '') === (b.token ?? '');

export class WebAuthn {
  private readonly perUser = new RateLimiter(CHALLENGE_LIMIT);

  constructor(
    private readonly backend: Backend,
    private readonly clusterName: string,
    private readonly clock: Clock,
  ) {}

  /** Stores a challenge made for `binding`; LimitExceededError (nothing stored) past CHALLENGE_LIMIT for its user. */
  private async store(challenge: string, binding: ChallengeBinding, rp: RelyingParty): Promise<void> {
    this.perUser.take(binding.user, this.clock.now().getTime());
    const rec: ChallengeRecord = { ...binding, rp_id: rp.id, origin: rp.origin };
    await this.backend.create({ key: Keys.webauthnChallenge(challenge), value: json(rec), expires: new Date(this.clock.now().getTime() + CHALLENGE_TTL_MS) });
  }

  /**
   * Uses up the challenge a browser answered: it must exist (not used, not expired) and have been
   * made for `binding`. AccessDeniedError otherwise (the message says which, for the audit log).
   */
  private async take(clientDataJSON: string, binding: ChallengeBinding): Promise<ChallengeRecord & { challenge: string }> {
    const challenge = answeredChallenge(clientDataJSON);
    const key = Keys.webauthnChallenge(challenge);
    let rec: ChallengeRecord;
    try {
      const item = await this.backend.get(key);
      if (item.expires && item.expires.getTime() <= this.clock.now().getTime()) throw new AccessDeniedError('webauthn challenge expired');
      rec = JSON.parse(item.value.toString()) as ChallengeRecord;
      await this.backend.delete(key);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new AccessDeniedError('webauthn challenge unknown, expired or already used');
      throw err;
    }
    if (!sameBinding(rec, binding)) throw new AccessDeniedError(`webauthn challenge was not made for this ${binding.purpose === 'signup' ? 'sign-up' : 'user'}`);
    return { ...rec, challenge };
  }

  /** The options for navigator.credentials.create: a new key for `binding.user`, not one of `existing`. */
  async registrationOptions(binding: ChallengeBinding, rp: RelyingParty, existing: MfaDevice[]): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const options = await generateRegistrationOptions({
      rpName: this.clusterName,
      rpID: rp.id,
      userName: binding.user,
      userID: new Uint8Array(randomBytes(16)),
      challenge: new Uint8Array(randomBytes(32)),
      timeout: CEREMONY_TIMEOUT_MS,
      attestationType: 'none',
      excludeCredentials: existing.flatMap((d) => (d.webauthn ? [{ id: d.webauthn.credential_id, transports: d.webauthn.transports as AuthenticatorTransportFuture[] | undefined }] : [])),
      authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
    });
    await this.store(options.challenge, binding, rp);
    return options;
  }

  /** Checks a registration against its challenge; the new key, or AccessDeniedError. */
  async verifyRegistration(binding: ChallengeBinding, response: RegistrationResponse, existing: MfaDevice[]): Promise<WebAuthnKey> {
    const rec = await this.take(response.response.clientDataJSON, binding);
    let info;
    try {
      const v = await verifyRegistrationResponse({
        response: response as RegistrationResponseJSON,
        expectedChallenge: rec.challenge,
        expectedOrigin: rec.origin,
        expectedRPID: rec.rp_id,
        requireUserVerification: false,
      });
      if (!v.verified) throw new Error('not verified');
      info = v.registrationInfo;
    } catch (err) {
      throw new AccessDeniedError(`the security key's registration is not valid: ${(err as Error).message}`);
    }
    const id = info.credential.id;
    if (existing.some((d) => d.webauthn?.credential_id === id)) throw new BadParameterError('this security key is registered already');
    return {
      credential_id: id,
      public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      ...(info.credential.transports?.length ? { transports: info.credential.transports } : {}),
    };
  }

  /** The options for navigator.credentials.get, for `user`'s keys; BadParameterError when they have none. */
  async assertionOptions(user: string, rp: RelyingParty, devices: MfaDevice[]): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const keys = devices.flatMap((d) => (d.webauthn ? [d.webauthn] : []));
    if (!keys.length) throw new BadParameterError('no security key is registered for this user');
    const options = await generateAuthenticationOptions({
      rpID: rp.id,
      challenge: new Uint8Array(randomBytes(32)),
      timeout: CEREMONY_TIMEOUT_MS,
      userVerification: 'preferred',
      allowCredentials: keys.map((k) => ({ id: k.credential_id, transports: k.transports as AuthenticatorTransportFuture[] | undefined })),
    });
    await this.store(options.challenge, { user, purpose: 'login' }, rp);
    return options;
  }

  /**
   * Checks an assertion for `user`: a challenge made for their login, from one of their keys,
   * signed by it, with a sign counter above the stored one (unless the key keeps none).
   */
  async verifyAssertion(user: string, response: AssertionResponse, devices: MfaDevice[]): Promise<AssertionCheck> {
    let rec;
    try {
      rec = await this.take(response.response.clientDataJSON, { user, purpose: 'login' });
    } catch (err) {
      if (isReason(err, 'access_denied') || isReason(err, 'bad_parameter')) return { ok: false, why: (err as Error).message };
      throw err;
    }
    const device = devices.find((d) => d.webauthn?.credential_id === response.id);
    if (!device?.webauthn) return { ok: false, why: 'webauthn assertion from a security key not registered to this user' };
    const stored = device.webauthn.counter;
    let counter: number;
    try {
      const v = await verifyAuthenticationResponse({
        response: response as AuthenticationResponseJSON,
        expectedChallenge: rec.challenge,
        expectedOrigin: rec.origin,
        expectedRPID: rec.rp_id,
        // The counter is checked below, after the signature, with our own message.
        credential: { id: device.webauthn.credential_id, publicKey: new Uint8Array(Buffer.from(device.webauthn.public_key, 'base64url')), counter: 0 },
        requireUserVerification: false,
      });
      if (!v.verified) return { ok: false, why: 'invalid webauthn assertion' };
      counter = v.authenticationInfo.newCounter;
    } catch (err) {
      return { ok: false, why: `invalid webauthn assertion: ${(err as Error).message}` };
    }
    if ((counter > 0 || stored > 0) && counter <= stored) {
      return { ok: false, why: `security key "${device.metadata.name}" sign counter did not increase (stored ${stored}, got ${counter}): possibly a cloned key` };
    }
    return { ok: true, device, counter };
  }
}
