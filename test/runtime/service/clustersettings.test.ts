/**
 * The cluster configuration as nodes and proxies read it where a connection
 * arrives (runtime/service/clustersettings.ts): the auth server's value now,
 * one request for reads that overlap, and the last known value when the auth
 * server fails or does not answer in time.
 */
import type { ClusterConfig } from '../../../runtime/auth/server';
import { ClusterSettings } from '../../../runtime/service/clustersettings';
import { logger } from '../../../runtime/utils/logger';

const base: ClusterConfig = {
  session_recording: 'node',
  proxy_checks_host_keys: true,
  client_idle_timeout: 0,
  disconnect_expired_cert: false,
  keep_alive_interval: 0,
  keep_alive_count_max: 3,
  auth_type: 'local',
  second_factor: 'otp',
};
const log = logger('test');

describe('ClusterSettings', () => {
  it('GIVEN the auth server changed session_recording WHEN read again THEN the new value is returned', async () => {
    // GIVEN
    let now: ClusterConfig = { ...base, session_recording: 'proxy' };
    const settings = new ClusterSettings(async () => now, base, log);
    // WHEN / THEN
    expect((await settings.current()).session_recording).toBe('proxy');
    now = { ...base, session_recording: 'off' };
    expect((await settings.current()).session_recording).toBe('off');
    expect(settings.latest.session_recording).toBe('off');
  });

  it('GIVEN overlapping reads WHEN they run THEN the auth server is asked once', async () => {
    let asked = 0;
    let answer: (c: ClusterConfig) => void = () => undefined;
    const settings = new ClusterSettings(() => {
      asked++;
      return new Promise((resolve) => (answer = resolve));
    }, base, log);
    const reads = [settings.current(), settings.current(), settings.current()];
    answer({ ...base, session_recording: 'proxy' });
    expect((await Promise.all(reads)).map((c) => c.session_recording)).toEqual(['proxy', 'proxy', 'proxy']);
    expect(asked).toBe(1);
  });

  it('GIVEN the auth server fails WHEN read THEN the last value read is returned', async () => {
    let fail = false;
    const settings = new ClusterSettings(async () => {
      if (fail) throw new Error('connect ECONNREFUSED');
      return { ...base, session_recording: 'proxy' };
    }, base, log);
    await settings.current();
    fail = true;
    expect((await settings.current()).session_recording).toBe('proxy');
  });

  it('GIVEN the auth server does not answer WHEN the timeout passes THEN the last value read is returned', async () => {
    const settings = new ClusterSettings(() => new Promise<ClusterConfig>(() => undefined), { ...base, session_recording: 'off' }, log, 20);
    expect((await settings.current()).session_recording).toBe('off');
  });
});
