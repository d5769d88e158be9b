/**
 * The AMI (ami/): the Packer template passes `packer validate` and the systemd units pass
 * `systemd-analyze verify`, with the tools .ci/run installs (a missing tool fails these tests, it
 * never skips them), and the units keep the boot design of ami/README.md: each role unit gated by
 * its marker, ordered after teleport-generate-config without an ordering cycle against cloud-init,
 * the right user, HUP on reload, the join secrets fetched for the right role, and the sandbox.
 */
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CONF_FILE } from '../../runtime/contract/aws';
import { LOG_DIR, unitLogFile } from '../../runtime/contract/telemetry';
import { BOOT_UNITS, MODE_UNITS } from '../../runtime/instance/agent';
import { agentConfigFile } from '../../runtime/instance/configure';
import { INSTANCE_MODES } from '../../runtime/instance/generate';
import { cliPath, ROOT } from '../helpers/proc';

const AMI = path.join(ROOT, 'ami');
const UNITS_DIR = path.join(AMI, 'files', 'system');
const FIXTURES = path.join(__dirname, 'fixtures');

/** Each role unit and the mode whose marker (/etc/teleport.d/role.<mode>) lets it run. */
const ROLE_UNITS: Record<string, string> = {
  'teleport.service': 'all',
  'teleport-acm.service': 'all-acm',
  'teleport-auth.service': 'auth',
  'teleport-proxy.service': 'proxy',
  'teleport-proxy-acm.service': 'proxy-acm',
  'teleport-node.service': 'node',
};
const GENERATE = 'teleport-generate-config.service';
/** Signals CloudFormation once the role is healthy (`teleport signal-ready`). */
const SIGNAL = 'teleport-signal.service';
/** Starts the CloudWatch agent with the config `teleport configure` generated. */
const AGENT = 'teleport-cloudwatch-agent.service';
const AGENT_CTL = '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl';
/** The units that run teleport commands. */
const TELEPORT_UNITS = [GENERATE, SIGNAL, ...Object.keys(ROLE_UNITS)].sort();
const ALL_UNITS = [...TELEPORT_UNITS, AGENT].sort();
/** Units that include the node service run as root (sessions log users in); the others as teleport. */
const ROOT_UNITS = ['teleport.service', 'teleport-acm.service', 'teleport-node.service'];
const SANDBOXED_UNITS = ['teleport-auth.service', 'teleport-proxy.service', 'teleport-proxy-acm.service'];
/** The role whose join token each joining unit fetches from SSM before it starts. */
const JOIN_ROLE: Record<string, string> = {
  'teleport-proxy.service': 'proxy',
  'teleport-proxy-acm.service': 'proxy',
  'teleport-node.service': 'node',
};

const START = '/usr/local/bin/teleport start --config /etc/teleport.yaml --pid-file /run/teleport/teleport.pid';
const CONFIGURE = '/usr/local/bin/teleport configure --from-conf /etc/teleport.d/conf --output /etc/teleport.yaml';
const SIGNAL_READY = '/usr/local/bin/teleport signal-ready --from-conf /etc/teleport.d/conf';
const fetchSecrets = (role: string) => `/usr/local/bin/teleport fetch-join-secrets --from-conf /etc/teleport.d/conf --role ${role}`;

