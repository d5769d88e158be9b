/**
 * The auth server's requests to identity providers (OIDC discovery, JWKS,
 * token and userinfo endpoints; GitHub's OAuth and REST endpoints): JSON
 * answers of at most 1 MiB within 10 s, no redirects followed. A failure
 * names the step and the URL, never the request's secrets.
 */
import { AccessDeniedError, ConnectionProblemError } from '../../utils/errors';

const TIMEOUT_MS = 10_000;
const LIMIT = 1024 * 1024;

export async function fetchJson<T = Record<string, unknown>>(url: string, what: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS), headers: { accept: 'application/json', ...init.headers } });
  } catch (err) {
    throw new ConnectionProblemError(`${what}: cannot reach ${url}: ${(err as Error).message}`);
  }
  const text = await res.text();
  if (text.length > LIMIT) throw new ConnectionProblemError(`${what}: the answer of ${url} is larger than ${LIMIT} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ConnectionProblemError(`${what}: ${url} answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) {
    const b = body as { error?: unknown; error_description?: unknown; message?: unknown };
    const why = [b.error, b.error_description, b.message].filter((x) => typeof x === 'string').join(': ').slice(0, 300);
    const Err = res.status === 400 || res.status === 401 || res.status === 403 ? AccessDeniedError : ConnectionProblemError;
    throw new Err(`${what}: ${url} answered ${res.status}${why ? ` (${why})` : ''}`);
  }
  if (typeof body !== 'object' || body === null) throw new ConnectionProblemError(`${what}: ${url} did not answer a JSON object`);
  return body as T;
}
