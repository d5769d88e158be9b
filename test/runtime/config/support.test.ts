/**
 * No key of teleport.yaml and no `teleport start` flag is accepted silently.
 * The test walks every key of FileConfigSchema (sections, nested sections,
 * list items) and every flag of `teleport start`; each must be either
 *  - listed in runtime/config/support.ts, and then setting it gives that
 *    entry's refusal or warning, at the key's line, through buildConfig; or
 *  - consumed: setting it changes the TeleportConfig that buildConfig returns
 *    (different values give different configs), and every field that
 *    changes is read by the services (a property access `.field` somewhere
 *    in runtime/ outside runtime/config/).
 * A key added to the schema fails here until it has a sample below and is
 * consumed or listed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { z } from 'zod';
import { startCommand, toStartFlags } from '../../../runtime/cli/start-flags';
import { buildConfig, ConfigError, FileConfigSchema, parseConfig, type FileConfig, type StartFlags, type TeleportConfig } from '../../../runtime/config';
import { CHOICES } from '../../../runtime/config/schema';
import { FLAG_SUPPORT, KEY_SUPPORT, type FlagSupport, type KeySupport } from '../../../runtime/config/support';
import { tempDirWith } from './helpers';

const ENV = { HOME: '/home/alice' };
const PIN = 'sha256:' + '7e12c17c20d9cb504bbcb3f0236be3f446861f1396dcbb44425fe28ec1c108f1';
const ROOT = path.resolve(__dirname, '..', '..', '..');

// ---------------------------------------------------------------- the schema's keys

interface Leaf {
  /** Keys from the top; `[]` for "an item of this list". */
  path: string[];
  /** For enums and booleans: every value the key takes. */
  choices?: readonly string[];
}

function unwrap(node: z.core.$ZodType): { node: z.core.$ZodType; choices?: readonly string[] } {
  let choices: readonly string[] | undefined;
  for (;;) {
    choices ??= CHOICES.get(node)?.values;
    const def = node._zod.def as unknown as Record<string, any>;
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') node = def.innerType;
    else if (def.type === 'pipe' && def.in._zod.def.type === 'transform') node = def.out; // z.preprocess(...)
    else return { node, ...(choices ? { choices } : {}) };
  }
}

const typeOf = (node: z.core.$ZodType) => (node._zod.def as unknown as { type: string }).type;

function schemaLeaves(schema: z.core.$ZodType, at: string[] = []): Leaf[] {
  const { node, choices } = unwrap(schema);
  const def = node._zod.def as unknown as Record<string, any>;
  if (def.type === 'object') return Object.entries(def.shape as Record<string, z.core.$ZodType>).flatMap(([k, v]) => schemaLeaves(v, [...at, k]));
  if (def.type === 'array' && typeOf(unwrap(def.element).node) === 'object') return schemaLeaves(def.element, [...at, '[]']);
  return [{ path: at, ...(choices ? { choices } : {}) }];
}

const keyName = (p: readonly string[]) => p.join('.').replace(/\.\[\]/g, '[]');
const LEAVES = schemaLeaves(FileConfigSchema);

// ---------------------------------------------------------------- sample values

type Doc = Record<string, any>;
interface Sample {
  /** Values to set (not needed for enums and booleans: all their values are tried). */
  values?: unknown[];
  /** Files to set them in (default: an empty one), and to compare with. A context may set the key itself, to another value. */
  contexts?: Doc[];
}

const DYNAMO: Doc = { teleport: { storage: { type: 'dynamodb', table_name: 'state', region: 'eu-west-1' } } };
const ETCD: Doc = { teleport: { storage: { type: 'etcd', peers: ['https://etcd0:2379'] } } };
const KEYPAIR: Doc = { proxy_service: { https_key_file: '/k0.pem', https_cert_file: '/c0.pem' } };
const ACME: Doc = { proxy_service: { public_addr: ['proxy.example.com'], acme: { enabled: true } } };
const DYNAMO_OR_NOT = [{}, DYNAMO];
/** Files the PKCS#11 settings name: they must exist (a module) and hold a PIN (pin_path). */
const HSM_FILES = tempDirWith({ 'a.so': 'module a', 'b.so': 'module b', pin1: '1111\n', pin2: '2222\n' });
const pkcs11 = (keys: Doc): Doc => ({ auth_service: { ca_key_params: { pkcs11: { module_path: path.join(HSM_FILES, 'a.so'), ...keys } } } });
const ETCD_OR_NOT = [{}, ETCD];

