/** ssh_service / proxy_service login_grace_time, max_startups and per_source_max_startups. */
import { buildConfig, parseConfig } from '../../../runtime/config';
import { configErrorOf, yaml } from './helpers';

const ENV = { HOME: '/home/alice' };
const SSHD_DEFAULT = { start: 10, rate: 30, full: 100 };

describe('pre-authentication limits in teleport.yaml', () => {
  test('GIVEN no keys WHEN built THEN the node has sshd defaults (120s, 10:30:100) and the proxy keeps 30s', () => {
    // GIVEN an empty file WHEN built
    const cfg = buildConfig(parseConfig('', 't.yaml'), { dataDir: '/data' }, ENV);
    // THEN
    expect(cfg.ssh.preAuth).toEqual({ loginGraceMs: 120_000, maxStartups: SSHD_DEFAULT });
    expect(cfg.proxy.preAuth).toEqual({ loginGraceMs: 30_000, maxStartups: SSHD_DEFAULT }); // no per-source limit unless set, as sshd
  });

  test('GIVEN the keys on both services WHEN built THEN each service gets its own values', () => {
    // GIVEN
    const file = parseConfig(
      yaml(
        'ssh_service:',
        '  login_grace_time: 2s',
        '  max_startups: 5:50:20',
        '  per_source_max_startups: "3"',
        'proxy_service:',
        '  login_grace_time: 0s',
        '  max_startups: 100:10:200',
      ),
      't.yaml',
    );
    // WHEN
    const cfg = buildConfig(file, { dataDir: '/data' }, ENV);
    // THEN
    expect(cfg.ssh.preAuth).toEqual({ loginGraceMs: 2000, maxStartups: { start: 5, rate: 50, full: 20 }, perSourceMaxStartups: { start: 3, rate: 100, full: 3 } });
    expect(cfg.proxy.preAuth).toEqual({ loginGraceMs: 0, maxStartups: { start: 100, rate: 10, full: 200 } });
  });

  test.each([
    ['ssh_service', 'login_grace_time', 'soon', /t\.yaml:2:21: ssh_service\.login_grace_time: .*duration/],
    ['ssh_service', 'login_grace_time', '-5s', /t\.yaml:2:21: ssh_service\.login_grace_time: .*zero or more/],
    ['ssh_service', 'max_startups', '10:30', /t\.yaml:2:17: ssh_service\.max_startups: .*three numbers/],
    ['proxy_service', 'max_startups', '10:0:100', /t\.yaml:2:17: proxy_service\.max_startups: .*rate is a percentage/],
    ['proxy_service', 'per_source_max_startups', '"20:30:10"', /t\.yaml:2:28: proxy_service\.per_source_max_startups: .*full must not be less than start/],
    ['ssh_service', 'per_source_max_startups', '"0"', /t\.yaml:2:28: ssh_service\.per_source_max_startups: .*start must be at least 1/],
  ])('GIVEN %s.%s: %s WHEN parsed THEN it is refused with file:line:col and the key', (section, key, value, message) => {
    // GIVEN / WHEN
    const err = configErrorOf(() => parseConfig(yaml(`${section}:`, `  ${key}: ${value}`), 't.yaml'));
    // THEN
    expect(err.message).toMatch(message);
  });
});
