/**
 * `tsh login` with a security key. A key answers only a page on the proxy's
 * own origin (its relying party ID is the proxy's public host name), so tsh
 * cannot run the ceremony itself: after the password is checked (a login
 * attempt like any other) the auth server opens a request, `{id, secret}`,
 * stored under `/web/webauthn_cli/<id>` for CLI_REQUEST_TTL_MS with the user
 * and the SHA-256 of the secret. tsh prints the proxy's page for the id
 * (`https://<public_addr>/web/cli-mfa/<id>`); the user opens it, the page
 * gets a challenge for the user's keys (the relying party is the page's
 * origin, webauthn.ts) and posts the key's answer, which the request keeps
 * (once: a second answer is refused). tsh, polling with the secret (which
 * only it has: the page and its URL never see it), collects the answer, which
 * removes the request, and logs in with the password and the answer; the
 * auth server checks that answer as any login's (single-use challenge, the
 * user's own key, its sign counter).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Backend } from '../backend';
import { Clock } from '../backend/clock';
import { Keys } from '../contract/keys';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import type { AssertionResponse } from './webauthn';

/** How long tsh's request waits for the key's answer. */
export const CLI_REQUEST_TTL_MS = 3 * 60_000;

const ID_RE = /^[0-9a-f]{32}$/;
const SECRET_RE = /^[0-9a-f]{64}$/;

interface CliRequest {
  user: string;
  /** The address tsh logged in from, shown on the page so the user can tell a login they did not start. */
  from: string;
  secret_sha256: string;
  answer?: AssertionResponse;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const digest = (secret: string) => createHash('sha256').update(secret).digest();

export class WebAuthnCliRequests {
  constructor(
    private readonly backend: Backend,
    private readonly clock: Clock,
  ) {}

  private key(id: string): string {
    if (!ID_RE.test(id)) throw new NotFoundError('no such security key request, or it expired: run tsh login again');
    return Keys.webauthnCliRequest(id);
  }

  private async item(id: string) {
    try {
      const item = await this.backend.get(this.key(id));
      if (item.expires && item.expires.getTime() <= this.clock.now().getTime()) throw new NotFoundError('expired');
      return { item, req: JSON.parse(item.value.toString()) as CliRequest };
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('no such security key request, or it expired or was used: run tsh login again');
      throw err;
    }
  }

  /** A new request for `user` (whose password was checked), from tsh at `from`. */
  async open(user: string, from: string): Promise<{ id: string; secret: string; expires: Date }> {
    const id = randomBytes(16).toString('hex');
    const secret = randomBytes(32).toString('hex');
    const expires = new Date(this.clock.now().getTime() + CLI_REQUEST_TTL_MS);
    const req: CliRequest = { user, from, secret_sha256: digest(secret).toString('hex') };
    await this.backend.create({ key: this.key(id), value: json(req), expires });
    return { id, secret, expires };
  }

  /** Whom and where from a request still waiting for its answer is. */
  async pending(id: string): Promise<{ user: string; from: string }> {
    const { req } = await this.item(id);
    if (req.answer) throw new BadParameterError('this security key request has been answered already: return to tsh');
    return { user: req.user, from: req.from };
  }

  /** Keeps the key's answer; only the first one counts. */
  async answer(id: string, answer: AssertionResponse): Promise<void> {
    const { item, req } = await this.item(id);
    if (req.answer) throw new BadParameterError('this security key request has been answered already: return to tsh');
    try {
      await this.backend.compareAndSwap(item, { key: item.key, value: json({ ...req, answer }), ...(item.expires ? { expires: item.expires } : {}) });
    } catch (err) {
      if (isReason(err, 'compare_failed') || isReason(err, 'not_found')) throw new BadParameterError('this security key request has been answered already: return to tsh');
      throw err;
    }
  }

  /**
   * What tsh collects with its secret: the answer (the request is then gone), or undefined while
   * there is none. AccessDeniedError for a wrong secret.
   */
  async collect(id: string, secret: string): Promise<{ user: string; answer: AssertionResponse } | undefined> {
    const { item, req } = await this.item(id);
    const want = Buffer.from(req.secret_sha256, 'hex');
    if (!SECRET_RE.test(secret) || !timingSafeEqual(digest(secret), want)) throw new AccessDeniedError('wrong secret for this security key request');
    if (!req.answer) return undefined;
    try {
      await this.backend.delete(item.key);
    } catch (err) {
      if (isReason(err, 'not_found')) throw new NotFoundError('this security key request was collected already');
      throw err;
    }
    return { user: req.user, answer: req.answer };
  }
}
