import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError,
  autoWorkers,
  buildConfig,
  defaultDataDir,
  loadTeleportConfig,
  parseConfig,
  resolveConfigPath,
  type FileConfig,
} from '../../../runtime/config';
import { configErrorOf, errorLines, tempDirWith, yaml } from './helpers';

const ENV = { HOME: '/home/alice' };
const PIN = 'sha256:' + '7e12c17c20d9cb504bbcb3f0236be3f446861f1396dcbb44425fe28ec1c108f1';
const empty = (): FileConfig => parseConfig('', 'teleport.yaml');

describe('buildConfig: defaults', () => {
  test('GIVEN no file and no flags WHEN built THEN every default of the manual applies', () => {
    const cfg = buildConfig(empty(), { dataDir: '/data' }, ENV);

    expect(cfg.nodeName).toBe(hostname());
    expect(cfg.dataDir).toBe('/data');
    expect(cfg.auth.enabled && cfg.ssh.enabled && cfg.proxy.enabled).toBe(true);
    expect(cfg.auth.listenAddr).toEqual({ host: '0.0.0.0', port: 3025 });
    expect(cfg.ssh.listenAddr).toEqual({ host: '0.0.0.0', port: 3022 });
    expect(cfg.proxy.listenAddr).toEqual({ host: '0.0.0.0', port: 3023 });
    expect(cfg.proxy.tunnelListenAddr).toEqual({ host: '0.0.0.0', port: 3024 });
    expect(cfg.proxy.webListenAddr).toEqual({ host: '0.0.0.0', port: 3080 });
    // auth runs here, so this process talks to its own auth service over loopback
    expect(cfg.authServers).toEqual([{ host: '127.0.0.1', port: 3025 }]);
    expect(cfg.storage).toMatchObject({
      type: 'sqlite',
      path: '/data/backend/sqlite.db',
      auditEventsUri: [],
      auditLogDir: '/data/log',
    });
    expect(cfg.caKeyType).toBe('ed25519');
    expect(cfg.log).toEqual({ output: 'stderr', severity: 'info' });
    expect(cfg.connectionLimits).toEqual({ maxConnections: 15000, maxUsers: 250 });
    expect(cfg.auth.authentication).toEqual({ type: 'local', secondFactor: 'otp' });
    expect(cfg.auth.sessionRecording).toBe('node');
    expect(cfg.auth.proxyChecksHostKeys).toBe(true);
    expect(cfg.auth.keepAliveIntervalMs).toBe(300_000);
    expect(cfg.auth.keepAliveCountMax).toBe(3);
    expect(cfg.ssh.pam).toEqual({ enabled: false, serviceName: 'sshd' });
    expect(cfg.ssh.permitUserEnv).toBe(false);
    expect(cfg.proxy.insecureNoTls).toBe(false);
    expect(cfg.caPins).toEqual([]);
    expect(cfg.warnings).toEqual([]);
    expect(cfg).not.toHaveProperty('authToken');
  });

  test('GIVEN a non-root user and root WHEN asking for the default data_dir THEN it follows the user', () => {
    expect(defaultDataDir({ HOME: '/home/alice' }, 1000)).toBe('/home/alice/.local/share/teleport');
    expect(defaultDataDir({ HOME: '/root' }, 0)).toBe('/var/lib/teleport');
    expect(buildConfig(empty(), {}, ENV).dataDir).toBe(defaultDataDir(ENV));
  });

  test('GIVEN a node-only config without auth_servers WHEN built THEN it dials 127.0.0.1:3025', () => {
    const cfg = buildConfig(empty(), { roles: 'node', dataDir: '/d' }, ENV);
    expect(cfg.authServers).toEqual([{ host: '127.0.0.1', port: 3025 }]);
  });

  test('GIVEN a relative storage.path WHEN built THEN it is resolved against data_dir', () => {
    const file = parseConfig(yaml('teleport:', '  data_dir: /srv/tp', '  storage:', '    path: state'), 't.yaml');
    expect(buildConfig(file, {}, ENV).storage.path).toBe('/srv/tp/state/sqlite.db');
  });

  test('GIVEN the 4.x audit_table_name WHEN built THEN it becomes a dynamodb:// events URI', () => {
    const file = parseConfig(
      yaml('teleport:', '  storage:', '    type: dynamodb', '    region: us-east-1', '    table_name: st', '    audit_table_name: ev'),
      't.yaml',
    );
    expect(buildConfig(file, {}, ENV).storage).toMatchObject({ type: 'dynamodb', tableName: 'st', region: 'us-east-1', auditEventsUri: ['dynamodb://ev'] });
  });
});

