/**
 * An EC2 instance of the local deployment, booting as the AMI does. It runs in its own network
 * namespace (its own address) and mount namespace, where overlays give it a private `/etc`,
 * `/var`, `/run` and `/usr/local` over the host's (its root disk). Boot, as on EC2 with the image
 * that `ami/` builds:
 *   1. the image: `/usr/local/bin/{teleport,tctl,tsh}` run this repository's build (`dist/`), and
 *      `/var/lib/teleport` exists (0700), as `ami/files/install.sh` leaves them;
 *   2. cloud-init runs the launch template's user data (which writes `/etc/teleport.d/conf`);
 *   3. the systemd units of `ami/files/system` start in their `After=`/`Before=` order:
 *      `teleport-generate-config` (conf + IMDS → `/etc/teleport.yaml` and the role marker), the
 *      units whose `ConditionPathExists=` paths all exist (the role's; not the CloudWatch agent's, which
 *      is not installed here) (`ExecStartPre`, `ExecStart`, `RuntimeDirectory=`;
 *      a service runs in the background and restarts after `RestartSec` with `Restart=on-failure`),
 *      then the oneshot units ordered after it; the command lines as the unit files have them.
 * Endpoint settings are the only difference from EC2: the processes get `AWS_ENDPOINT_URL`,
 * `NODE_EXTRA_CA_CERTS` and `AWS_EC2_METADATA_SERVICE_ENDPOINT` in their environment. Units run as
 * root here (their `User=` is not applied). The boot's output, the units' included (their
 * `StandardOutput=append:` files are not used), is the instance's console log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { collect, Daemon, type Collected } from './process';
import { Network, type Attachment } from './net';

/** The repository root (this file runs from sim/ under ts-node or from dist/sim/). */
export const REPO_ROOT = ((dir: string) => (path.basename(path.dirname(dir)) === 'dist' ? path.resolve(dir, '..', '..') : path.resolve(dir, '..')))(__dirname);
const UNITS_DIR = path.join(REPO_ROOT, 'ami', 'files', 'system');

/** One systemd unit of the image, as far as the boot uses it. */
export interface Unit {
  readonly name: string;
  /** `ConditionPathExists=` paths: the unit runs only if every one exists. */
  readonly conditions: string[];
  readonly execStartPre: string[];
  readonly execStart: string;
  readonly restartOnFailure: boolean;
  readonly restartSec: number;
  /** `RuntimeDirectory=` (under /run, made before the unit starts) with `RuntimeDirectoryMode=`. */
  readonly runtimeDirectory?: { name: string; mode: string };
  /** Units this one starts after (`After=`), and before (`Before=`). */
  readonly after: string[];
  readonly before: string[];
}

/** The image's units (`ami/files/system`), the config generator first. */
export function imageUnits(dir = UNITS_DIR): Unit[] {
  const units = fs.readdirSync(dir).filter((f) => f.endsWith('.service')).sort().map((name) => {
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    const values = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1].trim());
    const [execStart] = values('ExecStart');
    if (!execStart) throw new Error(`${name} has no ExecStart`);
    return {
      name,
      conditions: values('ConditionPathExists'),
      execStartPre: values('ExecStartPre'),
      execStart,
      restartOnFailure: values('Restart')[0] === 'on-failure',
      restartSec: Number(values('RestartSec')[0] ?? 0.1),
      ...(values('RuntimeDirectory')[0] ? { runtimeDirectory: { name: values('RuntimeDirectory')[0], mode: values('RuntimeDirectoryMode')[0] ?? '0755' } } : {}),
      after: values('After').flatMap((v) => v.split(/\s+/)),
      before: values('Before').flatMap((v) => v.split(/\s+/)),
    };
  });
  return startOrder(units);
}

/** The units in an order that honours their `After=`/`Before=` among themselves (systemd's ordering; ties by name). */
export function startOrder(units: Unit[]): Unit[] {
  const names = new Set(units.map((u) => u.name));
  const deps = new Map(units.map((u) => [u.name, new Set(u.after.filter((a) => names.has(a)))]));
  for (const u of units) for (const b of u.before) deps.get(b)?.add(u.name);
  const order: Unit[] = [];
  const left = [...units];
  while (left.length > 0) {
    const i = left.findIndex((u) => [...deps.get(u.name)!].every((d) => order.some((o) => o.name === d)));
    if (i < 0) throw new Error(`the units' After=/Before= form a cycle among ${left.map((u) => u.name).join(', ')}`);
    order.push(left.splice(i, 1)[0]);
  }
  return order;
}

/** The boot script run inside the instance's namespaces. */
/** The machine image an instance boots: this repository's build, or a broken release of it. */
export interface Image {
  /** The image id, as a launch template names it. */
  readonly id: string;
  /** A release whose `teleport start` exits with an error at once (the other commands work): a bad upgrade. */
  readonly brokenStart?: boolean;
}

/** The image the template's launch templates name: this repository's build. */
export const CURRENT_IMAGE: Image = { id: 'ami-local' };

/** The shell script installed as `/usr/local/bin/<cli>` by `image`. */
function cliWrapper(cli: string, image: Image, nodeBinary: string): string {
  const broken = cli === 'teleport' && image.brokenStart ? [`[ "\${1:-}" = start ] && { echo "teleport: this release cannot start (image ${image.id})" >&2; exit 1; }`] : [];
  return ['#!/bin/sh', ...broken, `exec ${nodeBinary} ${path.join(REPO_ROOT, 'dist', 'runtime', 'cli', `${cli}.js`)} "$@"`, ''].join('\n');
}

