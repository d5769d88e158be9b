/**
 * The auth service's storage, as the `storage` section names it: the cluster
 * state (SQLite in the data dir, etcd, or DynamoDB) behind a read cache of
 * the resources every request touches, so that no request path queries the
 * store for them; the audit log(s) of `audit_events_uri`; and the session
 * recordings of `audit_sessions_uri`.
 */
import * as path from 'node:path';
import { Backend, openBackend } from '../backend';
import { CachedBackend } from '../backend/cache';
import { StorageConfig, TeleportConfig } from '../config';
import { FileRecordingStore, RecordingStore } from '../recordings/store';
import { key, Keys } from '../contract/keys';
import { AuditLog, FileAuditLog } from '../events/filelog';
import { MultiAuditLog } from '../events/multi';
import { BadParameterError, NotFoundError } from '../utils/errors';
import { answers } from '../instance/readiness';
import { InstrumentedBackend } from '../backend/instrumented';
import { Logger } from '../utils/logger';

/** CAs, cluster settings, roles, users, join and sign-up tokens, and the presence of nodes, proxies and auth servers. */
export const CACHED_PREFIXES = [
  key('authorities') + '/',
  key('cluster_configuration') + '/',
  key('authentication') + '/',
  Keys.roles(),
  Keys.users(),
  Keys.tokens(),
  Keys.signupTokens(),
  key('nodes') + '/',
  Keys.proxies(),
  Keys.authServers(),
  Keys.clusterTrusts(),
];

function openStore(s: StorageConfig): Promise<Backend> {
  switch (s.type) {
    case 'etcd':
      return openBackend({ type: 'etcd', peers: s.peers, prefix: s.prefix, tlsCertFile: s.tlsCertFile, tlsKeyFile: s.tlsKeyFile, tlsCaFile: s.tlsCaFile, insecure: s.insecure });
    case 'dynamodb':
      return openBackend({
        type: 'dynamodb',
        tableName: s.tableName,
        region: s.region,
        endpoint: s.endpoint,
        accessKey: s.accessKey,
        secretKey: s.secretKey,
        billingMode: s.billingMode,
        readCapacityUnits: s.readCapacityUnits,
        writeCapacityUnits: s.writeCapacityUnits,
        continuousBackups: s.continuousBackups,
        pollPeriodMs: s.pollStreamPeriodMs,
      });
    default:
      return openBackend({ type: 'sqlite', path: s.path, ...(s.pollStreamPeriodMs ? { pollPeriodMs: s.pollStreamPeriodMs } : {}) });
  }
}

/** A key no resource lives under: reading it asks the store for an answer without touching state. */
const PROBE_KEY = key('readiness-probe');

export interface ClusterStorage {
  /** The store behind its read cache; every request to the store is counted in the backend metrics. */
  readonly backend: Backend;
  /** Whether the store itself answers now (not the cache): one read, undefined when it answered. */
  reachable(timeoutMs: number): Promise<string | undefined>;
}

export async function openClusterStorage(s: StorageConfig, log: Logger): Promise<ClusterStorage> {
  const store = new InstrumentedBackend(await openStore(s));
  const backend = await CachedBackend.open(store, { prefixes: CACHED_PREFIXES, log: log.child('cache') });
  const reachable = (timeoutMs: number) => answers(`the ${s.type} backend`, () => store.get(PROBE_KEY), timeoutMs, (err) => err instanceof NotFoundError);
  return { backend, reachable };
}

/** One audit log per `audit_events_uri` (`file://<dir>`, `dynamodb://<table>`), or the file log in `<data_dir>/log`. */
export async function openAuditLogs(s: StorageConfig): Promise<AuditLog> {
  if (s.auditEventsUri.length === 0) return new FileAuditLog(s.auditLogDir);
  const logs: AuditLog[] = [];
  try {
    for (const uri of s.auditEventsUri) logs.push(await openAuditLog(uri, s));
  } catch (err) {
    await Promise.all(logs.map((l) => l.close()));
    throw err;
  }
  return logs.length === 1 ? logs[0] : new MultiAuditLog(logs);
}

async function openAuditLog(uri: string, s: StorageConfig): Promise<AuditLog> {
  const scheme = uri.slice(0, uri.indexOf(':'));
  switch (scheme) {
    case 'file':
      return new FileAuditLog(decodeURIComponent(new URL(uri).pathname));
    case 'dynamodb': {
      const { DynamoAuditLog, auditLogOptionsFromUri } = await import('../events/dynamodb');
      return DynamoAuditLog.open(auditLogOptionsFromUri(uri, { region: s.region, endpoint: s.endpoint, accessKey: s.accessKey, secretKey: s.secretKey }));
    }
    default:
      throw new BadParameterError(`audit_events_uri ${JSON.stringify(uri)}: want file:// or dynamodb://`);
  }
}

/**
 * The recording store `storage.audit_sessions_uri` names: files under `<data_dir>/log/sessions`
 * (the default), or S3, with small parts staged in `<data_dir>/log/s3-staging` and the completer
 * of abandoned uploads running. The AWS SDK is loaded only for S3.
 */
export async function openRecordingStore(config: TeleportConfig, log: Logger): Promise<{ store: RecordingStore; close(): Promise<void> }> {
  const where = config.storage.auditSessions ?? { type: 'file', dir: path.join(config.dataDir, 'log', 'sessions') };
  if (where.type === 'file') return { store: new FileRecordingStore(where.dir), close: async () => undefined };
  const { S3RecordingStore } = await import('../recordings/s3');
  const store = new S3RecordingStore({
    bucket: where.bucket,
    prefix: where.prefix,
    region: where.region,
    endpoint: where.endpoint,
    sse: where.sse,
    kmsKeyId: where.kmsKeyId,
    stagingDir: path.join(config.dataDir, 'log', 's3-staging'),
    log: log.child('recordings:s3'),
  });
  store.startCompleter();
  log.info('session recordings are kept in S3', { location: store.location, sse: where.sse });
  return { store, close: () => store.close() };
}
