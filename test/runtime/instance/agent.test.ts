/**
 * The CloudWatch agent's config that `teleport configure --from-conf` writes beside the conf when
 * it names the log groups: the files the instance's units append to go to the log group, and the
 * Prometheus input scrapes the diagnostics address teleport.yaml names (checked by serving the
 * real endpoint there) for the metrics lib/monitoring.ts alarms on, in its namespace and dimensions.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { METRICS_NAMESPACE, MetricDimensions, PublishedMetrics, SCRAPE_JOB, unitLogFile } from '../../../runtime/contract/telemetry';
import { agentConfigFile, agentPrometheusFile, configureFromConf } from '../../../runtime/instance/configure';
import type { AgentConfig } from '../../../runtime/instance/agent';
import { readInstanceFacts } from '../../../runtime/instance/imds';
import { startDiagServer } from '../../../runtime/service/diag';
import { parseAddrWithPort } from '../../../runtime/config/address';
import { logger, setLogLevel } from '../../../runtime/utils/logger';
import { startImds, type Imitation } from '../../helpers/ec2-imitations';
import { scrape } from '../../helpers/metrics';
import { freePort, runCli, tempDir } from '../../helpers/proc';

const META = { 'local-ipv4': '10.0.1.17', 'local-hostname': 'ip-10-0-1-17.eu-west-1.compute.internal', 'instance-id': 'i-0123456789abcdef0' };
const AUTH = [
  'TELEPORT_ROLE=auth',
  'EC2_REGION=eu-west-1',
  'TELEPORT_CLUSTER_NAME=acme',
  'TELEPORT_AUTH_SERVER_LB=acme-auth.elb.eu-west-1.amazonaws.com',
  'TELEPORT_DYNAMO_TABLE_NAME=acme-state',
  'TELEPORT_DYNAMO_EVENTS_TABLE_NAME=acme-events',
  'TELEPORT_S3_BUCKET=acme-recordings',
];
const LOGS = ['TELEPORT_LOG_GROUP=acme-Logs-1A2B', 'TELEPORT_METRICS_LOG_GROUP=/teleport/acme/metrics'];

/** The agent's own schema of its config (fixtures/README.md), draft-04, as the agent checks a config it translates. */
function agentSchema(): (config: unknown) => string[] {
  const ajv = new Ajv({ schemaId: 'id', allErrors: true, logger: false });
  ajv.addMetaSchema(require('ajv/lib/refs/json-schema-draft-04.json'));
  const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'cloudwatch-agent-schema.json'), 'utf8')));
  return (config) => (validate(config) ? [] : (validate.errors ?? []).map((e) => `${e.dataPath}: ${e.message}`));
}

