/**
 * Backpressure on the auth API: the Router runs a bounded number of handlers
 * at once, queues a bounded number more, and refuses the rest at once with
 * 429 (limit_exceeded); long polls, which only wait, take no slot.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { route, Router } from '../../../runtime/auth/http';
import { Admission } from '../../../runtime/service/admission';
import { logger, setLogLevel } from '../../../runtime/utils/logger';
import { waitFor } from '../../helpers/proc';

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('Router admission', () => {
  let server: http.Server;
  let port: number;
  const held = gate();
  const entered: string[] = [];
  const admission = new Admission({ inFlight: 1, queued: 1 });

  beforeAll(async () => {
    setLogLevel('error');
    const work = (name: string) => async () => {
      entered.push(name);
      await held.promise;
      return { name };
    };
    const router = new Router(
      [
        route({ method: 'GET', path: '/work/:n', allow: ['nop'], handler: async ({ params }) => work(`work-${params.n}`)() }),
        route({ method: 'GET', path: '/poll', allow: ['nop'], longPoll: true, handler: work('poll') }),
      ],
      () => ({ kind: 'nop' }),
      logger('test'),
      admission,
    );
    server = http.createServer(router.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    held.open();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const get = (path: string) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
          let data = '';
          res.on('data', (d) => (data += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
        })
        .on('error', reject);
    });

  it('runs one handler, queues one, refuses the third at once, and lets long polls through', async () => {
    // GIVEN one handler running (it waits) and one request queued behind it
    const first = get('/work/1');
    await waitFor('the first handler to run', () => entered.includes('work-1'));
    const second = get('/work/2');
    await waitFor('the second request to queue', () => admission.queued === 1);
    // WHEN a long poll comes in THEN it runs although the one slot is taken
    const poll = get('/poll');
    await waitFor('the long poll to run', () => entered.includes('poll'));
    // AND WHEN a third request comes while the queue is full THEN it is refused at once with 429
    const third = await get('/work/3');
    expect(third.status).toBe(429);
    expect(third.body.error).toMatchObject({ reason: 'limit_exceeded', message: expect.stringMatching(/busy/) });
    expect(entered).not.toContain('work-2');
    // AND WHEN the running handler finishes THEN the queued one gets its turn and every admitted request is answered
    held.open();
    expect((await first).body).toEqual({ name: 'work-1' });
    expect((await second).body).toEqual({ name: 'work-2' });
    expect((await poll).body).toEqual({ name: 'poll' });
    expect(entered.filter((e) => e === 'work-3')).toEqual([]);
  });
});