/** The item a list-item key is set in, the rest of the item being this. */
const BASE_ITEMS: Record<string, Doc> = {
  'ssh_service.commands': { name: 'arch', command: ['uname', '-p'], period: '1h' },
  'proxy_service.https_keypairs': { key_file: '/k0.pem', cert_file: '/c0.pem' },
};

const SAMPLES: Record<string, Sample> = {
  'teleport.nodename': { values: ['other-node'] },
  'teleport.data_dir': { values: ['/srv/teleport'] },
  'teleport.pid_file': { values: ['/run/teleport.pid'] },
  'teleport.auth_token': { values: ['join-token'] },
  'teleport.ca_pin': { values: [[PIN]] },
  'teleport.advertise_ip': { values: ['10.0.0.5'] },
  'teleport.diag_addr': { values: ['127.0.0.1:3000'] },
  'teleport.auth_servers': { values: [['10.0.0.7:3025']] },
  'teleport.connection_limits.max_connections': { values: [7] },
  'teleport.connection_limits.max_users': { values: [7] },
  'teleport.log.output': { values: ['stdout', '/var/log/teleport.log', 'syslog'] },
  'teleport.log.severity': {},
  'teleport.storage.type': { contexts: [{ teleport: { storage: { table_name: 'state', region: 'eu-west-1', peers: ['https://etcd0:2379'] } } }] },
  'teleport.storage.path': { values: ['state'], contexts: [{}, DYNAMO, ETCD] },
  'teleport.storage.table_name': { values: ['other'], contexts: DYNAMO_OR_NOT },
  'teleport.storage.region': { values: ['us-east-1'], contexts: [{}, DYNAMO, { teleport: { storage: { audit_sessions_uri: 's3://recordings' } } }] },
  'teleport.storage.endpoint': { values: ['http://localhost:8000'], contexts: [{}, DYNAMO, { teleport: { storage: { audit_events_uri: 'dynamodb://events' } } }] },
  'teleport.storage.access_key': { values: ['AKIAEXAMPLE'], contexts: DYNAMO_OR_NOT },
  'teleport.storage.secret_key': { values: ['secret'], contexts: DYNAMO_OR_NOT },
  'teleport.storage.billing_mode': { contexts: DYNAMO_OR_NOT },
  'teleport.storage.read_capacity_units': { values: [10], contexts: DYNAMO_OR_NOT },
  'teleport.storage.write_capacity_units': { values: [10], contexts: DYNAMO_OR_NOT },
  'teleport.storage.continuous_backups': { contexts: DYNAMO_OR_NOT },
  'teleport.storage.audit_table_name': { values: ['events'] },
  'teleport.storage.audit_events_uri': { values: [['file:///var/log/audit']] },
  'teleport.storage.audit_sessions_uri': { values: ['s3://recordings/records'] },
  'teleport.storage.poll_stream_period': { values: ['5s'], contexts: [{}, DYNAMO, ETCD] },
  'teleport.storage.buffer_size': { values: [100] },
  'teleport.storage.peers': { values: [['https://etcd1:2379']], contexts: ETCD_OR_NOT },
  'teleport.storage.tls_cert_file': { values: ['/etc/etcd/cert.pem'], contexts: ETCD_OR_NOT },
  'teleport.storage.tls_key_file': { values: ['/etc/etcd/key.pem'], contexts: ETCD_OR_NOT },
  'teleport.storage.tls_ca_file': { values: ['/etc/etcd/ca.pem'], contexts: ETCD_OR_NOT },
  'teleport.storage.prefix': { values: ['/other'], contexts: ETCD_OR_NOT },
  'teleport.storage.insecure': { contexts: ETCD_OR_NOT },
  'teleport.ca_signature_algo': { values: ['ssh-rsa'] },
  'teleport.ciphers': { values: [['aes128-ctr']] },
  'teleport.kex_algos': { values: [['curve25519-sha256']] },
  'teleport.mac_algos': { values: [['hmac-sha2-256']] },
  'teleport.ciphersuites': { values: [['tls-ecdhe-ecdsa-with-aes-128-gcm-sha256']] },
  'auth_service.enabled': {},
  'auth_service.listen_addr': { values: ['127.0.0.1:4025'] },
  'auth_service.public_addr': { values: [['auth.example.com']] },
  'auth_service.cluster_name': { values: ['other.example.com'] },
  'auth_service.tokens': { values: [['node:static-token']] },
  'auth_service.authentication.type': {},
  'auth_service.authentication.connector_name': { values: ['okta', 'corp'], contexts: [{}, { auth_service: { authentication: { type: 'oidc' } } }] },
  'auth_service.authentication.second_factor': {},
  'auth_service.authentication.u2f.app_id': { values: ['https://proxy.example.com:3080'] },
  'auth_service.authentication.u2f.facets': { values: [['https://proxy.example.com:3080']] },
  'auth_service.session_recording': {},
  'auth_service.proxy_checks_host_keys': {},
  'auth_service.client_idle_timeout': { values: ['5m'] },
  'auth_service.disconnect_expired_cert': {},
  'auth_service.keep_alive_interval': { values: ['1m'] },
  'auth_service.keep_alive_count_max': { values: [5] },
  'auth_service.license_file': { values: ['/etc/teleport/license.pem'] },
  'auth_service.ca_key_type': {},
  'auth_service.ca_key_params.pkcs11.module_path': { values: [path.join(HSM_FILES, 'b.so')], contexts: [pkcs11({ token_label: 'hsm1', pin: '1' })] },
  'auth_service.ca_key_params.pkcs11.slot_number': { values: [3], contexts: [pkcs11({ slot_number: 1, pin: '1' })] },
  'auth_service.ca_key_params.pkcs11.token_label': { values: ['hsm2'], contexts: [pkcs11({ token_label: 'hsm1', pin: '1' })] },
  'auth_service.ca_key_params.pkcs11.pin': { values: ['2'], contexts: [pkcs11({ token_label: 'hsm1', pin: '1' })] },
  'auth_service.ca_key_params.aws_kms.account': { values: ['210987654321'], contexts: [{ auth_service: { ca_key_params: { aws_kms: { account: '123456789012', region: 'us-west-2' } } } }] },
  'auth_service.ca_key_params.aws_kms.region': { values: ['eu-west-1'], contexts: [{ auth_service: { ca_key_params: { aws_kms: { account: '123456789012', region: 'us-west-2' } } } }] },
  'auth_service.ca_key_params.aws_kms.signer_role_arn': {
    values: ['arn:aws:iam::123456789012:role/teleport-auth', 'arn:aws:iam::123456789012:role/other/auth'],
    contexts: [{ auth_service: { ca_key_params: { aws_kms: { account: '123456789012', region: 'us-west-2' } } } }],
  },
  'auth_service.ca_key_params.pkcs11.pin_path': { values: [path.join(HSM_FILES, 'pin2')], contexts: [pkcs11({ token_label: 'hsm1', pin_path: path.join(HSM_FILES, 'pin1') })] },
  'ssh_service.enabled': {},
  'ssh_service.listen_addr': { values: ['127.0.0.1:4022'] },
  'ssh_service.public_addr': { values: [['node.example.com']] },
  'ssh_service.labels': { values: [{ env: 'prod' }] },
  'ssh_service.commands[].name': { values: ['os'] },
  'ssh_service.commands[].command': { values: [['uname', '-r']] },
  'ssh_service.commands[].period': { values: ['5m'] },
  'ssh_service.permit_user_env': {},
  'ssh_service.audit_failure': {},
  // above auto's largest (8), so that each differs from the default on any machine
  'ssh_service.workers': { values: ['12', '17'] },
  'ssh_service.login_grace_time': { values: ['45s', '0s'] },
  'ssh_service.max_startups': { values: ['5:50:20', '7'] },
  'ssh_service.per_source_max_startups': { values: ['3:30:9'] },
  'ssh_service.enhanced_recording.enabled': {},
  'ssh_service.enhanced_recording.command_buffer_size': { values: [8] },
  'ssh_service.enhanced_recording.disk_buffer_size': { values: [8] },
  'ssh_service.enhanced_recording.network_buffer_size': { values: [8] },
  'ssh_service.enhanced_recording.cgroup_path': { values: ['/cgroup2'] },
  'ssh_service.pam.enabled': {},
  'ssh_service.pam.service_name': { values: ['teleport'] },
  'ssh_service.pam.use_pam_auth': {},
  'proxy_service.enabled': {},
  'proxy_service.listen_addr': { values: ['127.0.0.1:4023'] },
  'proxy_service.tunnel_listen_addr': { values: ['127.0.0.1:4024'] },
  'proxy_service.web_listen_addr': { values: ['127.0.0.1:4080'] },
  'proxy_service.public_addr': { values: [['proxy.example.com']] },
  'proxy_service.ssh_public_addr': { values: [['proxy.example.com']] },
  'proxy_service.tunnel_public_addr': { values: [['proxy.example.com']] },
  'proxy_service.direct_dial_cidrs': { values: [['10.0.0.0/8'], ['192.168.1.7', 'fd00::/8']] },
  'proxy_service.login_grace_time': { values: ['45s'] },
  'proxy_service.max_startups': { values: ['5:50:20'] },
  'proxy_service.per_source_max_startups': { values: ['3:30:9'] },
  'proxy_service.trust_x_forwarded_for_from': { values: [['10.0.0.0/8'], ['172.16.0.1']] },
  'proxy_service.https_key_file': { values: ['/k1.pem'], contexts: [KEYPAIR] },
  'proxy_service.https_cert_file': { values: ['/c1.pem'], contexts: [KEYPAIR] },
  'proxy_service.https_keypairs[].key_file': { values: ['/k1.pem'] },
  'proxy_service.https_keypairs[].cert_file': { values: ['/c1.pem'] },
  'proxy_service.acme.enabled': { contexts: [{ proxy_service: { public_addr: ['proxy.example.com'] } }] },
  'proxy_service.acme.email': { values: ['ops@example.com'], contexts: [ACME] },
  'proxy_service.acme.uri': { values: ['https://acme.example.net/dir'], contexts: [ACME] },
  'proxy_service.acme.renew_before': { values: ['720h'], contexts: [ACME] },
  'proxy_service.kubernetes.enabled': {},
  'proxy_service.kubernetes.listen_addr': { values: ['0.0.0.0:3026'] },
  'proxy_service.kubernetes.public_addr': { values: [['kube.example.com']] },
  'proxy_service.kubernetes.kubeconfig_file': { values: ['/etc/kubeconfig'] },
};

