/**
 * A teleport process: the services that `teleport start` runs, sharing one
 * data directory and host identity, stopped together.
 */
import * as fs from 'node:fs';
import { openBackend } from '../backend';
import { TeleportConfig } from '../config';
import { IdentityStore } from '../auth/identity';
import { AuthService, startAuthService } from '../auth/service';
import { BadParameterError } from '../utils/errors';
import { logger } from '../utils/logger';
import { ensureDataDir, hostUUID, procStoragePath } from './datadir';

export interface TeleportProcess {
  readonly hostUUID: string;
  readonly auth?: AuthService;
  close(): Promise<void>;
}

export async function startProcess(config: TeleportConfig): Promise<TeleportProcess> {
  const log = logger('teleport');
  const missing = [config.ssh.enabled && 'node', config.proxy.enabled && 'proxy'].filter(Boolean);
  if (missing.length) {
    throw new BadParameterError(`the ${missing.join(' and ')} service${missing.length > 1 ? 's are' : ' is'} not available in this version yet; start with --roles=auth`);
  }
  if (!config.auth.enabled) throw new BadParameterError('no service to start: enable at least one of auth, node or proxy');
  ensureDataDir(config.dataDir);
  const uuid = hostUUID(config.dataDir);
  const proc = await openBackend({ type: 'sqlite', path: procStoragePath(config.dataDir) });
  const store = new IdentityStore(proc);
  let auth: AuthService | undefined;
  try {
    auth = await startAuthService({ config, hostUUID: uuid, procStore: store, log: logger('auth') });
  } catch (err) {
    await proc.close();
    throw err;
  }
  if (config.pidFile) fs.writeFileSync(config.pidFile, `${process.pid}\n`, { mode: 0o644 });
  log.info('teleport is running', { host_uuid: uuid, data_dir: config.dataDir });
  return {
    hostUUID: uuid,
    auth,
    close: async () => {
      await auth?.close();
      await proc.close();
      if (config.pidFile) fs.rmSync(config.pidFile, { force: true });
    },
  };
}
