/**
 * `teleport.diag_addr` and `--diag-addr`: off by default, the flag over the file, a port always
 * named, and never a port one of the services listens on.
 */
import { buildConfig, parseConfig } from '../../../runtime/config';
import { plannedListeners, portConflicts } from '../../../runtime/service/listen';
import { freePort } from '../../helpers/proc';
import { errorLines, yaml } from './helpers';

const ENV = { HOME: '/home/alice' };

describe('diagnostics address', () => {
  test('GIVEN no diag_addr and no --diag-addr WHEN built THEN there is no diagnostics endpoint', () => {
    // WHEN
    const cfg = buildConfig(parseConfig('', 'teleport.yaml'), { dataDir: '/d' }, ENV);
    // THEN
    expect(cfg.diagAddr).toBeUndefined();
    expect(plannedListeners(cfg).map((l) => l.name)).not.toContain('diag');
  });

  test('GIVEN teleport.diag_addr WHEN built THEN it is the address; --diag-addr overrides it', () => {
    // GIVEN
    const file = parseConfig(yaml('teleport:', '  diag_addr: 127.0.0.1:3000'), 'teleport.yaml');
    // WHEN / THEN
    expect(buildConfig(file, { dataDir: '/d' }, ENV).diagAddr).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(buildConfig(file, { dataDir: '/d', diagAddr: '[::1]:3001' }, ENV).diagAddr).toEqual({ host: '::1', port: 3001 });
  });

  test('GIVEN an address without a port WHEN parsed or built THEN it is refused at its line, or at the flag', () => {
    // WHEN / THEN
    expect(() => parseConfig(yaml('teleport:', '  diag_addr: 127.0.0.1'), 'teleport.yaml')).toThrow(
      /^teleport\.yaml:2:14: teleport\.diag_addr: .*missing port; expected host:port/,
    );
    expect(errorLines(() => buildConfig(parseConfig('', 'teleport.yaml'), { dataDir: '/d', diagAddr: 'localhost' }, ENV))).toEqual([
      '--diag-addr: invalid address "localhost": missing port; expected host:port',
    ]);
    expect(errorLines(() => buildConfig(parseConfig('', 'teleport.yaml'), { dataDir: '/d', diagAddr: 'http://127.0.0.1:3000' }, ENV))).toEqual([
      '--diag-addr: invalid address "http://127.0.0.1:3000": expected host:port, not a URL',
    ]);
  });

  test("GIVEN diag_addr on the proxy's web port WHEN the ports are checked before start THEN it is refused naming both settings", async () => {
    // GIVEN
    const web = await freePort();
    const file = parseConfig(yaml('proxy_service:', `  web_listen_addr: 127.0.0.1:${web}`, `  listen_addr: 127.0.0.1:${await freePort()}`), 'teleport.yaml');
    const cfg = buildConfig(file, { dataDir: '/d', roles: 'proxy', diagAddr: `0.0.0.0:${web}` }, ENV);
    // WHEN / THEN
    expect(portConflicts(plannedListeners(cfg))).toEqual([
      {
        name: 'diag',
        message: `the diagnostics endpoint cannot listen on 0.0.0.0:${web} (teleport.diag_addr): the proxy's web service wants port ${web} too (proxy_service.web_listen_addr)`,
      },
    ]);
  });
});
