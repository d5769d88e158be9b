/**
 * DynamoDB Local as a child process: the jar that the `amplify-dynamodb-simulator` package ships,
 * run directly with java on a free port. Ready when ListTables answers. `-inMemory` by default;
 * with `dbPath` the data (tables, items, streams) survives `restart()`. With `sharedDb` every
 * access key and region sees the same tables (DynamoDB Local otherwise keeps one database per
 * key and region): the local deployment's gateway forwards every caller's requests to it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { Daemon, freePort, waitFor } from '../process';

export const DYNAMODB_LOCAL_DIR = path.join(path.dirname(require.resolve('amplify-dynamodb-simulator/package.json')), 'emulator');

/** Any non-empty credentials work with DynamoDB Local. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;
export const LOCAL_REGION = 'us-east-1';

export interface DynamoDbLocalOptions {
  /** Keep the data in this directory (created if missing) instead of in memory. */
  dbPath?: string;
  /** One database for every access key and region (`-sharedDb`). */
  sharedDb?: boolean;
  /** The address to listen on. @default 127.0.0.1 */
  host?: string;
  /** How long to wait for the first ListTables answer. @default 60000 */
  readyTimeoutMs?: number;
}

/** DynamoDB Local exited before it answered. */
export class DynamoDbLocalError extends Error {
  override readonly name = 'DynamoDbLocalError';
}

export class DynamoDbLocal {
  private daemon?: Daemon;
  /** The JVM's working directory: DynamoDB Local writes a metadata file there. */
  private readonly workDir: string;

  private constructor(
    readonly port: number,
    private readonly opts: DynamoDbLocalOptions,
  ) {
    this.workDir = opts.dbPath ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dynamodb-local-'));
  }

  /** Starts DynamoDB Local on a free port and waits until it answers. */
  static async start(opts: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
    const jar = path.join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal.jar');
    if (!fs.existsSync(jar)) throw new DynamoDbLocalError(`${jar} is missing: run "npm ci" (amplify-dynamodb-simulator ships it)`);
    if (opts.dbPath) fs.mkdirSync(opts.dbPath, { recursive: true });
    const local = new DynamoDbLocal(await freePort(opts.host), opts);
    try {
      await local.launch();
    } catch (err) {
      await local.stop();
      throw err;
    }
    return local;
  }

  get endpoint(): string {
    return `http://${this.opts.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** A client for the emulator, to set up or inspect tables directly. */
  client(): DynamoDBClient {
    return new DynamoDBClient({ endpoint: this.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 2 });
  }

  /** Stops the JVM (SIGTERM, then SIGKILL after 10 s) and removes its in-memory working directory. Harmless when already stopped. */
  async stop(): Promise<void> {
    await this.halt();
    if (!this.opts.dbPath) fs.rmSync(this.workDir, { recursive: true, force: true });
  }

  private async halt(): Promise<void> {
    const daemon = this.daemon;
    this.daemon = undefined;
    if (!daemon) return;
    const killer = setTimeout(() => daemon.child.kill('SIGKILL'), 10_000);
    try {
      await daemon.stop('SIGTERM');
    } finally {
      clearTimeout(killer);
    }
  }

  /** Stops and starts the emulator again on the same port (with `dbPath`, the data is kept). */
  async restart(): Promise<void> {
    await this.halt();
    await this.launch();
  }

  private async launch(): Promise<void> {
    const storage = this.opts.dbPath ? ['-dbPath', this.opts.dbPath] : ['-inMemory'];
    fs.mkdirSync(this.workDir, { recursive: true });
    const args = [
      '-Xmx256m',
      `-Djava.library.path=${path.join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal_lib')}`,
      '-jar',
      path.join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal.jar'),
      ...storage,
      ...(this.opts.sharedDb ? ['-sharedDb'] : []),
      '-disableTelemetry',
      '-port',
      String(this.port),
    ];
    const daemon = new Daemon(spawn('java', args, { cwd: this.workDir, stdio: ['ignore', 'pipe', 'pipe'] }));
    this.daemon = daemon;
    let exitCode: number | null | undefined;
    void daemon.exited.then((code) => (exitCode = code));
    // java missing: spawn fails without an exit event.
    daemon.child.on('error', (err) => {
      exitCode = null;
      daemon.stderr += `${err.message} (is Java installed?)`;
    });
    const client = this.client();
    try {
      const state = await waitFor(
        `DynamoDB Local on port ${this.port} to answer ListTables`,
        async () => {
          if (exitCode !== undefined) return 'exited';
          await client.send(new ListTablesCommand({}));
          return 'ready';
        },
        this.opts.readyTimeoutMs ?? 60_000,
      );
      if (state === 'exited') throw new DynamoDbLocalError(`DynamoDB Local exited with ${exitCode} before it was ready:\n${daemon.stdout}${daemon.stderr}`);
    } catch (err) {
      await this.halt();
      throw err;
    } finally {
      client.destroy();
    }
  }
}
