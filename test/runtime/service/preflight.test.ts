/**
 * The start-up checks of `teleport start` (runtime/service/preflight.ts), in
 * process on configs parsed from YAML: every problem is listed at its
 * setting's `file:line:col`, files are only checked for the services that use
 * them, and ports are only bound once the config itself is good.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { buildConfig, ConfigError, parseConfig } from '../../../runtime/config';
import { preflight, preflightPorts } from '../../../runtime/service/preflight';
import { selfSignedServerCert } from '../../../runtime/tlsca';
import { freePort, tempDir } from '../../helpers/proc';

const ENV = { HOME: '/home/alice' };

/** The lines of the ConfigError preflight throws, or [] when it passes. */
async function problems(yaml: string[], flags: { insecureNoTls?: boolean; roles?: string } = {}): Promise<string[]> {
  const config = buildConfig(parseConfig(yaml.join('\n') + '\n', 't.yaml'), { dataDir: '/nonexistent/data', ...flags }, ENV);
  try {
    await preflight(config);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message.split('\n');
  }
}

describe('start-up checks', () => {
  let dir: string;
  let pair: { key: string; cert: string };
  let ports: { auth: number; ssh: number; web: number; node: number; tunnel: number };
  beforeAll(async () => {
    dir = tempDir('preflight-');
    const kp = await selfSignedServerCert(['proxy.example.com']);
    pair = { key: path.join(dir, 'key.pem'), cert: path.join(dir, 'cert.pem') };
    fs.writeFileSync(pair.key, kp.key, { mode: 0o600 });
    fs.writeFileSync(pair.cert, kp.cert);
    ports = { auth: await freePort(), ssh: await freePort(), web: await freePort(), node: await freePort(), tunnel: await freePort() };
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const listeners = () => [
    'auth_service:',
    `  listen_addr: 127.0.0.1:${ports.auth}`,
    'ssh_service:',
    `  listen_addr: 127.0.0.1:${ports.node}`,
    'proxy_service:',
    `  listen_addr: 127.0.0.1:${ports.ssh}`,
    `  web_listen_addr: 127.0.0.1:${ports.web}`,
    `  tunnel_listen_addr: 127.0.0.1:${ports.tunnel}`,
  ];

  it('GIVEN https_key_file and https_keypairs WHEN files are missing THEN each is named at its own key, the list entries counted from 0', async () => {
    const missing = path.join(dir, 'missing.pem');
    const found = await problems([
      ...listeners(), //                         1-8
      `  https_key_file: ${pair.key}`, //        9
      `  https_cert_file: ${missing}`, //       10
      '  https_keypairs:', //                   11
      `  - key_file: ${pair.key}`, //           12
      `    cert_file: ${pair.cert}`, //         13
      `  - key_file: ${missing}`, //            14
      `    cert_file: ${pair.cert}`, //         15
    ]);
    expect(found).toEqual([
      `t.yaml:10:20: proxy_service.https_cert_file: cannot read the cert_file "${missing}": no such file`,
      `t.yaml:14:15: proxy_service.https_keypairs[1].key_file: cannot read the key_file "${missing}": no such file`,
    ]);
  });

  it('GIVEN a good pair WHEN checked THEN it passes; GIVEN no proxy, or a proxy without TLS, WHEN its files are missing THEN they are not checked', async () => {
    expect(await problems([...listeners(), '  https_keypairs:', `  - key_file: ${pair.key}`, `    cert_file: ${pair.cert}`])).toEqual([]);
    const broken = [...listeners(), '  https_keypairs:', '  - key_file: /nonexistent/k.pem', '    cert_file: /nonexistent/c.pem'];
    expect(await problems(broken)).toEqual(['t.yaml:10:15: proxy_service.https_keypairs[0].key_file: cannot read the key_file "/nonexistent/k.pem": no such file']);
    expect(await problems(broken, { roles: 'auth,node' })).toEqual([]);
    expect(await problems(broken, { insecureNoTls: true })).toEqual([]);
  });

  it('GIVEN etcd storage WHEN its TLS files are missing THEN each is named at its line; GIVEN no auth service THEN they are not checked', async () => {
    const yaml = [
      'teleport:', //                                  1
      '  storage:', //                                 2
      '    type: etcd', //                             3
      '    peers: [https://127.0.0.1:2379]', //       4
      `    tls_cert_file: ${pair.cert}`, //            5
      '    tls_key_file: /nonexistent/etcd-key.pem', // 6
      `    tls_ca_file: ${dir}`, //                    7
      ...listeners(),
    ];
    expect(await problems(yaml)).toEqual([
      't.yaml:6:19: teleport.storage.tls_key_file: cannot read "/nonexistent/etcd-key.pem": no such file',
      `t.yaml:7:18: teleport.storage.tls_ca_file: cannot read "${dir}": not a file`,
    ]);
    expect((await problems(yaml, { roles: 'node,proxy' })).filter((l) => l.includes('storage'))).toEqual([]);
  });

  it('GIVEN two services on one port and another port taken WHEN checked THEN only the conflict is named (nothing is bound for a config that is wrong in itself); once it is fixed, the taken port is', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(ports.web, '127.0.0.1', resolve));
    try {
      const clash = [
        'auth_service:', //                               1
        `  listen_addr: 127.0.0.1:${ports.auth}`, //      2
        'ssh_service:', //                                3
        `  listen_addr: 0.0.0.0:${ports.auth}`, //        4
        'proxy_service:',
        `  listen_addr: 127.0.0.1:${ports.ssh}`,
        `  web_listen_addr: 127.0.0.1:${ports.web}`, //   7
      ];
      expect(await problems(clash)).toEqual([
        `t.yaml:4:16: the node service (SSH) cannot listen on 0.0.0.0:${ports.auth} (ssh_service.listen_addr): the auth service wants port ${ports.auth} too (auth_service.listen_addr)`,
      ]);
      expect(await problems(listeners())).toEqual([
        `t.yaml:7:20: the proxy's web service cannot listen on 127.0.0.1:${ports.web} (proxy_service.web_listen_addr): port ${ports.web} is already in use (is another teleport running? stop it, or set another port in proxy_service.web_listen_addr)`,
      ]);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
    // THEN the ports it bound to check are free again.
    expect(await problems(listeners())).toEqual([]);
  });

  it('GIVEN a pid file in a directory that does not exist, or that is a directory WHEN checked THEN it is named; in an existing directory it passes', async () => {
    const nowhere = path.join(dir, 'no-such-dir', 'teleport.pid');
    expect(await problems(['teleport:', `  pid_file: ${nowhere}`, ...listeners()])).toEqual([
      `teleport.pid_file (or --pid-file): cannot write the pid file "${nowhere}": no such directory ${path.dirname(nowhere)}`,
    ]);
    expect(await problems(['teleport:', `  pid_file: ${dir}`, ...listeners()])).toEqual([`teleport.pid_file (or --pid-file): cannot write the pid file "${dir}": not a file`]);
    expect(await problems(['teleport:', `  pid_file: ${path.join(dir, 'teleport.pid')}`, ...listeners()])).toEqual([]);
  });

  it('GIVEN a node without a local auth service, a token or a stored identity WHEN checked THEN it is told how to join; with a token it passes', async () => {
    const nodeOnly = ['teleport:', '  auth_servers: [127.0.0.1:3025]', ...listeners()];
    expect(await problems(nodeOnly, { roles: 'node' })).toEqual(['this node has not joined a cluster yet: start it with --token (see `tctl nodes add`) and --ca-pin']);
    expect(await problems(nodeOnly, { roles: 'proxy' })).toEqual(['this proxy has not joined a cluster yet: start it with --token (see `tctl nodes add`) and --ca-pin']);
    expect(await problems(['teleport:', '  auth_token: join-me', '  auth_servers: [127.0.0.1:3025]', ...listeners()], { roles: 'node' })).toEqual([]);
  });

  it('GIVEN a node alone whose SSH port is taken WHEN that port is deferred (it may be behind NAT) THEN preflight passes, and preflightPorts names it at its line', async () => {
    // GIVEN
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(ports.node, '127.0.0.1', resolve));
    try {
      const yaml = ['teleport:', '  auth_token: join-me', '  auth_servers: [127.0.0.1:3025]', ...listeners()].join('\n') + '\n';
      const config = buildConfig(parseConfig(yaml, 't.yaml'), { dataDir: '/nonexistent/data', roles: 'node' }, ENV);
      const taken = `t.yaml:7:16: the node service (SSH) cannot listen on 127.0.0.1:${ports.node} (ssh_service.listen_addr): port ${ports.node} is already in use`;
      // WHEN / THEN the whole check names it; with the node's port deferred it passes
      await expect(preflight(config)).rejects.toThrow(taken);
      await expect(preflight(config, ['node'])).resolves.toBeUndefined();
      // WHEN / THEN the deferred check names it, and only the ports it is asked about
      await expect(preflightPorts(config, ['node'])).rejects.toThrow(taken);
      await expect(preflightPorts(config, ['auth'])).resolves.toBeUndefined();
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