/** Values that mean the same on purpose (so give the same TeleportConfig). */
const SAME_MEANING: Record<string, string[][]> = {
  // dir, sqlite (and bolt, an alias) are all the embedded SQLite backend.
  'teleport.storage.type': [['dir', 'sqlite']],
};

/** TeleportConfig fields that other work in progress wires into the SSH and TLS servers. */
const WIRED_ELSEWHERE = new Set(['ciphers', 'kexAlgos', 'macAlgos', 'ciphersuites']);

// ---------------------------------------------------------------- building files

/** Block YAML with one key a line (values as JSON, which is YAML too), and the line of each key. */
function toYaml(doc: Doc): { text: string; lineOf: Map<string, number> } {
  const lines: string[] = [];
  const lineOf = new Map<string, number>();
  const walk = (o: Doc, at: string[]) => {
    for (const [k, v] of Object.entries(o)) {
      const p = [...at, k];
      lineOf.set(p.join('.'), lines.length + 1);
      const pad = '  '.repeat(at.length);
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) {
        lines.push(`${pad}${k}:`);
        walk(v, p);
      } else lines.push(`${pad}${k}: ${JSON.stringify(v)}`);
    }
  };
  walk(doc, []);
  return { text: lines.join('\n') + '\n', lineOf };
}

