/**
 * Facts about this EC2 instance from the instance metadata service, IMDSv2 only (a session
 * token first; no fallback to v1). The endpoint is the SDK's: `AWS_EC2_METADATA_SERVICE_ENDPOINT`
 * overrides it (tests point it at a local imitation).
 */
import { isIP } from 'node:net';
import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { BadParameterError } from '../utils/errors';
import type { InstanceFacts } from './generate';

/**
 * Reads local-ipv4, local-hostname and public-ipv4 (absent when the instance has no public address),
 * and the instance id, type and zone for the node's labels (absent if the service does not say).
 */
export async function readInstanceFacts(opts: { endpoint?: string; retries?: number } = {}): Promise<InstanceFacts> {
  const imds = new MetadataService({
    ec2MetadataV1Disabled: true,
    httpOptions: { timeout: 2000 },
    retries: opts.retries ?? 3,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
  });
  const get = async (path: string, optional = false): Promise<string | undefined> => {
    try {
      // The SDK appends the path to the endpoint URL's path ("/"), so no leading slash here.
      return (await imds.request(`latest/meta-data/${path}`, {})).trim();
    } catch (err) {
      if (optional && (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw new BadParameterError(`cannot read ${path} from the instance metadata service (IMDSv2): ${(err as Error).message}`);
    }
  };
  const localIp = await get('local-ipv4');
  const localHostname = await get('local-hostname');
  const publicIp = await get('public-ipv4', true);
  const labels = {
    instanceId: await get('instance-id', true),
    instanceType: await get('instance-type', true),
    availabilityZone: await get('placement/availability-zone', true),
  };
  // A proxy or a misbehaving endpoint must not put an HTML page into teleport.yaml (aws-deployment.md §6.6).
  const ip = (what: string, v: string | undefined) => {
    if (v !== undefined && !isIP(v)) throw new BadParameterError(`the instance metadata service returned ${what} that is not an IP address: ${JSON.stringify(v.slice(0, 60))}`);
    return v;
  };
  if (!localHostname || !/^[A-Za-z0-9.-]{1,253}$/.test(localHostname)) {
    throw new BadParameterError(`the instance metadata service returned a local-hostname that is not a host name: ${JSON.stringify((localHostname ?? '').slice(0, 60))}`);
  }
  const facts: InstanceFacts = { localIp: ip('a local-ipv4', localIp)!, localHostname, ...(publicIp ? { publicIp: ip('a public-ipv4', publicIp) } : {}) };
  for (const [key, value] of Object.entries(labels)) {
    if (value === undefined) continue;
    if (!/^[A-Za-z0-9.-]{1,64}$/.test(value)) throw new BadParameterError(`the instance metadata service returned an unexpected ${key}: ${JSON.stringify(value.slice(0, 60))}`);
    Object.assign(facts, { [key]: value });
  }
  return facts;
}
