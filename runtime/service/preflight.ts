/**
 * What `teleport start` checks before it creates, opens or joins anything:
 * the files the configuration names (the proxy's key pairs, key matching
 * certificate; etcd's TLS files; the pid file's directory), that a node or
 * proxy without a local auth service has a way to join, and that every port
 * is free and wanted by one service only. Every problem found is listed at once, each at the line of
 * the setting in teleport.yaml (`file:line:col:`) when the file sets it, so
 * a config that cannot run fails before the data dir exists.
 *
 * Token and CA pin files are read (and reported the same way) by buildConfig.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, formatPath, sourceMapOf, type ConfigIssue, type SourceMap, type TeleportConfig } from '../config';
import { KeyPairError, loadKeyPair } from '../proxy/keypairs';
import { fileErrorText } from '../utils/files';
import { procStoragePath } from './datadir';
import { checkPorts, LISTENERS, type ListenerName, plannedListeners, portConflicts, type PortProblem } from './listen';

type Path = (string | number)[];

/** What a node or proxy that has neither a local auth service nor a stored identity is told. */
export function notJoinedMessage(role: 'node' | 'proxy'): string {
  return `this ${role} has not joined a cluster yet: start it with --token (see \`tctl nodes add\`) and --ca-pin`;
}

/** An issue at the line of `config`'s file that sets `setting`, if one does; else the message alone. */
export function issueAtSetting(config: TeleportConfig, setting: Path, message: string): ConfigIssue {
  return issueAt(sourceMapOf(config), setting, message);
}

/** An issue at the setting's line when the file sets it; else the message alone (a default or a flag). */
function issueAt(map: SourceMap | undefined, setting: Path, message: string): ConfigIssue {
  return map?.has(setting) ? map.issue(setting, message) : { message };
}

/**
 * The proxy's key pairs, each at its setting: buildConfig puts `https_key_file` and
 * `https_cert_file` first (when set), then the `https_keypairs` entries in order.
 */
function keyPairIssues(config: TeleportConfig, map: SourceMap | undefined): ConfigIssue[] {
  if (!config.proxy.enabled || config.proxy.insecureNoTls) return [];
  const single = map?.has(['proxy_service', 'https_key_file']) ?? false;
  return config.proxy.keyPairs.flatMap((pair, i) => {
    try {
      loadKeyPair(pair);
      return [];
    } catch (err) {
      if (!(err instanceof KeyPairError)) throw err;
      const setting: Path =
        single && i === 0
          ? ['proxy_service', err.field === 'key_file' ? 'https_key_file' : 'https_cert_file']
          : ['proxy_service', 'https_keypairs', single ? i - 1 : i, err.field];
      return [issueAt(map, setting, `${formatPath(setting)}: ${err.detail}`)];
    }
  });
}

/** etcd's client key, certificate and CA, when the auth service stores its state in etcd. */
function etcdFileIssues(config: TeleportConfig, map: SourceMap | undefined): ConfigIssue[] {
  const s = config.storage;
  if (!config.auth.enabled || s.type !== 'etcd') return [];
  const files = [
    ['tls_cert_file', s.tlsCertFile],
    ['tls_key_file', s.tlsKeyFile],
    ['tls_ca_file', s.tlsCaFile],
  ] as const;
  return files.flatMap(([key, file]) => {
    if (file === undefined) return [];
    const problem = unreadableFile(file);
    const setting = ['teleport', 'storage', key];
    return problem ? [issueAt(map, setting, `${formatPath(setting)}: cannot read ${JSON.stringify(file)}: ${problem}`)] : [];
  });
}

/** Why `file` cannot be read, or undefined when it can. */
function unreadableFile(file: string): string | undefined {
  try {
    if (!fs.statSync(file).isFile()) return 'not a file';
    fs.accessSync(file, fs.constants.R_OK);
    return undefined;
  } catch (err) {
    return fileErrorText(err);
  }
}

/** Why a file cannot be created or appended to at `file`, or undefined when it can. */
function unwritableFile(file: string): string | undefined {
  const dir = path.dirname(file);
  try {
    if (fs.existsSync(file)) {
      if (!fs.statSync(file).isFile()) return 'not a file';
      fs.accessSync(file, fs.constants.W_OK);
      return undefined;
    }
    if (!fs.statSync(dir).isDirectory()) return `${dir} is not a directory`;
    fs.accessSync(dir, fs.constants.W_OK);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? `no such directory ${dir}` : fileErrorText(err);
  }
}

/** The pid file, written once the services run: its directory must take it (it may come from --pid-file, so no line). */
function pidFileIssues(config: TeleportConfig): ConfigIssue[] {
  const problem = config.pidFile === undefined ? undefined : unwritableFile(config.pidFile);
  return problem ? [{ message: `teleport.pid_file (or --pid-file): cannot write the pid file ${JSON.stringify(config.pidFile)}: ${problem}` }] : [];
}

/**
 * A node or proxy without a local auth service joins with a token, unless data_dir already holds
 * its identity; with neither, it cannot start (the data dir is not even created to find out).
 */
function joinIssues(config: TeleportConfig): ConfigIssue[] {
  if (config.auth.enabled || config.authToken !== undefined) return [];
  if (!config.ssh.enabled && !config.proxy.enabled) return [];
  try {
    fs.statSync(procStoragePath(config.dataDir));
    return [];
  } catch (err) {
    // A data dir this user cannot read is reported as such when it is prepared.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return [];
  }
  return [{ message: notJoinedMessage(config.ssh.enabled ? 'node' : 'proxy') }];
}

const portIssue = (map: SourceMap | undefined) => (p: PortProblem) => issueAt(map, LISTENERS[p.name].key.split('.'), p.message);

/**
 * The problems of what the config says (its files, a way to join, two services on one port),
 * found without binding anything: a reload checks these while the old services still run.
 */
export function configProblems(config: TeleportConfig): ConfigIssue[] {
  const map = sourceMapOf(config);
  return [
    ...keyPairIssues(config, map),
    ...etcdFileIssues(config, map),
    ...pidFileIssues(config),
    ...joinIssues(config),
    ...portConflicts(plannedListeners(config)).map(portIssue(map)),
  ];
}

/** The planned ports that `which` selects and another process holds, each at its setting. */
async function heldPorts(config: TeleportConfig, which: (name: ListenerName) => boolean): Promise<ConfigIssue[]> {
  const planned = plannedListeners(config).filter((l) => which(l.name));
  return (await checkPorts(planned)).map(portIssue(sourceMapOf(config)));
}

/**
 * Throws a ConfigError listing every problem found; returns when the configuration can start.
 * What the config says is checked first, and only a config without problems has its ports
 * bound (for a moment) to find the ones another process holds. The ports in `deferred` are
 * left for preflightPorts: a node alone learns only from the network whether it listens at all
 * (behind NAT it does not, node/viaproxy.ts).
 */
export async function preflight(config: TeleportConfig, deferred: ListenerName[] = []): Promise<void> {
  const issues = configProblems(config);
  if (issues.length === 0) issues.push(...(await heldPorts(config, (name) => !deferred.includes(name))));
  if (issues.length > 0) throw new ConfigError(issues);
}

/** The deferred part of preflight: throws a ConfigError naming each port of `names` another process holds. */
export async function preflightPorts(config: TeleportConfig, names: ListenerName[]): Promise<void> {
  const issues = await heldPorts(config, (name) => names.includes(name));
  if (issues.length > 0) throw new ConfigError(issues);
}