function setIn(doc: Doc, p: readonly string[], value: unknown): Doc {
  const out = structuredClone(doc);
  let o = out;
  for (const k of p.slice(0, -1)) o = o[k] = o[k] && typeof o[k] === 'object' ? o[k] : {};
  o[p[p.length - 1]] = value;
  return out;
}

/** The file with the key set to `value` (for a list-item key: in a list of one base item). */
function withValue(leaf: Leaf, context: Doc, value: unknown): Doc {
  const i = leaf.path.indexOf('[]');
  if (i < 0) return setIn(context, leaf.path, value);
  const list = leaf.path.slice(0, i);
  return setIn(context, list, [{ ...BASE_ITEMS[list.join('.')], [leaf.path[i + 1]]: value }]);
}

/** The file the values are compared with: the context as it is (a list-item key in the base item). */
function baseDoc(leaf: Leaf, context: Doc): Doc {
  const i = leaf.path.indexOf('[]');
  return i < 0 ? context : withValue(leaf, context, BASE_ITEMS[leaf.path.slice(0, i).join('.')][leaf.path[i + 1]]);
}

interface Built {
  doc: Doc;
  file: FileConfig;
  lineOf: Map<string, number>;
  config?: TeleportConfig;
  errors?: string[];
}

function build(doc: Doc, flags: StartFlags = {}): Built {
  const { text, lineOf } = toYaml(doc);
  const file = parseConfig(text, 'teleport.yaml'); // a sample the schema refuses fails the test here
  try {
    return { doc, file, lineOf, config: buildConfig(file, flags, ENV) };
  } catch (err) {
    if (err instanceof ConfigError) return { doc, file, lineOf, errors: err.message.split('\n') };
    throw err;
  }
}

