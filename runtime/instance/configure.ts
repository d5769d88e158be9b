/**
 * `teleport configure --from-conf`: the AMI's boot-time step. Validates the conf, reads the
 * instance's facts, writes teleport.yaml once (an existing file is kept: hand edits survive
 * reboots; remove it to regenerate) and the role marker `role.<mode>` next to the conf that
 * gates the role's systemd unit. Everything is checked before anything is written.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../utils/files';
import { loadConf } from './conf';
import { DEFAULT_INSTANCE_PATHS, generateConfig, INSTANCE_MODES, instanceMode, renderConfig, type InstanceFacts, type InstanceMode, type InstancePaths } from './generate';

export interface ConfigureOptions {
  readonly confFile: string;
  /** teleport.yaml to write; `-` prints it instead (and writes no marker). */
  readonly outputFile: string;
  readonly paths?: InstancePaths;
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
  /** Conf variables of the AWS guide this image ignores. */
  readonly ignored: string[];
}

/** The marker file gating the unit of `mode`. */
export const roleMarkerFile = (confDir: string, mode: InstanceMode) => join(confDir, `role.${mode}`);

/** The group the non-root services run as; teleport.yaml is readable by it. */
export const SERVICE_GROUP = 'teleport';

export async function configureFromConf(opts: ConfigureOptions): Promise<ConfigureResult> {
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
  const text = renderConfig(generateConfig(conf, facts, opts.paths ?? DEFAULT_INSTANCE_PATHS), {
    confFile: opts.confFile,
    mode,
    outputFile: opts.outputFile === '-' ? '/etc/teleport.yaml' : opts.outputFile,
  });
  if (opts.outputFile !== '-') {
    // Readable by the services' group, which the non-root units run as.
    writeFileAtomic(opts.outputFile, text, 0o640, { gid: process.getuid?.() === 0 ? groupId(SERVICE_GROUP) : undefined });
    writeMarker(dirname(opts.confFile), mode);
  }
  return { ...base, generated: true, text };
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