describe('buildConfig: flags override the file', () => {
  const FILE = yaml(
    'teleport:',
    '  nodename: from-file',
    '  auth_token: file-token',
    '  auth_servers: [10.0.0.1:3025]',
    'auth_service:',
    '  enabled: no',
    '  listen_addr: 0.0.0.0:4025',
    'ssh_service:',
    '  listen_addr: 0.0.0.0:4022',
    '  labels: {env: file}',
    'proxy_service:',
    '  web_listen_addr: 0.0.0.0:443',
  );

  test('GIVEN enabled: no in the file and no --roles WHEN built THEN only that section is off', () => {
    const cfg = buildConfig(parseConfig(FILE, 't.yaml'), {}, ENV);
    expect([cfg.auth.enabled, cfg.ssh.enabled, cfg.proxy.enabled]).toEqual([false, true, true]);
  });

  test('GIVEN --roles WHEN built THEN exactly the listed services run, whatever the file says', () => {
    const file = parseConfig(FILE, 't.yaml');
    const cfg = buildConfig(file, { roles: 'Auth, proxy' }, ENV);
    expect([cfg.auth.enabled, cfg.ssh.enabled, cfg.proxy.enabled]).toEqual([true, false, true]);
    expect(buildConfig(file, { roles: 'node' }, ENV).proxy.enabled).toBe(false);
  });

  test('GIVEN an unknown or empty --roles WHEN built THEN the flag is named', () => {
    expect(errorLines(() => buildConfig(empty(), { roles: 'node,db' }, ENV))).toEqual([
      '--roles: unknown role "db" (expected auth, node, proxy)',
    ]);
    expect(() => buildConfig(empty(), { roles: ' , ' }, ENV)).toThrow('--roles: no role given');
  });

  test('GIVEN --listen-ip WHEN built THEN every listen address binds to it and keeps its port', () => {
    const cfg = buildConfig(parseConfig(FILE, 't.yaml'), { listenIp: '10.1.2.3' }, ENV);
    expect(cfg.auth.listenAddr).toEqual({ host: '10.1.2.3', port: 4025 });
    expect(cfg.ssh.listenAddr).toEqual({ host: '10.1.2.3', port: 4022 });
    expect(cfg.proxy.listenAddr).toEqual({ host: '10.1.2.3', port: 3023 });
    expect(cfg.proxy.tunnelListenAddr).toEqual({ host: '10.1.2.3', port: 3024 });
    expect(cfg.proxy.webListenAddr).toEqual({ host: '10.1.2.3', port: 443 });
    expect(() => buildConfig(empty(), { listenIp: 'eth0' }, ENV)).toThrow('--listen-ip: expected an IP address, got "eth0"');
  });

  test('GIVEN --listen-ip and a local auth service WHEN built THEN the default auth server is that address', () => {
    expect(buildConfig(empty(), { listenIp: '10.1.2.3' }, ENV).authServers).toEqual([{ host: '10.1.2.3', port: 3025 }]);
  });

  test('GIVEN --auth-server (repeated and comma-separated) WHEN built THEN it replaces auth_servers, port defaulted', () => {
    const cfg = buildConfig(parseConfig(FILE, 't.yaml'), { authServer: ['10.0.10.5', 'a.example.com:443,b.example.com'] }, ENV);
    expect(cfg.authServers).toEqual([
      { host: '10.0.10.5', port: 3025 },
      { host: 'a.example.com', port: 443 },
      { host: 'b.example.com', port: 3025 },
    ]);
    expect(() => buildConfig(empty(), { authServer: ['x:99999'] }, ENV)).toThrow(
      '--auth-server: invalid address "x:99999": port 99999 is out of range',
    );
  });

  test('GIVEN --labels with static labels and commands WHEN built THEN they replace the file labels', () => {
    const cfg = buildConfig(
      parseConfig(FILE, 't.yaml'),
      { labels: 'env=prod,role=db,uptime=[1m:"uptime -p"],kernel=[1h:"uname -r"]' },
      ENV,
    );
    expect(cfg.ssh.labels).toEqual({ env: 'prod', role: 'db' });
    expect(cfg.ssh.commands).toEqual([
      { name: 'uptime', command: ['uptime', '-p'], periodMs: 60_000 },
      { name: 'kernel', command: ['uname', '-r'], periodMs: 3_600_000 },
    ]);
  });

  test('GIVEN the scalar flags WHEN built THEN each overrides its key', () => {
    const cfg = buildConfig(
      parseConfig(FILE, 't.yaml'),
      {
        token: 'flag-token',
        caPin: [PIN.toUpperCase().replace('SHA256', 'sha256')],
        nodeName: 'from-flag',
        advertiseIp: '192.168.1.9',
        permitUserEnv: true,
        pidFile: '/run/teleport.pid',
        debug: true,
        insecureNoTls: true,
      },
      ENV,
    );
    expect(cfg.authToken).toBe('flag-token');
    expect(cfg.caPins).toEqual([PIN]);
    expect(cfg.nodeName).toBe('from-flag');
    expect(cfg.advertiseIp).toBe('192.168.1.9');
    expect(cfg.ssh.permitUserEnv).toBe(true);
    expect(cfg.pidFile).toBe('/run/teleport.pid');
    expect(cfg.log.severity).toBe('debug');
    expect([cfg.debug, cfg.proxy.insecureNoTls]).toEqual([true, true]);
  });

  test('GIVEN several bad flags WHEN built THEN all are reported together', () => {
    const err = configErrorOf(() =>
      buildConfig(empty(), { caPin: ['sha256:abc'], advertiseIp: 'not-an-ip', labels: 'a=[1m:' }, ENV),
    );
    expect(err.message.split('\n')).toEqual([
      '--ca-pin: expected a CA pin "sha256:<64 hex digits>" as printed by "tctl status", got "sha256:abc"',
      '--advertise-ip: expected an IP address, got "not-an-ip"',
      '--labels "a=[1m:": unbalanced "[" and "]"',
    ]);
  });
});

