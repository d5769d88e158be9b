/**
 * DynamoDB Local for tests: the jar that the `amplify-dynamodb-simulator` dev dependency ships,
 * run directly with java on a free loopback port. Ready when ListTables answers. `-inMemory` by
 * default; with `dbPath` the data (tables, items, streams) survives `restart()`.
 */

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AttributeValue, DescribeTableCommand, DynamoDBClient, ListTablesCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, _Record } from '@aws-sdk/client-dynamodb-streams';
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

/** Every record of a table's stream so far, oldest first (each shard from its trim horizon to its end), as the SDK returns them. */
export async function readStream(local: DynamoDbLocal, table: string): Promise<{ streamArn: string; records: _Record[] }> {
  const db = local.client();
  const streams = new DynamoDBStreamsClient({ endpoint: local.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 2 });
  try {
    const streamArn = (await db.send(new DescribeTableCommand({ TableName: table }))).Table?.LatestStreamArn;
    if (!streamArn) throw new Error(`table ${table} has no stream`);
    const shards = (await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }))).StreamDescription?.Shards ?? [];
    const records: _Record[] = [];
    for (const shard of shards) {
      let iterator = (await streams.send(new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
      while (iterator) {
        const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
        records.push(...(page.Records ?? []));
        // An open shard hands out an iterator forever: its end, for now, is the first empty page.
        iterator = page.Records?.length ? page.NextShardIterator : undefined;
      }
    }
    return { streamArn, records };
  } finally {
    db.destroy();
    streams.destroy();
  }
}

/** A value in the JSON a Lambda function receives: binary as base64, times as epoch seconds. */
function lambdaJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v instanceof Date) return v.getTime() / 1000;
  if (Array.isArray(v)) return v.map(lambdaJson);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, lambdaJson(x)]));
  return v;
}

/** The event Lambda's event source mapping builds from stream records: `{ Records }`, each with its `eventSourceARN`. */
export function lambdaStreamEvent(records: _Record[], streamArn: string): { Records: Record<string, any>[] } {
  return { Records: records.map((r) => ({ ...(lambdaJson(r) as Record<string, any>), eventSourceARN: streamArn })) };
}

/**
 * Whether a Lambda event filter pattern (`FilterCriteria.Filters[].Pattern`) matches a record: each
 * key of the pattern must match, an array lists the accepted values (exact, or `{ prefix }`).
 * Any other operator is refused, so a filter this cannot evaluate fails the test instead of passing it.
 */
export function matchesFilter(pattern: Record<string, unknown>, record: unknown): boolean {
  return Object.entries(pattern).every(([k, want]) => {
    const got = (record as Record<string, unknown> | undefined)?.[k];
    if (Array.isArray(want)) {
      return want.some((w) => {
        if (typeof w !== 'object' || w === null) return got === w;
        const ops = Object.keys(w);
        if (ops.length === 1 && ops[0] === 'prefix') return typeof got === 'string' && got.startsWith((w as { prefix: string }).prefix);
        throw new Error(`filter operator not evaluated here: ${JSON.stringify(w)}`);
      });
    }
    if (want && typeof want === 'object') return matchesFilter(want as Record<string, unknown>, got);
    throw new Error(`not a filter pattern value: ${JSON.stringify(want)}`);
  });
}