let imds: Imitation;
let dir: string;
beforeAll(async () => {
  setLogLevel('error');
  imds = await startImds(META);
});
afterAll(() => imds.close());
beforeEach(() => {
  dir = tempDir('agent-');
  fs.mkdirSync(path.join(dir, 'teleport.d'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const confDir = () => path.join(dir, 'teleport.d');
const confFile = () => path.join(confDir(), 'conf');
const output = () => path.join(dir, 'teleport.yaml');
const writeConf = (lines: string[]) => fs.writeFileSync(confFile(), lines.join('\n') + '\n');
const facts = () => readInstanceFacts({ endpoint: imds.url, retries: 0 });
const listing = () => fs.readdirSync(dir, { recursive: true }).map(String).sort();

describe('the CloudWatch agent config of teleport configure --from-conf', () => {
  test('GIVEN an auth conf with both log groups and a diagnostics address WHEN configured THEN the agent sends the unit logs to the log group and scrapes that address for the published metrics', async () => {
    // GIVEN
    writeConf([...AUTH, ...LOGS]);
    const diagAddr = `127.0.0.1:${await freePort()}`;
    // WHEN
    const r = await configureFromConf({ confFile: confFile(), outputFile: output(), diagAddr, facts });
    // THEN teleport.yaml turns the endpoint on there, and the agent's files are written, for root only
    expect(r.agentConfigFile).toBe(agentConfigFile(confDir()));
    const yaml = parse(fs.readFileSync(output(), 'utf8'));
    expect(yaml.teleport.diag_addr).toBe(diagAddr);
    for (const f of [agentConfigFile(confDir()), agentPrometheusFile(confDir())]) expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    const config = JSON.parse(fs.readFileSync(agentConfigFile(confDir()), 'utf8')) as AgentConfig;
    expect(config.agent.region).toBe('eu-west-1');
    // The log files: the role's unit, the boot units and cloud-init's output, each its own stream per instance.
    expect(config.logs.logs_collected.files.collect_list).toEqual(
      [
        [unitLogFile('teleport-auth.service'), 'teleport-auth'],
        [unitLogFile('teleport-generate-config.service'), 'teleport-generate-config'],
        [unitLogFile('teleport-signal.service'), 'teleport-signal'],
        ['/var/log/cloud-init-output.log', 'cloud-init-output'],
      ].map(([file, stream]) => ({ file_path: file, log_group_name: 'acme-Logs-1A2B', log_stream_name: `{instance_id}/${stream}`, timezone: 'UTC' })),
    );
    // The metrics: EMF to the metrics group, in the namespace and dimensions the alarms use.
    const prom = config.logs.metrics_collected.prometheus;
    expect(prom.log_group_name).toBe('/teleport/acme/metrics');
    expect(prom.prometheus_config_path).toBe(agentPrometheusFile(confDir()));
    expect(prom.emf_processor.metric_namespace).toBe(METRICS_NAMESPACE);
    expect(prom.emf_processor.metric_declaration).toEqual([
      {
        source_labels: ['job'],
        label_matcher: `^${SCRAPE_JOB}$`,
        dimensions: [[MetricDimensions.cluster, MetricDimensions.role]],
        metric_selectors: Object.values(PublishedMetrics).map((m) => `^${m}$`),
      },
    ]);
    const scrapeConfig = parse(fs.readFileSync(agentPrometheusFile(confDir()), 'utf8'));
    expect(scrapeConfig.scrape_configs).toEqual([
      {
        job_name: SCRAPE_JOB,
        metrics_path: '/metrics',
        scheme: 'http',
        static_configs: [{ targets: [diagAddr], labels: { [MetricDimensions.cluster]: 'acme', [MetricDimensions.role]: 'auth' } }],
      },
    ]);

    // WHEN the diagnostics endpoint runs where teleport.yaml says and the agent's target is scraped
    const diag = await startDiagServer(parseAddrWithPort(yaml.teleport.diag_addr), logger('diag'));
    try {
      const target = scrapeConfig.scrape_configs[0].static_configs[0].targets[0] as string;
      const s = await scrape(`http://${target}`);
      // THEN every metric the agent selects is there
      const names = new Set(s.families.map((f) => f.name));
      expect(Object.values(PublishedMetrics).filter((m) => !names.has(m))).toEqual([]);
    } finally {
      await diag.close();
    }
  });

  test('GIVEN a proxy-acm or all-in-one conf WHEN configured THEN the Role dimension is proxy or all, and the role unit\'s log is collected', async () => {
    for (const [lines, cluster, role, unit] of [
      [['TELEPORT_ROLE=proxy', 'EC2_REGION=eu-west-1', 'TELEPORT_CLUSTER_NAME=acme', 'TELEPORT_AUTH_SERVER_LB=auth.internal', 'TELEPORT_DOMAIN_NAME=teleport.example.com', 'TELEPORT_PROXY_SERVER_LB=nlb.example.com', 'USE_ACM=true'], 'acme', 'proxy', 'teleport-proxy-acm'],
      [['TELEPORT_ROLE=auth,node,proxy', 'TELEPORT_CLUSTER_NAME=starter'], 'starter', 'all', 'teleport'],
    ] as const) {
      // GIVEN
      fs.rmSync(output(), { force: true });
      writeConf([...lines, ...LOGS]);
      // WHEN
      await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
      // THEN
      const config = JSON.parse(fs.readFileSync(agentConfigFile(confDir()), 'utf8')) as AgentConfig;
      expect(config.logs.logs_collected.files.collect_list[0].file_path).toBe(unitLogFile(`${unit}.service`));
      const labels = parse(fs.readFileSync(agentPrometheusFile(confDir()), 'utf8')).scrape_configs[0].static_configs[0];
      expect(labels).toEqual({ targets: ['127.0.0.1:3000'], labels: { ClusterName: cluster, Role: role } });
    }
  });

  test('GIVEN the config of every mode WHEN checked against the CloudWatch agent\'s own schema THEN it is valid; (control) a field the agent does not know is not', async () => {
    const problems = agentSchema();
    for (const lines of [
      AUTH,
      ['TELEPORT_ROLE=node', 'EC2_REGION=eu-west-1', 'TELEPORT_CLUSTER_NAME=acme', 'TELEPORT_AUTH_SERVER_LB=auth.internal'],
      ['TELEPORT_ROLE=auth,node,proxy'],
    ]) {
      // GIVEN
      fs.rmSync(output(), { force: true });
      writeConf([...lines, ...LOGS]);
      // WHEN
      await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
      const config = JSON.parse(fs.readFileSync(agentConfigFile(confDir()), 'utf8'));
      // THEN
      expect([lines[0], problems(config)]).toEqual([lines[0], []]);
      // AND (control) the schema refuses what the agent would
      expect(problems({ ...config, logs: { ...config.logs, retention: 30 } })).toEqual(['.logs: should NOT have additional properties']);
    }
  });

  test('GIVEN a conf without log groups WHEN configured THEN no agent config is written (the agent unit stays off), and one left from before is removed', async () => {
    // GIVEN an earlier config
    fs.writeFileSync(agentConfigFile(confDir()), '{}');
    writeConf(AUTH);
    // WHEN
    const r = await configureFromConf({ confFile: confFile(), outputFile: output(), facts });
    // THEN
    expect(r.agentConfigFile).toBeUndefined();
    expect(listing()).toEqual(['teleport.d', 'teleport.d/conf', 'teleport.d/role.auth', 'teleport.yaml']);
  });

  test('GIVEN only one of the two log groups WHEN configured THEN it fails naming the missing variable and writes nothing', async () => {
    // GIVEN
    writeConf([...AUTH, LOGS[0]]);
    // WHEN / THEN
    await expect(configureFromConf({ confFile: confFile(), outputFile: output(), facts })).rejects.toThrow(
      'TELEPORT_METRICS_LOG_GROUP: is required with TELEPORT_LOG_GROUP (the CloudWatch agent sends logs and metrics, each to its group)',
    );
    expect(listing()).toEqual(['teleport.d', 'teleport.d/conf']);
  });

  test('GIVEN a log group name CloudWatch Logs would not take (an ARN pattern) WHEN configured THEN it fails naming the variable and its line, and writes nothing', async () => {
    // GIVEN
    writeConf([...AUTH, 'TELEPORT_LOG_GROUP=logs:*', LOGS[1]]);
    // WHEN / THEN
    await expect(configureFromConf({ confFile: confFile(), outputFile: output(), facts })).rejects.toThrow(
      `${confFile()}:${AUTH.length + 1}:1: TELEPORT_LOG_GROUP: expected a CloudWatch Logs group name`,
    );
    expect(listing()).toEqual(['teleport.d', 'teleport.d/conf']);
  });

  test.each(['0.0.0.0:3000', '10.0.1.17:3000', '[::]:3000', '127.0.0.1', 'localhost:http'])(
    'GIVEN --diag-addr %s (not a loopback address with a port) WHEN the boot unit\'s command runs THEN it exits 1 saying so and writes nothing',
    async (addr) => {
      // GIVEN
      writeConf([...AUTH, ...LOGS]);
      // WHEN
      const r = await runCli('teleport', ['configure', '--from-conf', confFile(), '--output', output(), '--diag-addr', addr], { env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url } });
      // THEN
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('--diag-addr: ');
      expect(listing()).toEqual(['teleport.d', 'teleport.d/conf']);
    },
  );
});