describe('buildConfig: static tokens and token files', () => {
  test('GIVEN inline and file tokens WHEN built THEN roles are lower-cased and files read and trimmed', () => {
    const dir = tempDirWith({ tokenfile: '  s3cr3t-from-file \n' });
    const file = parseConfig(
      yaml('auth_service:', '  tokens:', '  - "Proxy,node:secret-token-value"', `  - "auth:${join(dir, 'tokenfile')}"`, '  - trusted_cluster:tc-token'),
      't.yaml',
    );
    expect(buildConfig(file, {}, ENV).auth.staticTokens).toEqual([
      { roles: ['proxy', 'node'], token: 'secret-token-value' },
      { roles: ['auth'], token: 's3cr3t-from-file' },
      { roles: ['trusted_cluster'], token: 'tc-token' },
    ]);
  });

  test('GIVEN a token file that is missing or empty WHEN built THEN the error points at the entry in the file', () => {
    const dir = tempDirWith({ empty: '\n' });
    const missing = join(dir, 'missing');
    const file = parseConfig(
      yaml('auth_service:', '  tokens:', '  - "node:abc"', `  - "auth:${missing}"`, `  - "proxy:${join(dir, 'empty')}"`),
      'teleport.yaml',
    );
    expect(errorLines(() => buildConfig(file, {}, ENV))).toEqual([
      `teleport.yaml:4:5: auth_service.tokens[1]: cannot read token file "${missing}": no such file (token "auth:${missing}")`,
      `teleport.yaml:5:5: auth_service.tokens[2]: token file "${join(dir, 'empty')}" is empty (token "proxy:${join(dir, 'empty')}")`,
    ]);
  });

  test('GIVEN auth_token and --token naming files WHEN built THEN the token is read from the file', () => {
    const dir = tempDirWith({ token: 'join-me\n' });
    const file = parseConfig(yaml('teleport:', `  auth_token: ${join(dir, 'token')}`), 't.yaml');
    expect(buildConfig(file, {}, ENV).authToken).toBe('join-me');
    expect(buildConfig(empty(), { token: join(dir, 'token') }, ENV).authToken).toBe('join-me');
    expect(() => buildConfig(empty(), { token: join(dir, 'nope') }, ENV)).toThrow(`--token: cannot read token file "${join(dir, 'nope')}"`);
  });
  test('GIVEN auth_token and ca_pin naming files that are missing WHEN built THEN each is named at its line in the file', () => {
    const dir = tempDirWith({});
    const [token, pins] = [join(dir, 'token'), join(dir, 'ca-pin')];
    const file = parseConfig(yaml('teleport:', `  auth_token: ${token}`, '  ca_pin:', `  - ${pins}`), 'teleport.yaml');
    expect(errorLines(() => buildConfig(file, { roles: 'node' }, ENV))).toEqual([
      `teleport.yaml:2:15: teleport.auth_token: cannot read token file "${token}": no such file`,
      `teleport.yaml:4:5: teleport.ca_pin[0]: cannot read CA pin file "${pins}": no such file`,
    ]);
  });
});

