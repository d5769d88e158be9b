/**
 * The join rate limit counts failed joins per source address: a fleet behind
 * one NAT address joins with a valid token without being refused, while wrong
 * tokens from an address are limited as hard as ever (20 at once, then one a
 * second).
 */
import { register, RegisterOptions } from '../../runtime/auth/register';
import { logger } from '../../runtime/utils/logger';
import { startAuth, TestAuth } from '../helpers/cluster';

const TOKEN = 'static-node-token-nat';
/** The burst of the join limit (auth/server.ts). */
const BURST = 20;

describe('the join rate limit', () => {
  let auth: TestAuth;
  let pin: string;
  const opts = (i: number, token = TOKEN): RegisterOptions => ({
    servers: [{ host: '127.0.0.1', port: auth.port }],
    token,
    caPins: [pin],
    role: 'Node',
    hostUUID: `5b1c2d3e-0000-4000-8000-${String(i).padStart(12, '0')}`,
    nodeName: `nat-${i}`,
    additionalPrincipals: [],
    dnsNames: [],
    log: logger('test'),
  });
  const outcome = (r: PromiseSettledResult<unknown>) => (r.status === 'fulfilled' ? 'joined' : ((r.reason as { reason?: string }).reason ?? String(r.reason)));

  beforeAll(async () => {
    auth = await startAuth({ tokens: [`node:${TOKEN}`] });
    pin = await auth.caPin();
  });
  afterAll(async () => {
    await auth?.cleanup();
  });

  it('lets a fleet behind one address join with a valid token, and still limits wrong tokens from it', async () => {
    // GIVEN 30 nodes behind one NAT address (all from 127.0.0.1), more than the burst of 20
    // WHEN they all join at once with the valid token
    const fleet = await Promise.allSettled(Array.from({ length: BURST + 10 }, (_, i) => register(opts(i))));
    // THEN none is refused
    expect(fleet.map(outcome)).toEqual(Array(BURST + 10).fill('joined'));

    // GIVEN the same address WHEN it then floods the auth server with wrong tokens (as join.test.ts did before)
    const guesses = await Promise.allSettled(Array.from({ length: 2 * BURST }, (_, i) => register(opts(100 + i, `guess-${i}-wrong-token`))));
    // THEN every guess is refused, and the rate limit cuts the flood short: the 30 joins before took nothing from it,
    // yet the failures alone exhaust it
    const reasons = guesses.map(outcome);
    expect(reasons).not.toContain('joined');
    expect(reasons.filter((r) => r === 'access_denied').length).toBeGreaterThanOrEqual(BURST);
    expect(reasons).toContain('limit_exceeded');
  });
});
