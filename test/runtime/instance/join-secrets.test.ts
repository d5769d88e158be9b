import * as fs from 'node:fs';
import * as path from 'node:path';
import { GetParameterCommand, ParameterNotFound, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { fetchJoinSecrets, refreshJoinSecrets, writeJoinSecrets } from '../../../runtime/instance/join-secrets';
import { tempDir } from '../../helpers/proc';

const PIN = 'sha256:' + 'cd'.repeat(32);
const TOKEN_PATH = '/teleport/acme/tokens/node';
const PIN_PATH = '/teleport/acme/ca-pin';
const FAST = { initialDelayMs: 1, maxDelayMs: 5 };
const notFound = () => new ParameterNotFound({ message: '', $metadata: { httpStatusCode: 400 } });

describe('join secrets from SSM (SSM mocked at the SDK level)', () => {
  const ssm = mockClient(SSMClient);
  const client = new SSMClient({ region: 'eu-west-1' });
  afterEach(() => ssm.reset());

  test('GIVEN the control plane publishes the secrets after two polls WHEN fetched THEN the fetch waits for them and returns both', async () => {
    let polls = 0;
    ssm.on(GetParameterCommand, { Name: TOKEN_PATH }).callsFake(() => {
      if (++polls <= 2) throw notFound();
      return { Parameter: { Value: 'the-node-token' } };
    });
    ssm.on(GetParameterCommand, { Name: PIN_PATH }).resolves({ Parameter: { Value: PIN } });
    const waits: string[] = [];
    const secrets = await fetchJoinSecrets(client, 'acme', 'node', { ...FAST, onWait: (missing) => waits.push(missing) });
    expect(secrets).toEqual({ token: 'the-node-token', caPins: [PIN] });
    expect(waits).toEqual([TOKEN_PATH, TOKEN_PATH]);
    // The token is a SecureString: it is asked for decrypted.
    expect(ssm.commandCalls(GetParameterCommand, { Name: TOKEN_PATH }).every((c) => c.args[0].input.WithDecryption === true)).toBe(true);
  });

  test('GIVEN the secrets never appear WHEN the timeout passes THEN it fails naming the parameter and how to publish it', async () => {
    ssm.on(GetParameterCommand).rejects(notFound());
    await expect(fetchJoinSecrets(client, 'acme', 'node', { ...FAST, timeoutMs: 30 })).rejects.toThrow(
      `${TOKEN_PATH} not readable after 0 s (ParameterNotFound); the control plane publishes it once the auth tier is up (invoke the TokenRotatorFunctionName output to publish now)`,
    );
  });

  test('GIVEN the instance role may not read the parameter WHEN fetched THEN it fails at once instead of waiting', async () => {
    const denied = Object.assign(new Error('not authorized to perform ssm:GetParameter'), { name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } });
    ssm.on(GetParameterCommand).rejects(denied);
    await expect(fetchJoinSecrets(client, 'acme', 'node', { ...FAST, timeoutMs: 60_000 })).rejects.toThrow(
      'cannot read the join secrets from SSM: AccessDeniedException: not authorized to perform ssm:GetParameter',
    );
    expect(ssm.commandCalls(GetParameterCommand)).toHaveLength(1);
  });

  test('GIVEN a CA pin parameter that is not a pin WHEN fetched THEN it is refused', async () => {
    ssm.on(GetParameterCommand, { Name: TOKEN_PATH }).resolves({ Parameter: { Value: 'tok' } });
    ssm.on(GetParameterCommand, { Name: PIN_PATH }).resolves({ Parameter: { Value: 'md5:1234' } });
    await expect(fetchJoinSecrets(client, 'acme', 'node', FAST)).rejects.toThrow(`SSM parameter ${PIN_PATH}: expected a CA pin "sha256:<64 hex digits>"`);
  });

  describe('before each start (refresh)', () => {
    let dir: string;
    beforeEach(() => {
      dir = tempDir('join-refresh-');
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
    const read = () => [fs.readFileSync(path.join(dir, 'token'), 'utf8'), fs.readFileSync(path.join(dir, 'ca-pin'), 'utf8')];

    test('GIVEN secrets fetched at an earlier start WHEN SSM fails now THEN it asks once and keeps the files, saying why', async () => {
      writeJoinSecrets({ dataDir: dir }, { token: 'earlier-token', caPins: [PIN] });
      ssm.on(GetParameterCommand).rejects(Object.assign(new Error('connect ETIMEDOUT'), { name: 'TimeoutError' }));
      const r = await refreshJoinSecrets(client, 'acme', 'node', { dataDir: dir }, { ...FAST, timeoutMs: 60_000 });
      expect(r).toEqual({ refreshed: false, reason: expect.stringContaining(`${TOKEN_PATH} not readable`) });
      expect(ssm.commandCalls(GetParameterCommand)).toHaveLength(1);
      expect(read()).toEqual(['earlier-token\n', `${PIN}\n`]);
    });

    test('GIVEN secrets fetched earlier WHEN SSM has rotated ones THEN the files are refreshed', async () => {
      writeJoinSecrets({ dataDir: dir }, { token: 'earlier-token', caPins: [PIN] });
      ssm.on(GetParameterCommand, { Name: TOKEN_PATH }).resolves({ Parameter: { Value: 'rotated-token' } });
      ssm.on(GetParameterCommand, { Name: PIN_PATH }).resolves({ Parameter: { Value: PIN } });
      expect(await refreshJoinSecrets(client, 'acme', 'node', { dataDir: dir }, FAST)).toEqual({ refreshed: true });
      expect(read()).toEqual(['rotated-token\n', `${PIN}\n`]);
    });

    test('GIVEN a first boot WHEN SSM refuses THEN it fails and writes nothing', async () => {
      ssm.on(GetParameterCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } }));
      await expect(refreshJoinSecrets(client, 'acme', 'node', { dataDir: dir }, FAST)).rejects.toThrow(/AccessDeniedException: denied/);
      expect(fs.readdirSync(dir)).toEqual([]);
    });
  });

  test('GIVEN secrets WHEN written THEN the token and pin files the generated config names are 0600', () => {
    const dir = tempDir('join-secrets-');
    try {
      writeJoinSecrets({ dataDir: dir }, { token: 'tok', caPins: [PIN] });
      expect(fs.readFileSync(path.join(dir, 'token'), 'utf8')).toBe('tok\n');
      expect(fs.readFileSync(path.join(dir, 'ca-pin'), 'utf8')).toBe(`${PIN}\n`);
      for (const f of ['token', 'ca-pin']) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
      expect(fs.readdirSync(dir).sort()).toEqual(['ca-pin', 'token']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
