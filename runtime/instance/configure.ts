/**
 * `teleport configure --from-conf`: the AMI's boot-time step. Validates the conf, reads the
 * instance's facts, writes teleport.yaml once (an existing file is kept: hand edits survive
 * reboots; remove it to regenerate) and the role marker `role.<mode>` next to the conf that
 * gates the role's systemd unit; with the conf's log groups, the CloudWatch agent's config
 * beside them (agent.ts), which gates the agent's unit, written and kept with teleport.yaml.
 * Everything is checked before anything is written.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatAddr, parseAddrWithPort } from '../config/address';
import { DEFAULT_INSTANCE_DIAG_ADDR } from '../contract/telemetry';
import { BadParameterError } from '../utils/errors';
import { writeFileAtomic } from '../utils/files';
import { agentConfig } from './agent';
import { loadConf } from './conf';
import { DEFAULT_INSTANCE_PATHS, generateConfig, INSTANCE_MODES, instanceMode, renderConfig, type InstanceFacts, type InstanceMode, type InstancePaths } from './generate';

export interface ConfigureOptions {
  readonly confFile: string;
  /** teleport.yaml to write; `-` prints it instead (and writes no marker). */
  readonly outputFile: string;
  readonly paths?: InstancePaths;
  /** Where the diagnostics endpoint listens (a loopback address). @default DEFAULT_INSTANCE_DIAG_ADDR */
  readonly diagAddr?: string;
  /** Reads the instance's facts (IMDS); called only when a config is generated. */
  readonly facts: () => Promise<InstanceFacts>;
}

export interface ConfigureResult {
  readonly mode: InstanceMode;
  /** False when the output existed and was kept. */
  readonly generated: boolean;
  /** When a kept file's mode differs from what the conf now asks for: the conf's mode. */
  readonly confMode?: InstanceMode;
  /** The config text (when generated). */
  readonly text?: string;
  /** The CloudWatch agent's config file, when one was written. */
  readonly agentConfigFile?: string;
  /** Conf variables of the AWS guide this image ignores. */
  readonly ignored: string[];
}

/** The marker file gating the unit of `mode`. */
export const roleMarkerFile = (confDir: string, mode: InstanceMode) => join(confDir, `role.${mode}`);
/** The CloudWatch agent's config and its Prometheus scrape config, next to the conf (on the AMI in /etc/teleport.d, where its unit looks). */
export const agentConfigFile = (confDir: string) => join(confDir, 'cloudwatch-agent.json');
export const agentPrometheusFile = (confDir: string) => join(confDir, 'cloudwatch-prometheus.yaml');

/** `addr` as `host:port` if it is a loopback address with a port: the endpoint is never served beyond the instance. */
export function checkDiagAddr(addr: string): string {
  let parsed;
  try {
    parsed = parseAddrWithPort(addr);
  } catch (err) {
    throw new BadParameterError(`--diag-addr: ${(err as Error).message}`);
  }
  const loopback = parsed.host === 'localhost' || parsed.host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(parsed.host);
  if (!loopback || parsed.port < 1) {
    throw new BadParameterError(`--diag-addr: ${JSON.stringify(addr)} is not a loopback address with a port (e.g. ${DEFAULT_INSTANCE_DIAG_ADDR}): the diagnostics endpoint is only for this instance`);
  }
  return formatAddr(parsed);
}

/** The group the non-root services run as; teleport.yaml is readable by it. */
export const SERVICE_GROUP = 'teleport';

export async function configureFromConf(opts: ConfigureOptions): Promise<ConfigureResult> {
  const diagAddr = checkDiagAddr(opts.diagAddr ?? DEFAULT_INSTANCE_DIAG_ADDR);
  const conf = loadConf(opts.confFile);
  const mode = instanceMode(conf.role, conf.useAcm);
  const base = { mode, ignored: conf.ignored };
  if (opts.outputFile !== '-' && existsSync(opts.outputFile)) {
    // The kept file decides what runs: its marker stays even if the conf now says otherwise
    // (a proxy's teleport.yaml must not start under the node unit). A file without a marker
    // (written by hand) gets the conf's.
    const confDir = dirname(opts.confFile);
    const current = INSTANCE_MODES.find((m) => existsSync(roleMarkerFile(confDir, m)));
    if (current === undefined) writeMarker(confDir, mode);
    return { ...base, mode: current ?? mode, generated: false, ...(current !== undefined && current !== mode ? { confMode: mode } : {}) };
  }
  const facts = await opts.facts();
  const config = generateConfig(conf, facts, opts.paths ?? DEFAULT_INSTANCE_PATHS, diagAddr);
  const text = renderConfig(config, {
    confFile: opts.confFile,
    mode,
    outputFile: opts.outputFile === '-' ? '/etc/teleport.yaml' : opts.outputFile,
  });
  const confDir = dirname(opts.confFile);
  const agent = agentConfig(conf, {
    mode,
    clusterName: config.auth_service.cluster_name ?? conf.clusterName!,
    diagAddr,
    prometheusFile: agentPrometheusFile(confDir),
  });
  if (opts.outputFile === '-') return { ...base, generated: true, text };
  // The agent's files first: teleport.yaml, once it exists, keeps them as they are (a run that
  // stops in between generates everything again). The agent runs as root; its config names
  // nothing secret but is no one else's business.
  if (agent) {
    writeFileAtomic(agentPrometheusFile(confDir), agent.prometheus, 0o600);
    writeFileAtomic(agentConfigFile(confDir), JSON.stringify(agent.config, null, 2) + '\n', 0o600);
  } else {
    for (const f of [agentConfigFile(confDir), agentPrometheusFile(confDir)]) rmSync(f, { force: true });
  }
  // Readable by the services' group, which the non-root units run as.
  writeFileAtomic(opts.outputFile, text, 0o640, { gid: process.getuid?.() === 0 ? groupId(SERVICE_GROUP) : undefined });
  writeMarker(confDir, mode);
  return { ...base, generated: true, text, ...(agent ? { agentConfigFile: agentConfigFile(confDir) } : {}) };
}

/** Exactly one marker: this mode's, created; any other mode's, removed. */
function writeMarker(confDir: string, mode: InstanceMode): void {
  for (const m of INSTANCE_MODES) if (m !== mode) rmSync(roleMarkerFile(confDir, m), { force: true });
  writeFileSync(roleMarkerFile(confDir, mode), '', { mode: 0o644 });
}

function groupId(name: string): number | undefined {
  try {
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
    const gid = line ? Number(line.split(':')[2]) : NaN;
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}