function valueAt(o: unknown, p: readonly string[]): unknown {
  for (const k of p) o = o !== null && typeof o === 'object' ? (o as Doc)[k] : undefined;
  return o;
}

const messageOf = (e: KeySupport | FlagSupport, value: unknown, file: FileConfig) =>
  typeof e.message === 'string' ? e.message : e.message(value, file);

/** The support.ts entries that apply to this key in this file. */
function entriesFor(leaf: Leaf, file: FileConfig): KeySupport[] {
  return KEY_SUPPORT.filter((e) => {
    if (!e.path.every((k, i) => leaf.path[i] === k)) return false;
    const v = valueAt(file, e.path);
    return v !== undefined && (!e.when || e.when(v, file));
  });
}

/** Each entry's refusal or warning is there, as `teleport.yaml:<line>:<col>: <key>: <message>` at the entry's key. */
function expectFindings(b: Built, entries: KeySupport[]): void {
  for (const e of entries) {
    const line = b.lineOf.get(e.path.join('.'));
    const text = `teleport.yaml:${line}:${2 * (e.path.length - 1) + 1}: ${e.path.join('.')}: ${messageOf(e, valueAt(b.file, e.path), b.file)}`;
    if (e.action === 'refuse') expect(b.errors ?? ['(start was not refused)']).toContain(text);
    else expect(b.config?.warnings ?? b.errors).toContain(text);
  }
}

// ---------------------------------------------------------------- consumption

const withoutWarnings = (c: TeleportConfig) => ({ ...c, warnings: [] });

