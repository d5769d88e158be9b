/**
 * The backend module's public face: the contract, the implementations, and `openBackend`, which
 * turns the `storage` section of the configuration into a running backend.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadParameterError } from '../utils/errors';
import { MemoryBackend } from './memory';
import { SqliteBackend } from './sqlite';
import type { Backend } from './types';

export * from './types';
export { systemClock } from './clock';
export type { Clock } from './clock';
export { Fanout, DEFAULT_QUEUE_SIZE } from './fanout';
export { MemoryBackend } from './memory';
export type { MemoryBackendOptions } from './memory';
export { SqliteBackend, DEFAULT_POLL_PERIOD_MS, EVENTS_TTL_MS } from './sqlite';
export type { SqliteBackendOptions } from './sqlite';
// etcd and DynamoDB load their client libraries (gRPC, the AWS SDK) only when opened, so that tctl, tsh
// and SQLite clusters start without them: import them from './etcd' and './dynamodb' directly.
export type { EtcdBackendOptions } from './etcd';
export type { DynamoBackendOptions } from './dynamodb';
export { checkBound, checkExpires, checkItem, checkKey, checkLimit, checkSwap } from './validate';

/** The database file inside a `dir` backend's directory (Teleport's lite backend layout). */
export const SQLITE_FILE_NAME = 'sqlite.db';

export interface BackendConfig {
  /**
   * `sqlite`: `path` is the database file (if it names an existing directory, the file is
   * `<path>/sqlite.db`). `dir`: `path` is a directory holding `sqlite.db`, as in Teleport.
   * `memory`: nothing is persisted.
   */
  type: 'sqlite' | 'dir' | 'memory' | 'etcd' | 'dynamodb';
  path?: string;
  /** @default 500 */
  pollPeriodMs?: number;
  /** etcd: client URLs of the members (`storage.peers`). */
  peers?: string[];
  /** etcd: key prefix. @default '/teleport' */
  prefix?: string;
  /** etcd: client certificate, its key, and the CA of the etcd servers (PEM files). */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsCaFile?: string;
  /** etcd: skip certificate verification (refused by the etcd backend). */
  insecure?: boolean;
  /** dynamodb: the table (`storage.table_name`); the other fields are `storage.*` (see dynamodb.ts). */
  tableName?: string;
  region?: string;
  endpoint?: string;
  accessKey?: string;
  secretKey?: string;
  billingMode?: 'pay_per_request' | 'provisioned';
  readCapacityUnits?: number;
  writeCapacityUnits?: number;
  continuousBackups?: boolean;
}

export async function openBackend(cfg: BackendConfig): Promise<Backend> {
  switch (cfg.type) {
    case 'memory':
      return new MemoryBackend();
    case 'sqlite':
    case 'dir': {
      if (!cfg.path) throw new BadParameterError(`storage type ${cfg.type} needs a path`);
      const file = cfg.type === 'dir' || isDirectory(cfg.path) ? path.join(cfg.path, SQLITE_FILE_NAME) : cfg.path;
      return SqliteBackend.open({ path: file, pollPeriodMs: cfg.pollPeriodMs });
    }
    case 'etcd': {
      const { EtcdBackend } = await import('./etcd');
      return EtcdBackend.open({
        peers: cfg.peers ?? [],
        ...(cfg.prefix !== undefined ? { prefix: cfg.prefix } : {}),
        tlsCertFile: cfg.tlsCertFile,
        tlsKeyFile: cfg.tlsKeyFile,
        tlsCaFile: cfg.tlsCaFile,
        insecure: cfg.insecure,
      });
    }
    case 'dynamodb': {
      if (!cfg.tableName) throw new BadParameterError('storage type dynamodb needs table_name');
      const { DynamoBackend } = await import('./dynamodb');
      return DynamoBackend.open({
        tableName: cfg.tableName,
        region: cfg.region,
        endpoint: cfg.endpoint,
        accessKey: cfg.accessKey,
        secretKey: cfg.secretKey,
        billingMode: cfg.billingMode,
        readCapacityUnits: cfg.readCapacityUnits,
        writeCapacityUnits: cfg.writeCapacityUnits,
        continuousBackups: cfg.continuousBackups,
        pollPeriodMs: cfg.pollPeriodMs,
      });
    }
    default:
      throw new BadParameterError(
        `storage type ${JSON.stringify((cfg as { type: unknown }).type)} is not supported (want sqlite, dir, memory, etcd or dynamodb)`,
      );
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
