import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../../../runtime/config';
import { loadConf, parseConfText, validateConf } from '../../../runtime/instance/conf';
import { configureFromConf } from '../../../runtime/instance/configure';
import { readInstanceFacts } from '../../../runtime/instance/imds';
import { startImds, type Imitation } from '../../helpers/ec2-imitations';
import { runCli, tempDir } from '../../helpers/proc';

const META = {
  'local-ipv4': '10.0.1.17',
  'local-hostname': 'ip-10-0-1-17.eu-west-1.compute.internal',
  'public-ipv4': '203.0.113.7',
  'instance-id': 'i-0123456789abcdef0',
  'instance-type': 't3.small',
  'placement/availability-zone': 'eu-west-1a',
};
const PROXY_ACM = [
  'TELEPORT_ROLE=proxy',
  'EC2_REGION=eu-west-1',
  'TELEPORT_CLUSTER_NAME="acme"',
  "TELEPORT_AUTH_SERVER_LB='acme-auth.elb.eu-west-1.amazonaws.com'",
  'TELEPORT_DOMAIN_NAME=teleport.example.com',
  'TELEPORT_PROXY_SERVER_LB=acme-proxy.elb.eu-west-1.amazonaws.com',
  'USE_ACM=true',
];

let imds: Imitation;
let dir: string;
beforeAll(async () => {
  imds = await startImds(META);
});
afterAll(() => imds.close());
beforeEach(() => {
  dir = tempDir('configure-');
  fs.mkdirSync(path.join(dir, 'teleport.d'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const confFile = () => path.join(dir, 'teleport.d', 'conf');
const output = () => path.join(dir, 'teleport.yaml');
const writeConf = (lines: string[]) => fs.writeFileSync(confFile(), lines.join('\n') + '\n');
const facts = () => readInstanceFacts({ endpoint: imds.url, retries: 0 });
const listing = () => fs.readdirSync(dir, { recursive: true }).map(String).sort();

/** The problems a conf text has, one `file:line: message` line each. */
function problems(lines: string[]): string[] {
  try {
    const { vars, lineOf } = parseConfText(lines.join('\n'), 'conf');
    validateConf(vars, 'conf', lineOf);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message.split('\n');
  }
  throw new Error('the conf was accepted');
}

describe('/etc/teleport.d/conf validation', () => {
  test('GIVEN quoted values, comments and export lines WHEN read THEN they are taken as a shell would', () => {
    const conf = validateConf(parseConfText(['# user data', 'export TELEPORT_ROLE="node"', "TELEPORT_CLUSTER_NAME='acme'", 'EC2_REGION=eu-west-1', 'TELEPORT_AUTH_SERVER_LB=auth.internal', ''].join('\n'), 'c').vars, 'c');
    expect(conf).toMatchObject({ role: 'node', clusterName: 'acme', region: 'eu-west-1', authServerLb: 'auth.internal', useAcm: false });
  });

  test('GIVEN an unknown role WHEN validated THEN the message names the line and the roles there are', () => {
    expect(problems(['EC2_REGION=eu-west-1', 'TELEPORT_ROLE=monitor'])).toEqual([
      'conf:2:1: TELEPORT_ROLE: unknown role "monitor" (expected auth, proxy, node, or auth,node,proxy for all roles on one instance)',
    ]);
  });

  test('GIVEN ACM without a domain WHEN validated THEN it says the domain is required', () => {
    expect(problems(['TELEPORT_ROLE=auth,node,proxy', 'USE_ACM=true'])).toEqual([
      'conf: TELEPORT_DOMAIN_NAME: is required (the domain the ACM certificate is for) when USE_ACM=true',
    ]);
  });

  test('GIVEN a bad port, a bad boolean and a misspelt name WHEN validated THEN each is reported at its line', () => {
    expect(problems(['TELEPORT_ROLE=auth,node,proxy', 'TELEPORT_EXTERNAL_PORT=70000', 'USE_ACM=maybe', 'TELEPORT_DOMIAN_NAME=x.example.com'])).toEqual([
      'conf:4:1: TELEPORT_DOMIAN_NAME: unknown variable (did you mean TELEPORT_DOMAIN_NAME?)',
      'conf:3:1: USE_ACM: expected true or false, got "maybe"',
      'conf:2:1: TELEPORT_EXTERNAL_PORT: expected a port number from 1 to 65535, got "70000"',
    ]);
  });

  test('GIVEN a table without the events table and bucket WHEN validated THEN it says all three are needed', () => {
    expect(problems(['TELEPORT_ROLE=auth,node,proxy', 'EC2_REGION=eu-west-1', 'TELEPORT_DYNAMO_TABLE_NAME=acme-state'])).toEqual([
      'conf: TELEPORT_DYNAMO_EVENTS_TABLE_NAME: is required with TELEPORT_DYNAMO_TABLE_NAME (DynamoDB and S3 storage needs all of TELEPORT_DYNAMO_TABLE_NAME, TELEPORT_DYNAMO_EVENTS_TABLE_NAME, TELEPORT_S3_BUCKET)',
    ]);
  });

  test('GIVEN a node without the auth address or region WHEN validated THEN both are reported', () => {
    expect(problems(['TELEPORT_ROLE=node', 'TELEPORT_CLUSTER_NAME=acme'])).toEqual([
      'conf: TELEPORT_AUTH_SERVER_LB: is required for TELEPORT_ROLE=node (the auth servers to join)',
      'conf: EC2_REGION: is required for TELEPORT_ROLE=node (the join token is read from SSM)',
    ]);
  });

  test('GIVEN shell syntax that would run something WHEN read THEN it is refused, not evaluated', () => {
    expect(problems(['TELEPORT_ROLE=node', 'TELEPORT_CLUSTER_NAME=$(curl evil)', 'not a line'])).toEqual([
      'conf:2:1: TELEPORT_CLUSTER_NAME: unbalanced quotes or an unquoted space in "$(curl evil)"',
      'conf:3:1: expected KEY=value, got "not a line"',
    ]);
  });

  test('GIVEN variables of the AWS guide this image does not support WHEN validated THEN they are accepted and listed', () => {
    const conf = validateConf({ TELEPORT_ROLE: '', TELEPORT_LICENSE_PATH: '/var/lib/teleport/license.pem', TELEPORT_INFLUXDB_ADDRESS: '' }, 'conf');
    expect(conf.ignored).toEqual(['TELEPORT_LICENSE_PATH']);
  });

  test("GIVEN USE_LETSENCRYPT=true with a domain and an address WHEN validated THEN the conf asks for Let's Encrypt with that contact", () => {
    const conf = validateConf({ TELEPORT_ROLE: '', USE_LETSENCRYPT: 'true', TELEPORT_DOMAIN_NAME: 'teleport.example.com', TELEPORT_DOMAIN_ADMIN_EMAIL: 'ops@example.com' }, 'conf');
    expect(conf).toMatchObject({ letsEncrypt: { email: 'ops@example.com' }, ignored: [] });
    expect(validateConf({ TELEPORT_ROLE: '', USE_LETSENCRYPT: 'false' }, 'conf').letsEncrypt).toBeUndefined();
  });

  test.each<[string, string[], string[]]>([
    ['without a domain', ['TELEPORT_ROLE=auth,node,proxy', 'USE_LETSENCRYPT=true'], ['conf: TELEPORT_DOMAIN_NAME: is required with USE_LETSENCRYPT=true (the name the certificate is for)']],
    [
      'with ACM',
      ['TELEPORT_ROLE=auth,node,proxy', 'USE_LETSENCRYPT=true', 'USE_ACM=true', 'TELEPORT_DOMAIN_NAME=teleport.example.com'],
      ["conf:2:1: USE_LETSENCRYPT: cannot be used with USE_ACM=true: the certificate comes from ACM or from Let's Encrypt, not both"],
    ],
    [
      'on a proxy tier',
      ['TELEPORT_ROLE=proxy', 'USE_LETSENCRYPT=true', 'TELEPORT_CLUSTER_NAME=acme', 'EC2_REGION=eu-west-1', 'TELEPORT_AUTH_SERVER_LB=auth.internal', 'TELEPORT_DOMAIN_NAME=teleport.example.com'],
      ['conf:2:1: USE_LETSENCRYPT: is for the all-in-one instance only (TELEPORT_ROLE=auth,node,proxy), not for TELEPORT_ROLE=proxy'],
    ],
    [
      'with a malformed address',
      ['TELEPORT_ROLE=auth,node,proxy', 'TELEPORT_DOMAIN_ADMIN_EMAIL=ops'],
      ['conf:2:1: TELEPORT_DOMAIN_ADMIN_EMAIL: expected an e-mail address'],
    ],
    ['an address without USE_LETSENCRYPT', ['TELEPORT_ROLE=auth,node,proxy', 'TELEPORT_DOMAIN_ADMIN_EMAIL=ops@example.com'], ["conf:2:1: TELEPORT_DOMAIN_ADMIN_EMAIL: is only used with USE_LETSENCRYPT=true (the Let's Encrypt account's contact)"]],
  ])('GIVEN USE_LETSENCRYPT %s WHEN validated THEN it is refused at the line', (_what, lines, expected) => {
    expect(problems(lines)).toEqual(expected);
  });

  test('GIVEN no conf file WHEN loaded THEN it says user data writes it', () => {
    expect(() => loadConf(path.join(dir, 'missing'))).toThrow(/missing: no such file \(user data writes it at first boot\)/);
  });
});

describe('teleport configure --from-conf', () => {
  test('GIVEN a proxy ACM conf WHEN configured THEN teleport.yaml (0640) and only the role.proxy-acm marker are written', async () => {
    writeConf(PROXY_ACM);
    fs.writeFileSync(path.join(dir, 'teleport.d', 'role.all'), '');
    const r = await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    expect(r).toMatchObject({ mode: 'proxy-acm', generated: true });
    expect(fs.statSync(output()).mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(output(), 'utf8')).toContain('public_addr: teleport.example.com:443');
    expect(fs.readdirSync(path.join(dir, 'teleport.d')).sort()).toEqual(['conf', 'role.proxy-acm']);
  });

  test('GIVEN teleport.yaml exists WHEN configured again with another mode THEN the file and its marker are kept, and the new mode is reported', async () => {
    writeConf(PROXY_ACM);
    await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    fs.appendFileSync(output(), '# a hand edit\n');
    const before = fs.readFileSync(output(), 'utf8');
    writeConf(PROXY_ACM.map((l) => (l === 'USE_ACM=true' ? 'USE_ACM=false' : l)));
    const r = await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    expect(r).toMatchObject({ mode: 'proxy-acm', confMode: 'proxy', generated: false });
    expect(fs.readFileSync(output(), 'utf8')).toBe(before);
    expect(fs.readdirSync(path.join(dir, 'teleport.d')).sort()).toEqual(['conf', 'role.proxy-acm']);
  });

  test('GIVEN a hand-written teleport.yaml and no marker WHEN configured THEN the file is kept and the conf\'s marker written', async () => {
    writeConf(PROXY_ACM);
    fs.writeFileSync(output(), 'teleport:\n  nodename: by-hand\n');
    const r = await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    expect(r).toMatchObject({ mode: 'proxy-acm', generated: false });
    expect(r.confMode).toBeUndefined();
    expect(fs.readFileSync(output(), 'utf8')).toBe('teleport:\n  nodename: by-hand\n');
    expect(fs.readdirSync(path.join(dir, 'teleport.d')).sort()).toEqual(['conf', 'role.proxy-acm']);
  });

  test('GIVEN the reconfigure flow (edit the conf, remove teleport.yaml) WHEN configured THEN the new conf is generated', async () => {
    writeConf(PROXY_ACM);
    await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    writeConf(PROXY_ACM.map((l) => (l.startsWith('TELEPORT_DOMAIN_NAME=') ? 'TELEPORT_DOMAIN_NAME=new.example.com' : l)));
    fs.rmSync(output());
    await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    expect(fs.readFileSync(output(), 'utf8')).toContain('public_addr: new.example.com:443');
  });

  test('GIVEN a bad conf WHEN run as the boot unit runs it THEN it exits 1 with the problem and writes nothing', async () => {
    writeConf(['TELEPORT_ROLE=proxy', 'USE_ACM=true', 'TELEPORT_EXTERNAL_PORT=http']);
    const before = listing();
    const r = await runCli('teleport', ['configure', '--from-conf', confFile(), '--output', output()], { env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${confFile()}:3:1: TELEPORT_EXTERNAL_PORT: expected a port number from 1 to 65535, got "http"`);
    expect(r.stderr).toContain(`${confFile()}: TELEPORT_CLUSTER_NAME: is required for TELEPORT_ROLE=proxy`);
    expect(listing()).toEqual(before);
  });

  test('GIVEN the metadata service is unreachable WHEN configured THEN it fails saying so and writes nothing', async () => {
    writeConf(PROXY_ACM);
    const down = await startImds(META);
    await down.close();
    const before = listing();
    await expect(configureFromConf({ confFile: confFile(), outputFile: output(), facts: () => readInstanceFacts({ endpoint: down.url, retries: 0 }) })).rejects.toThrow(
      /cannot read local-ipv4 from the instance metadata service \(IMDSv2\)/,
    );
    expect(listing()).toEqual(before);
  });

  test('GIVEN --output - WHEN run THEN the config is printed and no file or marker is written', async () => {
    writeConf(PROXY_ACM);
    const before = listing();
    const r = await runCli('teleport', ['configure', '--from-conf', confFile(), '--output', '-'], { env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ssh_public_addr: acme-proxy.elb.eu-west-1.amazonaws.com:3023');
    expect(listing()).toEqual(before);
  });
});

describe('instance facts from IMDSv2 (metadata service imitated over HTTP)', () => {
  test('GIVEN an instance with a public address WHEN read THEN every fact comes back, every request carrying a session token', async () => {
    const seen = imds.requests.length;
    expect(await facts()).toEqual({
      localIp: '10.0.1.17',
      localHostname: 'ip-10-0-1-17.eu-west-1.compute.internal',
      publicIp: '203.0.113.7',
      instanceId: 'i-0123456789abcdef0',
      instanceType: 't3.small',
      availabilityZone: 'eu-west-1a',
    });
    const mine = imds.requests.slice(seen);
    expect(mine.filter((r) => r.startsWith('GET')).map((r) => r.replace('GET /latest/meta-data/', ''))).toEqual(['local-ipv4', 'local-hostname', 'public-ipv4', ...Object.keys(META).slice(3)]);
    expect(mine).toContain('PUT /latest/api/token');
  });

  test('GIVEN no public address and no placement facts (404) WHEN read THEN they are absent', async () => {
    const priv = await startImds({ 'local-ipv4': '10.0.1.17', 'local-hostname': 'ip-10-0-1-17.ec2.internal' });
    try {
      expect(await readInstanceFacts({ endpoint: priv.url, retries: 0 })).toEqual({ localIp: '10.0.1.17', localHostname: 'ip-10-0-1-17.ec2.internal' });
    } finally {
      await priv.close();
    }
  });

  test('GIVEN an answer that is not an address WHEN read THEN it is refused rather than written into teleport.yaml', async () => {
    const bad = await startImds({ ...META, 'local-ipv4': '<html>Unauthorized</html>' });
    try {
      await expect(readInstanceFacts({ endpoint: bad.url, retries: 0 })).rejects.toThrow(/returned a local-ipv4 that is not an IP address: "<html>Unauthorized<\/html>"/);
    } finally {
      await bad.close();
    }
  });
});