function diffPaths(a: unknown, b: unknown, at: string[] = []): string[][] {
  if (isDeepStrictEqual(a, b)) return [];
  const bothArrays = Array.isArray(a) && Array.isArray(b) && a.length === b.length;
  const bothObjects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b);
  if (bothArrays || bothObjects) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    return [...keys].flatMap((k) => diffPaths((a as Doc)[k], (b as Doc)[k], [...at, k]));
  }
  return [at];
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every name used as `.name` (or `?.name`) in the services' code, i.e. outside runtime/config. */
const READ_PROPERTIES = new Set(
  sourceFiles(path.join(ROOT, 'runtime'))
    .filter((f) => !f.startsWith(path.join(ROOT, 'runtime', 'config') + path.sep))
    .flatMap((f) => [...fs.readFileSync(f, 'utf8').matchAll(/\??\.\s*([A-Za-z_$][\w$]*)/g)].map((m) => m[1])),
);

/** Every field where the configs differ is read by the services. */
function expectRead(a: TeleportConfig, b: TeleportConfig): void {
  for (const p of diffPaths(withoutWarnings(a), withoutWarnings(b))) {
    const unread = p.filter((seg) => !/^\d+$/.test(seg) && !READ_PROPERTIES.has(seg) && !WIRED_ELSEWHERE.has(seg));
    expect({ field: p.join('.'), unread }).toEqual({ field: p.join('.'), unread: [] });
  }
}

// ---------------------------------------------------------------- the walk

/** Every (file, values) a key is tried with. */
function trials(leaf: Leaf): { context: Doc; values: unknown[] }[] {
  const sample = SAMPLES[keyName(leaf.path)];
  const values = leaf.choices ? [...leaf.choices] : (sample.values ?? []);
  return (sample.contexts ?? [{}]).map((context) => ({ context, values }));
}

describe('every key of teleport.yaml is consumed, refused or warned about', () => {
  test('GIVEN the schema WHEN walked THEN every key has a sample here, and every sample names a key', () => {
    const keys = LEAVES.map((l) => keyName(l.path));
    expect(keys.length).toBeGreaterThan(80);
    expect(keys.filter((k) => !SAMPLES[k])).toEqual([]);
    expect(Object.keys(SAMPLES).filter((k) => !keys.includes(k))).toEqual([]);
    for (const l of LEAVES) if (!l.choices) expect([keyName(l.path), SAMPLES[keyName(l.path)].values?.length ?? 0]).not.toEqual([keyName(l.path), 0]);
  });

  test.each(LEAVES.map((l) => [keyName(l.path), l] as const))('%s', (_name, leaf) => {
    for (const { context, values } of trials(leaf)) {
      // GIVEN the file without the key (or with the context's value), and then with each sample value
      const base = build(baseDoc(leaf, context));
      expect(base.errors).toBeUndefined();
      const consumed: { value: unknown; config: TeleportConfig }[] = [];
      for (const value of values) {
        const b = build(withValue(leaf, context, value));
        const entries = entriesFor(leaf, b.file);
        if (entries.length > 0) {
          // THEN a listed setting gives its refusal or warning, at its line
          expectFindings(b, entries);
          continue;
        }
        // THEN any other value is accepted
        expect({ value, errors: b.errors }).toEqual({ value, errors: undefined });
        consumed.push({ value, config: b.config! });
      }
      // AND lands in the config: the accepted values give different configs (an open value: different from
      // the base file's), in fields the services read
      const same = SAME_MEANING[keyName(leaf.path)] ?? [];
      const alike = (x: unknown, y: unknown) => same.some((g) => g.includes(String(x)) && g.includes(String(y)));
      for (const x of consumed) {
        if (!leaf.choices) {
          expect({ value: x.value, sameAsBase: isDeepStrictEqual(withoutWarnings(x.config), withoutWarnings(base.config!)) }).toEqual({
            value: x.value,
            sameAsBase: false,
          });
        }
        expectRead(x.config, base.config!);
        for (const y of consumed) {
          if (x === y || alike(x.value, y.value)) continue;
          expect({ values: [x.value, y.value], same: isDeepStrictEqual(withoutWarnings(x.config), withoutWarnings(y.config)) }).toEqual({
            values: [x.value, y.value],
            same: false,
          });
          expectRead(x.config, y.config);
        }
      }
    }
  });

  test('GIVEN support.ts WHEN the walk runs THEN every entry is met by some key and value (no stale entries)', () => {
    const met = new Set<KeySupport>();
    for (const leaf of LEAVES) {
      for (const { context, values } of trials(leaf)) {
        for (const value of values) for (const e of entriesFor(leaf, build(withValue(leaf, context, value)).file)) met.add(e);
      }
    }
    expect(KEY_SUPPORT.filter((e) => !met.has(e)).map((e) => e.path.join('.'))).toEqual([]);
  });
});

