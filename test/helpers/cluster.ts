/**
 * A cluster for tests in one call: `teleport start` as a real process on
 * loopback ports with its own config and data dir, and `tctl` bound to it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cliPath, Daemon, freePort, runCli, RunResult, tempDir } from './proc';

export interface TestAuthOptions {
  clusterName?: string;
  caKeyType?: 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa';
  /** Share a storage directory between auth servers. */
  storagePath?: string;
  /** `auth_service.tokens` entries. */
  tokens?: string[];
  /** Start later with `start()` (to race several servers). */
  deferStart?: boolean;
}

export class TestAuth {
  daemon?: Daemon;

  constructor(
    readonly dir: string,
    readonly configPath: string,
    readonly dataDir: string,
    readonly port: number,
  ) {}

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  start(): Daemon {
    this.daemon = Daemon.spawn(process.execPath, [cliPath('teleport'), 'start', '--roles=auth', '-c', this.configPath]);
    return this.daemon;
  }

  async ready(): Promise<void> {
    await this.daemon!.waitForOutput(/auth service is listening/);
  }

  /** Runs tctl against this auth server. */
  tctl(...args: string[]): Promise<RunResult> {
    return runCli('tctl', ['-c', this.configPath, ...args]);
  }

  /** Runs tctl and fails the test with its output unless it exits 0. */
  async tctlOk(...args: string[]): Promise<string> {
    const r = await this.tctl(...args);
    if (r.code !== 0) throw new Error(`tctl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function createAuth(opts: TestAuthOptions = {}): Promise<TestAuth> {
  const dir = tempDir('auth-');
  const dataDir = path.join(dir, 'data');
  const port = await freePort();
  const lines = [
    'teleport:',
    `  data_dir: ${dataDir}`,
    '  nodename: test-auth',
    '  log:',
    '    severity: INFO',
    ...(opts.storagePath ? ['  storage:', '    type: dir', `    path: ${opts.storagePath}`] : []),
    'auth_service:',
    '  enabled: yes',
    `  listen_addr: 127.0.0.1:${port}`,
    `  cluster_name: ${opts.clusterName ?? 'example.com'}`,
    ...(opts.caKeyType ? [`  ca_key_type: ${opts.caKeyType}`] : []),
    ...(opts.tokens?.length ? ['  tokens:', ...opts.tokens.map((t) => `    - "${t}"`)] : []),
    'ssh_service:',
    '  enabled: no',
    'proxy_service:',
    '  enabled: no',
  ];
  const configPath = path.join(dir, 'teleport.yaml');
  fs.writeFileSync(configPath, lines.join('\n') + '\n');
  return new TestAuth(dir, configPath, dataDir, port);
}

/** Creates and starts an auth server, ready to serve. */
export async function startAuth(opts: TestAuthOptions = {}): Promise<TestAuth> {
  const a = await createAuth(opts);
  a.start();
  await a.ready();
  return a;
}