/** A unit file as section -> key -> values (keys may repeat; an empty assignment resets the list, as in systemd). */
type Unit = Record<string, Record<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = unit[header[1]] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq < 0) throw new Error(`not a unit file line: ${raw}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    section[key] = value === '' ? [''] : [...(section[key]?.filter((v) => v !== '') ?? []), value];
  }
  return unit;
}

const readUnit = (name: string) => parseUnit(fs.readFileSync(path.join(UNITS_DIR, name), 'utf8'));
/** All values of a key, split on whitespace (After=, Wants=, RestrictAddressFamilies=, ...). */
const words = (u: Unit, section: string, key: string) => (u[section]?.[key] ?? []).flatMap((v) => v.split(/\s+/)).filter((w) => w !== '');
/** The one value of a key (the last assignment wins, as in systemd). */
const value = (u: Unit, section: string, key: string) => u[section]?.[key]?.at(-1);

/** Path of a program on PATH, or an error telling how CI installs it. */
function requireTool(name: string, debianPackage: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next PATH entry
    }
  }
  throw new Error(`${name} is not installed: the AMI tests need it (apt-get install ${debianPackage}; .ci/run installs it)`);
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 60_000 });
  if (r.error) throw r.error;
  return r;
}

describe('the AMI template (ami/*.pkr.hcl)', () => {
  let packer: string;
  let tmp: string;
  let tarball: string;
  /**
   * ami/ without plugins.pkr.hcl: the machine's Packer is Debian's 1.6.6, which has amazon-ebs built in but
   * predates `required_plugins` (checked on its own below).
   */
  let template: string;
  /** No AWS credentials or metadata service reachable: validation must not depend on AWS. */
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    packer = requireTool('packer', 'packer');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ami-packer-'));
    // Stub: an empty file with `npm pack`'s name. Validation checks that it exists; only a build reads it.
    tarball = path.join(tmp, 'teleport-ts-0.1.0.tgz');
    fs.writeFileSync(tarball, '');
    template = path.join(tmp, 'ami');
    fs.cpSync(AMI, template, { recursive: true });
    fs.rmSync(path.join(template, 'plugins.pkr.hcl'));
    env = {
      PATH: process.env.PATH,
      HOME: tmp,
      CHECKPOINT_DISABLE: '1',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: path.join(tmp, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(tmp, 'no-aws-credentials'),
    };
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const validate = (...vars: string[]) => sh(packer, ['validate', ...vars.flatMap((v) => ['-var', v]), template], env);

  it('GIVEN the package tarball and no AWS credentials WHEN packer validate runs on ami/ (full validation, not -syntax-only) THEN it passes', () => {
    // WHEN
    const r = validate(`package=${tarball}`);
    // THEN
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/error/i);
    expect(r.status).toBe(0);
  });

  it('GIVEN every allowed arch and Node.js major WHEN validated THEN each passes', () => {
    for (const arch of ['x86_64', 'arm64']) {
      for (const major of ['22', '24']) {
        const r = validate(`package=${tarball}`, `arch=${arch}`, `node_major=${major}`, 'subnet_id=subnet-0123456789abcdef0', 'vpc_id=vpc-01234567');
        expect({ arch, major, status: r.status, stderr: r.stderr }).toEqual({ arch, major, status: 0, stderr: '' });
      }
    }
  });

  it.each([
    ['region', 'us-east', 'The region variable must be an AWS region name'],
    ['arch', 'i386', 'The arch variable must be x86_64 or arm64'],
    ['node_major', '20', 'The node_major variable must be 22 or 24'],
    ['instance_type', 'big', 'The instance_type variable must be empty or an EC2 instance type'],
    ['subnet_id', 'sn-1', 'The subnet_id variable must be empty or a subnet ID'],
    ['vpc_id', 'vpc-xyz', 'The vpc_id variable must be empty or a VPC ID'],
    ['ami_name_prefix', 'a', 'The ami_name_prefix variable must be 3 to 64 characters'],
    ['root_volume_size_gib', '4', 'The root_volume_size_gib variable must be a whole number from 8'],
    ['version', 'latest', 'The version variable must be empty or a semantic version'],
    ['kms_key_id', 'my-key', 'The kms_key_id variable must be empty, a key ID'],
  ])('GIVEN %s=%s WHEN validated THEN packer fails with that variable\'s message', (name, bad, message) => {
    // WHEN
    const r = validate(`package=${tarball}`, `${name}=${bad}`);
    // THEN (packer wraps long messages: compare with whitespace collapsed)
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`.replace(/\s+/g, ' ')).toContain(message);
  });

  it('GIVEN plugins.pkr.hcl THEN it requires Packer 1.7+ and pins the Amazon plugin, so `packer init` installs the builder', () => {
    const hcl = fs.readFileSync(path.join(AMI, 'plugins.pkr.hcl'), 'utf8');
    expect(hcl).toMatch(/required_version\s*=\s*">= 1\.7\.0"/);
    expect(hcl).toMatch(/required_plugins\s*\{\s*amazon\s*=\s*\{[^}]*source\s*=\s*"github\.com\/hashicorp\/amazon"[^}]*version\s*=\s*">= 1\.3\.0, < 2\.0\.0"/);
  });

  it('GIVEN the node_major variable THEN its default and every allowed value are supported LTS lines that satisfy package.json engines', () => {
    const vars = fs.readFileSync(path.join(AMI, 'variables.pkr.hcl'), 'utf8');
    const block = /variable "node_major" \{([\s\S]*?)\n\}/.exec(vars)![1];
    const allowed = /contains\(\[([\d, ]+)\], var\.node_major\)/.exec(block)![1].split(',').map(Number);
    const dflt = Number(/default\s*=\s*(\d+)/.exec(block)![1]);
    const engines = /^>=(\d+)\.\d+\.\d+$/.exec(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).engines.node)!;
    expect(allowed).toContain(dflt);
    for (const major of allowed) {
      expect(major).toBeGreaterThanOrEqual(Number(engines[1]));
      // Node.js 20 reached its end of life in April 2026; only even (LTS) lines from 22 on.
      expect(major % 2 === 0 && major >= 22).toBe(true);
    }
  });

  it('GIVEN no package, or a package path that does not exist WHEN validated THEN packer fails and says to run npm pack', () => {
    const missing = sh(packer, ['validate', template], env);
    expect(missing.status).not.toBe(0);
    expect(`${missing.stdout}${missing.stderr}`).toMatch(/Unset variable "package"/);

    const absent = validate(`package=${path.join(tmp, 'teleport-ts-9.9.9.tgz')}`);
    expect(absent.status).not.toBe(0);
    expect(`${absent.stdout}${absent.stderr}`.replace(/\s+/g, ' ')).toContain('must name an existing .tgz file made by `npm pack`');
  });

  it('GIVEN the template WHEN read THEN it builds from Amazon\'s own AL2023 image by arch, and uploads and runs nothing under /tmp (noexec on CIS images)', () => {
    const hcl = fs.readFileSync(path.join(AMI, 'teleport.pkr.hcl'), 'utf8');
    expect(hcl).toMatch(/name\s*=\s*"al2023-ami-2023\.\*-kernel-\*-\$\{var\.arch\}"/);
    expect(hcl).toMatch(/owners\s*=\s*\["amazon"\]/);
    expect(hcl).toMatch(/most_recent\s*=\s*true/);
    expect(hcl).toMatch(/ssh_clear_authorized_keys\s*=\s*true/);
    expect(hcl).toMatch(/volume_type\s*=\s*"gp3"/);
    expect(hcl).toMatch(/encrypted\s*=\s*var\.encrypt_boot/);
    expect(hcl).toMatch(/staging\s*=\s*"\/home\/ec2-user\//);
    for (const m of hcl.matchAll(/^\s*(destination|remote_folder)\s*=\s*"([^"]*)"/gm)) expect([m[1], m[2]]).toEqual([m[1], expect.stringMatching(/^(\/home\/ec2-user|\$\{local\.staging\})/)]);
    expect(hcl).not.toMatch(/"\/tmp/);
  });
});