// ---------------------------------------------------------------- the flags of `teleport start`

/** A value for each flag, as commander hands it over. */
const FLAG_SAMPLES: Record<string, unknown> = {
  debug: true,
  insecureNoTls: true,
  roles: 'node',
  pidFile: '/run/teleport.pid',
  advertiseIp: '10.0.0.5',
  diagAddr: '127.0.0.1:3000',
  listenIp: '10.0.0.6',
  authServer: ['10.0.0.7:3025'],
  token: 'join-token',
  caPin: [PIN],
  nodename: 'other-node',
  config: '/etc/teleport.yaml',
  labels: 'env=prod',
  insecure: true,
  permitUserEnv: true,
  dataDir: '/srv/teleport',
};

/** Flags read before buildConfig runs, and the code in runtime/cli/teleport.ts that reads each. */
const READ_BY_THE_CLI: Record<string, string> = {
  config: 'resolveConfigPath(opts.config, process.env)',
};

describe('every flag of teleport start is consumed or warned about', () => {
  const options = startCommand().options;
  const empty = () => parseConfig('', 'teleport.yaml');

  test('GIVEN the start command WHEN its flags are listed THEN each has a sample here, and each sample names a flag', () => {
    const names = options.map((o) => o.attributeName());
    expect(names.length).toBeGreaterThan(10);
    expect(names.filter((n) => !(n in FLAG_SAMPLES))).toEqual([]);
    expect(Object.keys(FLAG_SAMPLES).filter((n) => !names.includes(n))).toEqual([]);
  });

  test.each(options.map((o) => [o.long!, o.attributeName()] as const))('%s', (long, attr) => {
    // GIVEN the flag set
    const flags = toStartFlags({ [attr]: FLAG_SAMPLES[attr] });
    const entries = FLAG_SUPPORT.filter((e) => flags[e.flag] !== undefined && (!e.when || e.when(flags[e.flag], empty())));
    if (entries.length > 0) {
      // THEN a listed flag gives its warning (or refusal)
      for (const e of entries) {
        expect(e.name).toBe(long);
        const text = `${e.name}: ${messageOf(e, flags[e.flag], empty())}`;
        if (e.action === 'refuse') expect(() => buildConfig(empty(), flags, ENV)).toThrow(text);
        else expect(buildConfig(empty(), flags, ENV).warnings).toEqual([text]);
      }
      return;
    }
    if (READ_BY_THE_CLI[attr]) {
      // THEN a flag the CLI reads itself is read there
      expect(fs.readFileSync(path.join(ROOT, 'runtime', 'cli', 'teleport.ts'), 'utf8')).toContain(READ_BY_THE_CLI[attr]);
      return;
    }
    // THEN any other flag changes the config, in fields the services read
    const with_ = buildConfig(empty(), flags, ENV);
    const without = buildConfig(empty(), {}, ENV);
    expect(isDeepStrictEqual(withoutWarnings(with_), withoutWarnings(without))).toBe(false);
    expectRead(with_, without);
  });
});

// ---------------------------------------------------------------- the settings of the issue, spelled out