describe('buildConfig: checks across keys', () => {
  test('GIVEN a node without local auth and an empty auth_servers list WHEN built THEN the key is named', () => {
    const file = parseConfig(yaml('teleport:', '  auth_servers: []', 'auth_service:', '  enabled: no'), 'teleport.yaml');
    expect(errorLines(() => buildConfig(file, {}, ENV))).toEqual([
      'teleport.yaml:2:17: teleport.auth_servers: is empty, but a node or proxy without a local auth service needs an auth server to join',
    ]);
  });

  test('GIVEN every section disabled WHEN built THEN it is an error', () => {
    const file = parseConfig(yaml('auth_service: {enabled: no}', 'ssh_service: {enabled: no}', 'proxy_service: {enabled: no}'), 'teleport.yaml');
    expect(() => buildConfig(file, {}, ENV)).toThrow(ConfigError);
    expect(() => buildConfig(file, {}, ENV)).toThrow(/every service is disabled/);
  });
});

describe('resolveConfigPath and loadTeleportConfig', () => {
  test('GIVEN --config, TELEPORT_CONFIG or neither WHEN resolving THEN the flag wins, then the env, then the default if present', () => {
    const dir = tempDirWith({ 'a.yaml': '', 'b.yaml': '', 'default.yaml': '' });
    const [a, b, def] = ['a.yaml', 'b.yaml', 'default.yaml'].map((n) => join(dir, n));
    expect(resolveConfigPath(a, { TELEPORT_CONFIG: b }, def)).toBe(a);
    expect(resolveConfigPath(undefined, { TELEPORT_CONFIG: b }, def)).toBe(b);
    expect(resolveConfigPath(undefined, {}, def)).toBe(def);
    expect(resolveConfigPath(undefined, {}, join(dir, 'absent.yaml'))).toBeUndefined();
  });

  test('GIVEN an explicit path that does not exist WHEN resolving THEN it is an error naming its source', () => {
    const dir = tempDirWith();
    expect(() => resolveConfigPath(join(dir, 'x.yaml'), {})).toThrow(`--config: config file "${join(dir, 'x.yaml')}" does not exist`);
    expect(() => resolveConfigPath(undefined, { TELEPORT_CONFIG: join(dir, 'y.yaml') })).toThrow(
      `TELEPORT_CONFIG: config file "${join(dir, 'y.yaml')}" does not exist`,
    );
  });

  test('GIVEN a config file and flags WHEN loading the whole thing THEN the file is read and the flags merged', () => {
    const dir = tempDirWith();
    const path = join(dir, 'teleport.yaml');
    writeFileSync(path, yaml('teleport:', `  data_dir: ${dir}`, '  nodename: n1'));
    const cfg = loadTeleportConfig({ config: path, nodeName: 'n2', roles: 'node' }, ENV);
    expect(cfg.dataDir).toBe(dir);
    expect(cfg.nodeName).toBe('n2');
    expect(cfg.auth.enabled).toBe(false);
  });
});

describe('ssh_service.audit_failure', () => {
  test('GIVEN no value, continue, or an unknown value THEN the node refuses by default, continues when told, and a typo is an error at its line', () => {
    // GIVEN / WHEN built from each
    const of = (...lines: string[]) => buildConfig(parseConfig(yaml(...lines), 'teleport.yaml'), { dataDir: '/data' }, ENV).ssh.auditFailure;
    // THEN
    expect(of('ssh_service:', '  enabled: yes')).toBe('refuse');
    expect(of('ssh_service:', '  audit_failure: continue')).toBe('continue');
    expect(errorLines(() => of('ssh_service:', '  audit_failure: ignore'))).toEqual([
      'teleport.yaml:2:18: ssh_service.audit_failure: expected one of refuse, continue, got "ignore"',
    ]);
  });
});

describe('ssh_service.workers', () => {
  test('GIVEN no value, auto, a count, or a bad value THEN auto is one per core (none on one core, at most 8), a count is taken, and a bad value is an error at its line', () => {
    // GIVEN / WHEN built from each
    const of = (...lines: string[]) => buildConfig(parseConfig(yaml(...lines), 'teleport.yaml'), { dataDir: '/data' }, ENV).ssh.workers;
    // THEN
    expect(of('ssh_service:', '  enabled: yes')).toBe(autoWorkers());
    expect(of('ssh_service:', '  workers: auto')).toBe(autoWorkers());
    expect(of('ssh_service:', '  workers: 0')).toBe(0);
    expect(of('ssh_service:', '  workers: 3')).toBe(3);
    expect([autoWorkers(1), autoWorkers(2), autoWorkers(6), autoWorkers(64)]).toEqual([0, 2, 6, 8]);
    expect(errorLines(() => of('ssh_service:', '  workers: 65'))).toEqual(['teleport.yaml:2:12: ssh_service.workers: expected a number of worker processes from 0 to 64 or auto, got "65"']);
    expect(errorLines(() => of('ssh_service:', '  workers: many'))).toEqual(['teleport.yaml:2:12: ssh_service.workers: expected a number of worker processes from 0 to 64 or auto, got "many"']);
  });
});