export function bootScript(opts: { root: string; userDataFile: string; units: Unit[]; nodeBinary: string; image?: Image }): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = [
    'set -u',
    'say() { printf "[%s] %s\\n" "$(date -u +%H:%M:%S.%3N)" "$*"; }',
    // The instance's disk: private overlays over the host's directories.
    ...['etc', 'var', 'run', 'usr/local'].map((d) => {
      const key = d.replace('/', '-');
      return `mkdir -p ${q(`${opts.root}/disk/${key}/upper`)} ${q(`${opts.root}/disk/${key}/work`)} && mount -t overlay overlay -o ${q(`lowerdir=/${d},upperdir=${opts.root}/disk/${key}/upper,workdir=${opts.root}/disk/${key}/work`)} /${d} || { say "cannot mount the instance's /${d}"; exit 1; }`;
    }),
    // The image (ami/files/install.sh): the CLIs and the data directory.
    'install -d -m 0700 /var/lib/teleport && install -d -m 0755 /usr/local/bin',
    ...['teleport', 'tctl', 'tsh'].map((b) => `printf '%s' ${q(cliWrapper(b, opts.image ?? CURRENT_IMAGE, opts.nodeBinary))} > /usr/local/bin/${b} && chmod 0755 /usr/local/bin/${b}`),
    'say "cloud-init: running the user data"',
    `bash ${q(opts.userDataFile)} || { say "cloud-init: the user data failed with status $?"; exit 1; }`,
  ];
  for (const u of opts.units) {
    const runtimeDir = u.runtimeDirectory ? [`install -d -m ${u.runtimeDirectory.mode} /run/${u.runtimeDirectory.name}`] : [];
    const run = [...runtimeDir, ...[...u.execStartPre, u.execStart].map((c) => `{ say ${q(`${u.name}: ${c}`)}; ${c.replace(/^-/, '')}; }`)].join(' && ');
    const cond = u.conditions.length > 0 ? u.conditions.map((c) => `[ -e ${q(c)} ]`).join(' && ') : 'true';
    if (u.restartOnFailure) {
      // A service runs beside the others (systemd starts it and moves on), restarted when it fails.
      lines.push(`if ${cond}; then ( while true; do ${run} && break; say ${q(`${u.name}: failed with status`)} $?"; restarting in ${u.restartSec}s"; sleep ${u.restartSec}; done ) & fi`);
    } else {
      lines.push(`if ${cond}; then ${run} || say ${q(`${u.name}: failed`)}; fi`);
    }
  }
  lines.push('wait', 'say "boot: every unit has ended"');
  return `${lines.join('\n')}\n`;
}

export interface InstanceSpec {
  readonly id: string;
  readonly userData: string;
  /** @default CURRENT_IMAGE */
  readonly image?: Image;
  readonly units?: Unit[];
  /** Environment of the instance's processes: the endpoint settings. */
  readonly env: Record<string, string>;
}

export class Instance {
  private readonly daemon: Daemon;
  readonly exited: Promise<number | null>;
  readonly consoleFile: string;

  private constructor(
    readonly id: string,
    readonly attachment: Attachment,
    readonly root: string,
    child: ChildProcess,
  ) {
    this.daemon = new Daemon(child);
    this.exited = this.daemon.exited;
    this.consoleFile = path.join(root, 'console.log');
  }

  /** The pid of the instance's boot process: `nsenter -t <pid> -m -n` enters the instance. */
  get pid(): number | undefined {
    return this.daemon.child.pid;
  }

  get address(): string {
    return this.attachment.address;
  }

  /** Boots `spec` in `attachment`'s network namespace; its files live under `root`. */
  static boot(spec: InstanceSpec, attachment: Attachment, root: string): Instance {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    const userDataFile = path.join(root, 'user-data');
    fs.writeFileSync(userDataFile, spec.userData, { mode: 0o700 });
    const script = bootScript({ root, userDataFile, units: spec.units ?? imageUnits(), nodeBinary: process.execPath, image: spec.image });
    fs.writeFileSync(path.join(root, 'boot.sh'), script, { mode: 0o700 });
    const out = fs.openSync(path.join(root, 'console.log'), 'a');
    const child = spawn('ip', ['netns', 'exec', attachment.namespace, 'unshare', '--mount', '--propagation', 'private', 'bash', path.join(root, 'boot.sh')], {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', ...spec.env },
      stdio: ['ignore', out, out],
      detached: true,
    });
    fs.closeSync(out);
    return new Instance(spec.id, attachment, root, child);
  }

  /** The end of the console log. */
  console(lines = 40): string {
    try {
      return fs.readFileSync(this.consoleFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Whether the boot process has ended (the instance failed or was terminated). */
  get running(): boolean {
    return this.daemon.child.exitCode === null && this.daemon.child.signalCode === null;
  }

  /** Runs a command inside the instance (its mounts and network), as Session Manager would give a shell. */
  exec(command: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Collected> {
    return collect('nsenter', ['-t', String(this.pid), '-m', '-n', '--', ...command], {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', ...opts.env },
      input: opts.input,
    });
  }

  /** Stops every process of the instance (TERM, then KILL after `graceMs`), as a terminated EC2 instance stops. */
  async terminate(graceMs = 5000): Promise<void> {
    const kill = (signal: NodeJS.Signals) => {
      for (const pid of [this.daemon.child.pid, ...Network.pids(this.attachment.namespace)]) {
        try {
          if (pid) process.kill(pid, signal);
        } catch {
          // gone
        }
      }
    };
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    // Processes that left the boot's process tree (sessions) but live in the namespace.
    kill('SIGKILL');
  }
}
