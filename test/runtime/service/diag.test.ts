/**
 * The diagnostics server in-process: `/readyz` answers 503 until the services' checks are set,
 * then follows them, naming each failing check and why; requests that come while a round of
 * probes runs share it.
 */
import * as http from 'node:http';
import { startDiagServer, type DiagServer } from '../../../runtime/service/diag';
import type { ReadinessCheck } from '../../../runtime/instance/readiness';
import { logger, setLogLevel } from '../../../runtime/utils/logger';
import { scrape } from '../../helpers/metrics';

describe('diagnostics server', () => {
  let diag: DiagServer;
  let base: string;

  beforeAll(async () => {
    setLogLevel('error');
    diag = await startDiagServer({ host: '127.0.0.1', port: 0 }, logger('diag'));
    base = `http://127.0.0.1:${diag.address.port}`;
  });
  afterAll(async () => {
    await diag?.close();
  });

  /** GET `path` on its own connection: `sent` once the request is written, `answer` with the response. */
  const get = (path: string) => {
    const req = http.get(`${base}${path}`, { agent: false });
    const sent = new Promise<void>((resolve, reject) => req.once('finish', resolve).once('error', reject));
    const answer = new Promise<{ status: number; body: { checks: { reason?: string }[] } }>((resolve, reject) => {
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      });
      req.once('error', reject);
    });
    return { sent, answer };
  };

  const readyz = async () => {
    const res = await fetch(`${base}/readyz`);
    return { status: res.status, body: (await res.json()) as { status: string; checks: { name: string; status: string; reason?: string }[] } };
  };

  test('GIVEN a server whose services have not started WHEN /readyz is asked THEN 503 teleport is starting', async () => {
    // WHEN
    const r = await readyz();
    // THEN
    expect(r).toEqual({
      status: 503,
      body: {
        status: 'teleport: the services have started: teleport is starting',
        checks: [{ name: 'teleport: the services have started', status: 'failing', reason: 'teleport is starting' }],
      },
    });
  });

  test('GIVEN checks of which one fails and one throws WHEN /readyz is asked THEN 503 names both with why; once they hold, 200', async () => {
    // GIVEN
    let backendDown = true;
    diag.setReadiness([
      { name: 'a: holds', probe: async () => undefined },
      { name: 'b: backend', probe: async () => (backendDown ? 'the backend does not answer' : undefined) },
      { name: 'c: throws', probe: async () => (backendDown ? Promise.reject(new Error('boom')) : undefined) },
    ]);
    // WHEN
    const down = await readyz();
    // THEN
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('b: backend: the backend does not answer; c: throws: cannot check: boom');
    expect(down.body.checks).toEqual([
      { name: 'a: holds', status: 'ok' },
      { name: 'b: backend', status: 'failing', reason: 'the backend does not answer' },
      { name: 'c: throws', status: 'failing', reason: 'cannot check: boom' },
    ]);
    // WHEN they hold
    backendDown = false;
    // THEN
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ok', checks: ['a: holds', 'b: backend', 'c: throws'].map((name) => ({ name, status: 'ok' })) } });
  });

  test('GIVEN a slow check WHEN ten /readyz requests come at once THEN the check is probed once and all get its answer', async () => {
    // GIVEN
    let probes = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: ReadinessCheck = {
      name: 'slow: auth ping',
      probe: async () => {
        probes++;
        await gate;
        return 'the auth server does not answer';
      },
    };
    diag.setReadiness([slow]);
    // WHEN ten requests are sent, and a /healthz after them has come back (so the server has read all ten)
    const answers = Array.from({ length: 10 }, () => get('/readyz'));
    await Promise.all(answers.map((a) => a.sent));
    expect((await get('/healthz').answer).status).toBe(200);
    release();
    const all = await Promise.all(answers.map((a) => a.answer));
    // THEN
    expect(all.every((r) => r.status === 503 && r.body.checks[0].reason === 'the auth server does not answer')).toBe(true);
    expect(probes).toBe(1);
  });

  test('GIVEN a check that fails WHEN /metrics is scraped THEN teleport_ready is 0; once the check holds, 1 (as /readyz answers)', async () => {
    // GIVEN
    let down = true;
    diag.setReadiness([{ name: 'b: backend', probe: async () => (down ? 'the backend does not answer' : undefined) }]);
    // WHEN / THEN
    expect((await readyz()).status).toBe(503);
    expect((await scrape(base)).value('teleport_ready')).toBe(0);
    // WHEN the check holds
    down = false;
    // THEN
    expect((await readyz()).status).toBe(200);
    expect((await scrape(base)).value('teleport_ready')).toBe(1);
  });
});
