/** The fuzz helper's promises that the fuzz suites rely on: inputs replay from (seed, index), and every failure names its input. */
import { httpBytes, mutatedHttpRequest, Rng, runFuzz, sshPreAuthInput } from './fuzz';

describe('fuzz helper', () => {
  test('GIVEN the same seed and input index THEN the same input; another index gives another', () => {
    const template = { method: 'POST', path: '/v1/tokens', body: '{"roles":["Node"]}' };
    for (let i = 0; i < 50; i++) {
      // WHEN the input is made twice from the same (seed, index)
      // THEN it is byte for byte the same
      expect(sshPreAuthInput(Rng.forInput(7, i))).toEqual(sshPreAuthInput(Rng.forInput(7, i)));
      expect(mutatedHttpRequest(Rng.forInput(7, i), template)).toEqual(mutatedHttpRequest(Rng.forInput(7, i), template));
    }
    const distinct = new Set(Array.from({ length: 50 }, (_, i) => sshPreAuthInput(Rng.forInput(7, i)).toString('hex')));
    expect(distinct.size).toBeGreaterThan(45);
  });

  test('GIVEN a request template THEN its bytes are a complete HTTP/1.1 request with Connection: close and the body length', () => {
    expect(httpBytes({ method: 'POST', path: '/x', body: '{}' }).toString()).toBe('POST /x HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}');
  });

  test('GIVEN inputs that get a wrong answer, throw or never finish THEN each is listed with the seed and its index, and the others pass', async () => {
    // WHEN input 3 answers wrongly, input 5 throws and input 7 hangs past the timeout
    const r = await runFuzz({
      name: 'probe',
      seed: 42,
      count: 10,
      concurrency: 3,
      timeoutMs: 200,
      input: (_rng, i) => i,
      send: (i, signal) =>
        i === 3
          ? Promise.resolve('wrong answer')
          : i === 5
            ? Promise.reject(new Error('boom'))
            : i === 7
              ? new Promise<undefined>((resolve) => signal.addEventListener('abort', () => resolve(undefined)))
              : Promise.resolve(undefined),
    });
    // THEN all ten ran and exactly those three are reported, by seed and index
    expect(r.ran).toBe(10);
    expect(r.failures.sort()).toEqual(['probe (seed 42) #3: wrong answer [3]', 'probe (seed 42) #5: boom [5]', 'probe (seed 42) #7: no answer within 200 ms [7]']);
  });
});
