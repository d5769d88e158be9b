/**
 * teleport.yaml for an AMI instance: one pure function from the validated conf
 * ({@link InstanceConf}) and the instance's facts (IMDS) to a typed config, per role and
 * mode, rendered as YAML and checked by the same schema `teleport start` reads it with.
 */
import { stringify } from 'yaml';
import { parseConfig } from '../config/load';
import { IAM_ROLE_ARN, InstanceRole, RECORDINGS_PREFIX } from '../contract/aws';
import { Ports } from '../contract/ports';
import { DEFAULT_INSTANCE_DIAG_ADDR } from '../contract/telemetry';
import type { InstanceConf } from './conf';

/** The unit an instance runs, named by its marker file `/etc/teleport.d/role.<mode>`. */
export type InstanceMode = 'auth' | 'proxy' | 'proxy-acm' | 'node' | 'all' | 'all-acm';
export const INSTANCE_MODES: readonly InstanceMode[] = ['auth', 'proxy', 'proxy-acm', 'node', 'all', 'all-acm'];

/** What the instance metadata service says about this instance. */
export interface InstanceFacts {
  readonly localIp: string;
  readonly localHostname: string;
  /** The public IPv4 address, when the instance has one. */
  readonly publicIp?: string;
  /** Become the node's `aws/instance-id`, `aws/instance-type` and `aws/availability-zone` labels. */
  readonly instanceId?: string;
  readonly instanceType?: string;
  readonly availabilityZone?: string;
}

/** Where the instance keeps its state; the join-secrets fetch writes the token and pin files here. */
export interface InstancePaths {
  readonly dataDir: string;
}

export const DEFAULT_INSTANCE_PATHS: InstancePaths = { dataDir: '/var/lib/teleport' };

/** The join token file of a proxy or node (`teleport.auth_token`). */
export const joinTokenFile = (paths: InstancePaths) => `${paths.dataDir}/token`;
/** The CA pin file of a proxy or node (`teleport.ca_pin`). */
export const caPinFile = (paths: InstancePaths) => `${paths.dataDir}/ca-pin`;

/** The subset of teleport.yaml the generator writes, keys as in the file. */
export interface GeneratedConfig {
  teleport: {
    nodename: string;
    data_dir: string;
    advertise_ip: string;
    log: { output: 'stderr'; severity: 'INFO' };
    /** The diagnostics endpoint (`/readyz`, `/metrics`), on loopback: the CloudWatch agent scrapes it. */
    diag_addr: string;
    auth_token?: string;
    ca_pin?: string;
    auth_servers?: string[];
    connection_limits?: { max_connections: number; max_users: number };
    storage?: {
      type: 'dynamodb';
      region: string;
      table_name: string;
      audit_events_uri: string[];
      audit_sessions_uri: string;
    };
  };
  auth_service: { enabled: boolean } & Partial<{
    listen_addr: string;
    public_addr: string;
    cluster_name: string;
    keep_alive_interval: string;
    keep_alive_count_max: number;
    authentication: { type: 'local'; second_factor: 'otp' };
    session_recording: 'node' | 'proxy' | 'off';
    ca_key_params: { aws_kms: { account: string; region: string; signer_role_arn: string } };
  }>;
  ssh_service: { enabled: boolean } & Partial<{ listen_addr: string; labels: Record<string, string> }>;
  proxy_service: { enabled: boolean } & Partial<{
    listen_addr: string;
    web_listen_addr: string;
    public_addr: string;
    ssh_public_addr: string;
    trust_x_forwarded_for_from: string[];
    acme: { enabled: true; email?: string };
  }>;
}

/**
 * With ACM an ALB re-encrypts to 3080 and, by the security groups of both
 * stacks, is the only peer that reaches it: its addresses are in the VPC, so
 * the private ranges name it, and the client it names in X-Forwarded-For
 * counts for per-address login limits and the audit log.
 */
export const ALB_PEERS = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];

/** The mode (and so the systemd unit) of a role. */
export function instanceMode(role: InstanceRole, useAcm: boolean): InstanceMode {
  if (role === 'auth,node,proxy') return useAcm ? 'all-acm' : 'all';
  if (role === 'proxy') return useAcm ? 'proxy-acm' : 'proxy';
  return role;
}

const any = (port: number) => `0.0.0.0:${port}`;