describe('unsupported settings, as users see them', () => {
  const lines = (...l: string[]) => l.join('\n') + '\n';
  const errorsOf = (text: string) => {
    try {
      buildConfig(parseConfig(text, 'teleport.yaml'), {}, ENV);
    } catch (err) {
      if (err instanceof ConfigError) return err.message.split('\n');
      throw err;
    }
    throw new Error('expected the configuration to be refused');
  };

  test('GIVEN security settings that would not take effect WHEN built THEN each is refused at its line, in file order, saying what to use instead', () => {
    expect(
      errorsOf(
        lines(
          'auth_service:',
          '  proxy_checks_host_keys: yes',
          '  authentication:',
          '    type: saml',
          '    second_factor: u2f',
          'ssh_service:',
          '  enhanced_recording:',
          '    enabled: yes',
          '  pam:',
          '    use_pam_auth: yes',
        ),
      ),
    ).toEqual([
      'teleport.yaml:4:5: auth_service.authentication.type: saml is not supported; use github or oidc (single sign-on), or local (users added with "tctl users add")',
      'teleport.yaml:5:5: auth_service.authentication.second_factor: u2f is not supported; security keys work with webauthn (or on/optional); use otp (the default), webauthn, on, optional or off',
      'teleport.yaml:8:5: ssh_service.enhanced_recording.enabled: enhanced session recording (BPF) is not supported yet; set enabled: no (session_recording: node still records what the terminal shows)',
      'teleport.yaml:10:5: ssh_service.pam.use_pam_auth: PAM authentication is not supported (nodes authenticate users by certificate only); set use_pam_auth: no. pam.enabled runs the PAM account and session modules',
    ]);
  });

  test('GIVEN the values this implementation does WHEN built THEN they are accepted without a word', () => {
    const cfg = buildConfig(
      parseConfig(
        lines(
          'auth_service:',
          '  session_recording: proxy',
          '  proxy_checks_host_keys: no',
          '  authentication: {type: local, second_factor: "off"}',
          'ssh_service:',
          '  enhanced_recording: {enabled: no}',
          '  pam: {enabled: yes, use_pam_auth: no}',
          'proxy_service:',
          '  kubernetes: {enabled: no}',
        ),
        'teleport.yaml',
      ),
      {},
      ENV,
    );
    expect(cfg.auth.sessionRecording).toBe('proxy');
    expect(cfg.auth.proxyChecksHostKeys).toBe(false);
    expect(cfg.auth.authentication).toEqual({ type: 'local', secondFactor: 'off' });
    expect(cfg.ssh.pam.enabled).toBe(true);
    expect(cfg.warnings).toEqual([]);
  });

  test.each(['webauthn', 'on', 'optional'] as const)('GIVEN second_factor %s and the proxy\'s public_addr WHEN built THEN it is accepted without a word and kept', (mode) => {
    const cfg = buildConfig(
      parseConfig(lines('auth_service:', `  authentication: {type: local, second_factor: ${mode}}`, 'proxy_service:', '  public_addr: proxy.example.com:3080'), 'teleport.yaml'),
      {},
      ENV,
    );
    expect(cfg.auth.authentication).toEqual({ type: 'local', secondFactor: mode });
    expect(cfg.warnings).toEqual([]);
  });

  test('GIVEN second_factor webauthn and a proxy without public_addr in the same process WHEN built THEN it warns that keys need it', () => {
    const cfg = buildConfig(parseConfig(lines('auth_service:', '  authentication:', '    second_factor: webauthn'), 'teleport.yaml'), {}, ENV);
    expect(cfg.warnings).toEqual([
      'teleport.yaml:3:20: auth_service.authentication.second_factor: webauthn takes security keys, which need proxy_service.public_addr (the DNS name users browse to, their relying party ID): without it the proxy runs no security key ceremony',
    ]);
  });

  test('GIVEN log output syslog and --insecure WHEN built THEN the log goes to stderr and both are warned about', () => {
    const cfg = buildConfig(parseConfig(lines('teleport:', '  log:', '    output: syslog'), 'teleport.yaml'), { insecure: true }, ENV);
    expect(cfg.log.output).toBe('stderr');
    expect(cfg.warnings).toEqual([
      'teleport.yaml:3:5: teleport.log.output: syslog is not supported; logging to stderr instead (under systemd, the journal keeps it)',
      expect.stringMatching(/^--insecure: trust with a root cluster is established without verifying/),
    ]);
  });
});