describe('the AMI provisioning script (ami/files/install.sh) and unit preset', () => {
  const script = fs.readFileSync(path.join(AMI, 'files', 'install.sh'), 'utf8');

  it('GIVEN install.sh WHEN bash parses it THEN it is valid bash', () => {
    const r = sh('bash', ['-n', path.join(AMI, 'files', 'install.sh')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('GIVEN install.sh WHEN read THEN it installs the package globally, makes the teleport user and a 0700 data dir, enables every unit, and removes SSH keys and instance state', () => {
    // Static checks: the script runs only on an Amazon Linux 2023 build instance (packer build).
    expect(script).toMatch(/npm-\$\{NODE_MAJOR\}" install --global --prefix \/usr\/local --omit=dev .*"\$PACKAGE"/);
    expect(script).toMatch(/useradd --system --gid teleport --home-dir \/var\/lib\/teleport/);
    expect(script).toMatch(/install -d -m 0700 -o teleport -g teleport \/var\/lib\/teleport/);
    expect(script).toMatch(/for f in "\$FILES"\/system\/\*\.service; do/);
    expect(script).toMatch(/systemctl enable "\$\{units\[@\]\}"/);
    // Session Manager on every instance: the agent is installed and enabled (the roles carry its permissions).
    expect(script).toContain('rpm -q amazon-ssm-agent >/dev/null || dnf -y -q install amazon-ssm-agent');
    expect(script).toMatch(/^systemctl enable amazon-ssm-agent$/m);
    expect(script).toContain('rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys');
    expect(script).toContain('rm -f /etc/ssh/ssh_host_*');
    expect(script).toContain('cloud-init clean --logs');
    expect(script).toMatch(/^set -euo pipefail$/m);
    // Logs and metrics leave the instance: the CloudWatch agent, the units' log directory and its rotation.
    expect(script).toContain('dnf -y -q install amazon-cloudwatch-agent logrotate');
    expect(script).toContain(`install -d -m 0750 -o root -g root ${LOG_DIR}`);
    expect(script).toContain('install -m 0644 -o root -g root "$FILES/logrotate-teleport" /etc/logrotate.d/teleport');
  });

  it('GIVEN the preset file WHEN read THEN it enables exactly the units in ami/files/system (so first-boot presets keep them enabled)', () => {
    const preset = fs.readFileSync(path.join(AMI, 'files', '50-teleport.preset'), 'utf8');
    const enabled = preset.split('\n').filter((l) => l.startsWith('enable ')).map((l) => l.slice('enable '.length).trim());
    expect(enabled.sort()).toEqual(fs.readdirSync(UNITS_DIR).filter((f) => f.endsWith('.service')).sort());
  });
});

describe('the AMI systemd units (ami/files/system)', () => {
  let analyze: string;
  let systemctl: string;
  let staged: string;

  /**
   * A file system root for `systemd-analyze verify --root`: the host's systemd units (multi-user.target,
   * network-online.target, ...), cloud-init's cloud-final.service and cloud-init.target (Debian's, in
   * fixtures/cloud-init), the AMI's units installed and enabled as install.sh does, and the link
   * cloud-init's generator makes at boot (multi-user.target.wants/cloud-init.target).
   * Stubbed: /usr/local/bin/teleport and /usr/bin/kill are executable placeholders (verify checks that
   * each command exists and is executable; on the image install.sh runs verify against the real ones).
   */
  function stageRoot(units: Record<string, string>): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ami-systemd-'));
    const hostUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => fs.existsSync(path.join(d, 'multi-user.target')));
    if (!hostUnits) throw new Error('no multi-user.target in /usr/lib/systemd/system: install systemd (apt-get install systemd)');
    fs.mkdirSync(path.join(root, 'usr', 'lib', 'systemd'), { recursive: true });
    fs.cpSync(hostUnits, path.join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true, verbatimSymlinks: true });
    for (const f of fs.readdirSync(path.join(FIXTURES, 'cloud-init'))) fs.copyFileSync(path.join(FIXTURES, 'cloud-init', f), path.join(root, 'usr', 'lib', 'systemd', 'system', f));
    for (const [bin, dir] of [['teleport', 'usr/local/bin'], ['kill', 'usr/bin'], ['cloud-init', 'usr/bin'], [path.basename(AGENT_CTL), path.dirname(AGENT_CTL).slice(1)]]) {
      fs.mkdirSync(path.join(root, dir), { recursive: true });
      fs.writeFileSync(path.join(root, dir, bin), '#!/bin/sh\n# placeholder for systemd-analyze verify\nexit 0\n', { mode: 0o755 });
    }
    fs.symlinkSync('usr/bin', path.join(root, 'bin')); // merged /usr, as on Amazon Linux 2023
    const etc = path.join(root, 'etc', 'systemd', 'system');
    fs.mkdirSync(path.join(etc, 'multi-user.target.wants'), { recursive: true });
    for (const [name, text] of Object.entries(units)) fs.writeFileSync(path.join(etc, name), text, { mode: 0o644 });
    fs.symlinkSync('/usr/lib/systemd/system/cloud-init.target', path.join(etc, 'multi-user.target.wants', 'cloud-init.target'));
    const enable = sh(systemctl, [`--root=${root}`, 'enable', 'cloud-final.service', ...Object.keys(units)]);
    if (enable.status !== 0) throw new Error(`systemctl enable failed: ${enable.stderr}`);
    return root;
  }
  const amiUnits = () => Object.fromEntries(ALL_UNITS.map((n) => [n, fs.readFileSync(path.join(UNITS_DIR, n), 'utf8')]));

  beforeAll(() => {
    analyze = requireTool('systemd-analyze', 'systemd');
    systemctl = requireTool('systemctl', 'systemd');
    staged = stageRoot(amiUnits());
  });
  afterAll(() => fs.rmSync(staged, { recursive: true, force: true }));

  it('GIVEN ami/files/system WHEN listed THEN it holds exactly the generate-config unit, one unit per role and mode, the signal unit and the CloudWatch agent\'s', () => {
    expect(fs.readdirSync(UNITS_DIR).sort()).toEqual(ALL_UNITS);
  });

  it('GIVEN the units installed in a staged root (teleport and kill stubbed) WHEN systemd-analyze verify checks each THEN it passes with no warning', () => {
    // WHEN
    const r = sh(analyze, ['verify', `--root=${staged}`, ...ALL_UNITS.map((n) => path.join(staged, 'etc', 'systemd', 'system', n))]);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('GIVEN the units enabled as install.sh does WHEN listed THEN cloud-init.target pulls every one of them in at boot', () => {
    const wants = fs.readdirSync(path.join(staged, 'etc', 'systemd', 'system', 'cloud-init.target.wants'));
    expect(wants.sort()).toEqual([...ALL_UNITS, 'cloud-final.service'].sort());
  });

  it('GIVEN the units enabled and cloud-final ordered after multi-user.target (as cloud-init ships it) WHEN the boot transaction of multi-user.target is verified THEN there is no ordering cycle', () => {
    // WHEN
    const r = sh(analyze, ['verify', `--root=${staged}`, path.join(staged, 'usr', 'lib', 'systemd', 'system', 'multi-user.target')]);
    // THEN
    expect(r.stderr).not.toMatch(/ordering cycle|deleted to break/);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('GIVEN (control) a role unit wanted by multi-user.target instead WHEN the same boot transaction is verified THEN the cycle is found, so the check above can fail', () => {
    const units = amiUnits();
    units['teleport-auth.service'] = units['teleport-auth.service'].replace('WantedBy=cloud-init.target', 'WantedBy=multi-user.target');
    const root = stageRoot(units);
    try {
      const r = sh(analyze, ['verify', `--root=${root}`, path.join(root, 'usr', 'lib', 'systemd', 'system', 'multi-user.target')]);
      expect(r.stderr).toMatch(/Found ordering cycle/);
      // The cycle goes through the role unit; which job systemd deletes to break it varies from run to run.
      expect(r.stderr).toMatch(/Found dependency on teleport-auth\.service\/start|Job teleport-auth\.service\/start deleted/);
      expect(r.stderr).toMatch(/Job \S+ deleted to break ordering cycle/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('GIVEN the auth and proxy units WHEN systemd-analyze security rates them offline THEN each exposure is at most 2.0 of 10', () => {
    for (const name of SANDBOXED_UNITS) {
      const r = sh(analyze, ['security', '--offline=true', '--threshold=20', '--no-pager', path.join(UNITS_DIR, name)]);
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1];
      expect({ name, level: Number(level), status: r.status }).toEqual({ name, level: expect.any(Number), status: 0 });
      expect(Number(level)).toBeLessThanOrEqual(2);
    }
  });

  it('GIVEN teleport-generate-config WHEN parsed THEN it is a oneshot that runs `teleport configure` after cloud-final and the network, before every role unit', () => {
    const u = readUnit(GENERATE);
    expect(value(u, 'Service', 'Type')).toBe('oneshot');
    expect(value(u, 'Service', 'RemainAfterExit')).toBe('yes');
    expect(u.Service.ExecStart).toEqual([CONFIGURE]);
    expect(words(u, 'Unit', 'After')).toEqual(expect.arrayContaining(['cloud-final.service', 'network-online.target']));
    expect(words(u, 'Unit', 'Wants')).toContain('network-online.target');
    expect(words(u, 'Unit', 'Before').sort()).toEqual(Object.keys(ROLE_UNITS).sort());
    expect(words(u, 'Install', 'WantedBy')).toEqual(['cloud-init.target']);
    expect(u.Unit.ConditionPathExists).toBeUndefined();
  });

  it('GIVEN teleport-signal WHEN parsed THEN it is a oneshot that runs `teleport signal-ready` after every role unit has started, for longer than the command waits, and sandboxed', () => {
    const u = readUnit(SIGNAL);
    expect(value(u, 'Service', 'Type')).toBe('oneshot');
    expect(value(u, 'Service', 'RemainAfterExit')).toBe('yes');
    expect(u.Service.ExecStart).toEqual([SIGNAL_READY]);
    // Ordered after every role unit (the one whose marker exists runs) and the generator; it pulls in none of them.
    expect(words(u, 'Unit', 'After').sort()).toEqual([GENERATE, 'network-online.target', ...Object.keys(ROLE_UNITS)].sort());
    expect(words(u, 'Unit', 'Wants')).toEqual(['network-online.target']);
    expect(words(u, 'Unit', 'Requires')).toEqual([]);
    // Every instance runs it: without a stack in the conf the command says there is nothing to signal.
    expect(u.Unit.ConditionPathExists).toBeUndefined();
    expect(words(u, 'Install', 'WantedBy')).toEqual(['cloud-init.target']);
    // systemd must not kill it before the command's own timeout, which ends with the FAILURE signal.
    const help = sh(process.execPath, [cliPath('teleport'), 'signal-ready', '--help']).stdout.replace(/\s+/g, ' ');
    const commandMinutes = Number(/--timeout <duration>.*\(default: "(\d+)m"\)/.exec(help)?.[1]);
    expect(commandMinutes).toBe(10);
    expect(Number(/^(\d+)min$/.exec(value(u, 'Service', 'TimeoutStartSec') ?? '')?.[1])).toBeGreaterThan(commandMinutes);
    // Sandboxed like teleport-generate-config: root with only the capability to read the node's storage.
    const s = (k: string) => value(u, 'Service', k);
    expect(s('User')).toBeUndefined();
    expect(s('CapabilityBoundingSet')).toBe('CAP_DAC_READ_SEARCH');
    expect(s('ProtectSystem')).toBe('strict');
    expect(words(u, 'Service', 'ReadWritePaths')).toEqual(['/var/lib/teleport']);
    for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictNamespaces', 'RestrictSUIDSGID', 'LockPersonality']) expect([k, s(k)]).toEqual([k, 'yes']);
    expect(words(u, 'Service', 'RestrictAddressFamilies').sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    expect(u.Service.SystemCallFilter).toEqual(['@system-service']);
    const r = sh(analyze, ['security', '--offline=true', '--threshold=30', '--no-pager', path.join(UNITS_DIR, SIGNAL)]);
    expect(Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1])).toBeLessThanOrEqual(3);
  });

  it('GIVEN the units enabled WHEN the boot transaction of cloud-init.target (which pulls in teleport-signal, ordered after the role units) is verified THEN there is no ordering cycle', () => {
    // WHEN
    const r = sh(analyze, ['verify', `--root=${staged}`, path.join(staged, 'usr', 'lib', 'systemd', 'system', 'cloud-init.target')]);
    // THEN
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it.each(Object.entries(ROLE_UNITS))('GIVEN %s WHEN parsed THEN it runs only with marker role.%s, after generate-config, restarts on failure and reloads with HUP', (name, mode) => {
    const u = readUnit(name);
    expect(u.Unit.ConditionPathExists).toEqual([`/etc/teleport.d/role.${mode}`]);
    expect(words(u, 'Unit', 'After')).toEqual(expect.arrayContaining([GENERATE, 'network-online.target']));
    expect(words(u, 'Unit', 'Wants')).toEqual(expect.arrayContaining([GENERATE, 'network-online.target']));
    expect(u.Service.ExecStart).toEqual([START]);
    expect(u.Service.ExecReload).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(value(u, 'Service', 'Restart')).toBe('on-failure');
    expect(value(u, 'Service', 'RestartSec')).toBe('5');
    expect(value(u, 'Service', 'LimitNOFILE')).toBe('524288');
    expect(value(u, 'Service', 'RuntimeDirectory')).toBe('teleport'); // holds the --pid-file
    expect(words(u, 'Install', 'WantedBy')).toEqual(['cloud-init.target']);
  });

  it.each(Object.keys(ROLE_UNITS))('GIVEN %s WHEN parsed THEN it runs as root only if it includes the node service, as teleport otherwise', (name) => {
    const u = readUnit(name);
    const user = value(u, 'Service', 'User') ?? 'root';
    expect(user).toBe(ROOT_UNITS.includes(name) ? 'root' : 'teleport');
  });

  it.each(Object.keys(ROLE_UNITS))('GIVEN %s WHEN parsed THEN it fetches the join secrets of its role before starting, only if it joins a cluster', (name) => {
    const u = readUnit(name);
    const role = JOIN_ROLE[name];
    if (role) {
      expect(u.Service.ExecStartPre).toEqual([fetchSecrets(role)]);
      // The fetch waits up to its default timeout (5 min): systemd must not kill it earlier.
      expect(value(u, 'Service', 'TimeoutStartSec')).toBe('10min');
    } else {
      expect(u.Service.ExecStartPre).toBeUndefined();
    }
  });

  it.each(SANDBOXED_UNITS)('GIVEN %s WHEN parsed THEN it is sandboxed: no privileges, read-only system except the data dir, private /tmp and /dev, system calls filtered', (name) => {
    const u = readUnit(name);
    const s = (k: string) => value(u, 'Service', k);
    expect(s('NoNewPrivileges')).toBe('yes');
    expect(s('CapabilityBoundingSet')).toBe('');
    expect(s('ProtectSystem')).toBe('strict');
    expect(words(u, 'Service', 'ReadWritePaths')).toEqual(['/var/lib/teleport']);
    for (const k of ['ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictNamespaces', 'RestrictSUIDSGID', 'LockPersonality']) expect([k, s(k)]).toEqual([k, 'yes']);
    expect(words(u, 'Service', 'RestrictAddressFamilies').sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    expect(u.Service.SystemCallFilter).toEqual(['@system-service', '~@privileged']);
    expect(s('SystemCallErrorNumber')).toBe('EPERM');
    // V8 needs writable+executable memory for its JIT.
    expect(s('MemoryDenyWriteExecute')).toBeUndefined();
  });

  it.each(ROOT_UNITS)('GIVEN %s WHEN parsed THEN its hardening leaves what logins need: setuid/PAM, PTYs, the real file system', (name) => {
    const u = readUnit(name);
    for (const k of ['NoNewPrivileges', 'CapabilityBoundingSet', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'DeviceAllow', 'ProtectClock', 'SystemCallFilter', 'RestrictSUIDSGID']) {
      expect([k, u.Service[k]]).toEqual([k, undefined]);
    }
    expect(value(u, 'Service', 'SystemCallArchitectures')).toBe('native');
  });

  it('GIVEN the teleport command lines of the units WHEN the real teleport CLI describes those commands THEN it accepts every option the units pass', () => {
    // Units and the program must not drift apart: each subcommand and option must exist in the CLI.
    const lines = TELEPORT_UNITS.flatMap((n) => {
      const u = readUnit(n);
      return [...(u.Service.ExecStartPre ?? []), ...(u.Service.ExecStart ?? [])];
    });
    const bySubcommand = new Map<string, Set<string>>();
    for (const line of lines) {
      const [bin, sub, ...args] = line.split(/\s+/);
      expect(bin).toBe('/usr/local/bin/teleport');
      const opts = bySubcommand.get(sub) ?? new Set<string>();
      for (const a of args) if (a.startsWith('--')) opts.add(a);
      bySubcommand.set(sub, opts);
    }
    expect([...bySubcommand.keys()].sort()).toEqual(['configure', 'fetch-join-secrets', 'signal-ready', 'start']);
    for (const [sub, opts] of bySubcommand) {
      const help = sh(process.execPath, [cliPath('teleport'), sub, '--help']);
      expect([sub, help.status]).toEqual([sub, 0]);
      for (const o of opts) expect([sub, o, help.stdout.includes(`${o} `)]).toEqual([sub, o, true]);
    }
    // The fetch's own default timeout stays under the units' TimeoutStartSec (10 min).
    const fetchHelp = sh(process.execPath, [cliPath('teleport'), 'fetch-join-secrets', '--help']).stdout;
    expect(fetchHelp.replace(/\s+/g, ' ')).toMatch(/--timeout <duration>.*\(default: "[1-9]m"\)/);
  });

  it.each(TELEPORT_UNITS)('GIVEN %s WHEN parsed THEN it appends its output and errors to its own file under /var/log/teleport, the one the CloudWatch agent config collects', (name) => {
    const u = readUnit(name);
    expect(u.Service.StandardOutput).toEqual([`append:${unitLogFile(name)}`]);
    expect(u.Service.StandardError).toEqual([`append:${unitLogFile(name)}`]);
  });

  it('GIVEN the agent config of every mode WHEN its log files are listed THEN they are exactly the files the teleport units write (and cloud-init\'s output)', () => {
    const collected = new Set(Object.values(MODE_UNITS).flatMap((unit) => [unit, ...BOOT_UNITS]));
    expect([...collected].sort()).toEqual(TELEPORT_UNITS);
    expect(Object.keys(MODE_UNITS).sort()).toEqual([...INSTANCE_MODES].sort());
    for (const [mode, unit] of Object.entries(MODE_UNITS)) expect([mode, readUnit(unit).Unit.ConditionPathExists]).toEqual([mode, [`/etc/teleport.d/role.${mode}`]]);
  });

  it('GIVEN teleport-cloudwatch-agent WHEN parsed THEN it starts the agent with the generated config, after the generator, only where both the agent and that config exist', () => {
    const u = readUnit(AGENT);
    const config = agentConfigFile(path.dirname(CONF_FILE));
    expect(u.Unit.ConditionPathExists).toEqual([AGENT_CTL, config]);
    expect(words(u, 'Unit', 'After')).toEqual(expect.arrayContaining([GENERATE, 'network-online.target']));
    expect(value(u, 'Service', 'Type')).toBe('oneshot');
    expect(u.Service.ExecStart).toEqual([`${AGENT_CTL} -a fetch-config -m ec2 -s -c file:${config}`]);
    expect(words(u, 'Install', 'WantedBy')).toEqual(['cloud-init.target']);
  });
});

describe('the log rotation of the units\' files (ami/files/logrotate-teleport)', () => {
  it('GIVEN a unit appending to its log file WHEN logrotate rotates it with the AMI\'s rules THEN the old lines are in the rotated copy and the writer goes on at the start of the truncated file, with nothing lost and no signal', () => {
    const logrotate = requireTool('logrotate', 'logrotate');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ami-logrotate-'));
    try {
      // GIVEN the AMI's rules for a log directory of the test's, and a file held open for appending as systemd does
      const rules = fs.readFileSync(path.join(AMI, 'files', 'logrotate-teleport'), 'utf8');
      expect(rules).toContain(`${LOG_DIR}/*.log {`);
      const conf = path.join(tmp, 'teleport.conf');
      fs.writeFileSync(conf, rules.replace(`${LOG_DIR}/`, `${tmp}/`).replace(/^\s*su root root$/m, ''));
      const file = path.join(tmp, 'teleport-auth.log');
      const fd = fs.openSync(file, 'a');
      try {
        fs.writeSync(fd, 'line 1\nline 2\n');
        // WHEN it is rotated (forced: the file is younger than a day)
        const r = sh(logrotate, ['--force', '--state', path.join(tmp, 'state'), conf]);
        expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
        fs.writeSync(fd, 'line 3\n');
      } finally {
        fs.closeSync(fd);
      }
      // THEN (delaycompress: the first rotation is not compressed yet)
      expect(fs.readFileSync(`${file}.1`, 'utf8')).toBe('line 1\nline 2\n');
      expect(fs.readFileSync(file, 'utf8')).toBe('line 3\n');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