/** teleport.yaml for `conf` on an instance with `facts`. Pure: the same input gives the same output. */
export function generateConfig(
  conf: InstanceConf,
  facts: InstanceFacts,
  paths: InstancePaths = DEFAULT_INSTANCE_PATHS,
  diagAddr: string = DEFAULT_INSTANCE_DIAG_ADDR,
): GeneratedConfig {
  const runs = {
    auth: conf.role === 'auth' || conf.role === 'auth,node,proxy',
    proxy: conf.role === 'proxy' || conf.role === 'auth,node,proxy',
    node: conf.role === 'node' || conf.role === 'auth,node,proxy',
  };
  const joins = !runs.auth;

  const teleport: GeneratedConfig['teleport'] = {
    nodename: facts.localHostname.replace(/\./g, '-'),
    data_dir: paths.dataDir,
    advertise_ip: facts.localIp,
    log: { output: 'stderr', severity: 'INFO' },
    diag_addr: diagAddr,
  };
  if (joins) {
    teleport.auth_token = joinTokenFile(paths);
    teleport.ca_pin = caPinFile(paths);
    teleport.auth_servers = [`${conf.authServerLb}:${Ports.auth}`];
  }
  if (conf.role === 'proxy') teleport.connection_limits = { max_connections: 65000, max_users: 10000 };
  if (runs.auth && conf.dynamo) {
    const sse = conf.ssmKeyArn ? `?sse_kms_key=${encodeURIComponent(conf.ssmKeyArn)}` : '';
    teleport.storage = {
      type: 'dynamodb',
      region: conf.region!,
      table_name: conf.dynamo.stateTable,
      audit_events_uri: [`dynamodb://${conf.dynamo.eventsTable}`],
      audit_sessions_uri: `s3://${conf.dynamo.recordingsBucket}/${RECORDINGS_PREFIX}${sse}`,
    };
  }

  const authService: GeneratedConfig['auth_service'] = runs.auth
    ? {
        enabled: true,
        listen_addr: any(Ports.auth),
        ...(conf.role === 'auth' && conf.authServerLb ? { public_addr: `${conf.authServerLb}:${Ports.auth}` } : {}),
        cluster_name: conf.clusterName ?? conf.externalHostname ?? conf.domainName ?? teleport.nodename,
        keep_alive_interval: '1m',
        keep_alive_count_max: 3,
        authentication: { type: 'local', second_factor: 'otp' },
        ...(conf.sessionRecording ? { session_recording: conf.sessionRecording } : {}),
        ...(conf.caKmsRoleArn
          ? { ca_key_params: { aws_kms: { account: IAM_ROLE_ARN.exec(conf.caKmsRoleArn)![1], region: conf.region!, signer_role_arn: conf.caKmsRoleArn } } }
          : {}),
      }
    : { enabled: false };

  const labels = Object.fromEntries(
    Object.entries({ 'aws/instance-id': facts.instanceId, 'aws/instance-type': facts.instanceType, 'aws/availability-zone': facts.availabilityZone }).filter(
      (e): e is [string, string] => e[1] !== undefined,
    ),
  );
  const sshService: GeneratedConfig['ssh_service'] = runs.node
    ? { enabled: true, listen_addr: any(Ports.node), ...(Object.keys(labels).length > 0 ? { labels } : {}) }
    : { enabled: false };

  let proxyService: GeneratedConfig['proxy_service'] = { enabled: false };
  if (runs.proxy) {
    const allInOne = conf.role === 'auth,node,proxy';
    // The web address users browse to: the domain (through the ALB or NLB on 443), or, for an
    // all-in-one without one, this instance's own address on the web port.
    // With Let's Encrypt the certificate is for the domain, so that is the web address.
    const webHost = (conf.letsEncrypt ? conf.domainName : undefined) ?? conf.externalHostname ?? conf.domainName ?? facts.publicIp ?? facts.localIp;
    const webPort = conf.letsEncrypt ? Ports.acmeWeb : (conf.externalPort ?? (allInOne && !conf.useAcm ? Ports.web : 443));
    // Without ACM the domain names the NLB, which carries SSH too. With ACM it names
    // the ALB, which cannot: SSH goes to the NLB (its alias, or its own name) or the instance itself.
    const sshHost =
      conf.proxyServerNlbAlias ?? (conf.useAcm ? (conf.proxyServerLb ?? facts.publicIp ?? facts.localIp) : webHost);
    proxyService = {
      enabled: true,
      listen_addr: any(Ports.proxySsh),
      // Let's Encrypt validates on 443 of the domain (TLS-ALPN-01, answered by the web listener itself).
      web_listen_addr: any(conf.letsEncrypt ? Ports.acmeWeb : Ports.web),
      public_addr: `${webHost}:${webPort}`,
      ssh_public_addr: `${sshHost}:${Ports.proxySsh}`,
      ...(conf.useAcm ? { trust_x_forwarded_for_from: ALB_PEERS } : {}),
      ...(conf.letsEncrypt ? { acme: { enabled: true as const, ...(conf.letsEncrypt.email ? { email: conf.letsEncrypt.email } : {}) } } : {}),
    };
  }

  return { teleport, auth_service: authService, ssh_service: sshService, proxy_service: proxyService };
}

/**
 * The file text: a header saying where it came from and how to regenerate it, then the YAML.
 * Throws a ConfigError if the schema of `teleport start` would not accept it (a bug here, or
 * a conf value the schema refuses).
 */
export function renderConfig(config: GeneratedConfig, source: { confFile: string; mode: InstanceMode; outputFile: string }): string {
  const text = [
    `# Generated by "teleport configure --from-conf ${source.confFile}" (mode ${source.mode}).`,
    `# To change it, edit ${source.confFile}, remove ${source.outputFile} and restart teleport-generate-config`,
    `# and the teleport unit; hand edits are kept until then.`,
    stringify(config, { lineWidth: 0 }),
  ].join('\n');
  parseConfig(text, source.outputFile);
  return text;
}
