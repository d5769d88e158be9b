/**
 * DynamoDB Local for tests: the jar that the `amplify-dynamodb-simulator` dev dependency ships,
 * run directly with java on a free loopback port. Ready when ListTables answers. `-inMemory` by
 * default; with `dbPath` the data (tables, items, streams) survives `restart()`.
 */

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AttributeValue, DynamoDBClient, ListTablesCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { Daemon, freePort, ROOT, tempDir, waitFor } from './proc';

export const DYNAMODB_LOCAL_DIR = path.join(ROOT, 'node_modules', 'amplify-dynamodb-simulator', 'emulator');

/** Any non-empty credentials work with DynamoDB Local; the real chain is not consulted in tests. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;
export const LOCAL_REGION = 'us-east-1';

export interface DynamoDbLocalOptions {
  /** Keep the data in this directory (created if missing) instead of in memory. */
  dbPath?: string;
  /** How long to wait for the first ListTables answer. @default 60000 */
  readyTimeoutMs?: number;
}

export class DynamoDbLocal {
  private daemon?: Daemon;
  /** The JVM's working directory: DynamoDB Local writes a metadata file there. */
  private readonly workDir: string;

  private constructor(
    readonly port: number,
    private readonly opts: DynamoDbLocalOptions,
  ) {
    this.workDir = opts.dbPath ?? tempDir('dynamodb-local-');
  }

  /** Starts DynamoDB Local on a free port and waits until it answers. */
  static async start(opts: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
    const jar = path.join(DYNAMODB_LOCAL_DIR, 'DynamoDBLocal.jar');
    if (!fs.existsSync(jar)) throw new Error(`${jar} is missing: run "npm ci" (amplify-dynamodb-simulator ships it)`);
    if (opts.dbPath) fs.mkdirSync(opts.dbPath, { recursive: true });
    const local = new DynamoDbLocal(await freePort(), opts);
    try {
      await local.launch();
    } catch (err) {
      await local.stop();
      throw err;
    }
    return local;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A client for the emulator, for tests that set up or inspect tables directly. */
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
      await waitFor(
        `DynamoDB Local on port ${this.port} to answer ListTables`,
        async () => {
          if (exitCode !== undefined) return 'exited';
          await client.send(new ListTablesCommand({}));
          return 'ready';
        },
        this.opts.readyTimeoutMs ?? 60_000,
      ).then((state) => {
        if (state === 'exited') {
          throw new Error(`DynamoDB Local exited with ${exitCode} before it was ready:\n${daemon.stdout}${daemon.stderr}`);
        }
      });
    } catch (err) {
      await this.halt();
      throw err;
    } finally {
      client.destroy();
    }
  }
}

/** Every item of a table, binary attributes as UTF-8 text: for tests that look for what must not be stored. */
export async function scanTable(local: DynamoDbLocal, table: string): Promise<Record<string, string>[]> {
  const client = local.client();
  const text = (v: AttributeValue): string => (v.B ? Buffer.from(v.B).toString('utf8') : v.S ?? v.N ?? JSON.stringify(v));
  try {
    const items: Record<string, string>[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const out = await client.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }));
      for (const item of out.Items ?? []) items.push(Object.fromEntries(Object.entries(item).map(([k, v]) => [k, text(v)])));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  } finally {
    client.destroy();
  }
}
