/**
 * `ProxyDns`: the Route 53 A record that points the proxy's public name at its web load
 * balancer (an alias), or at an IP address (the starter's Elastic IP). The hosted zone is taken by id and name (`fromHostedZoneAttributes`), never looked
 * up, so `cdk synth` needs no AWS credentials.
 */
import { Duration } from 'aws-cdk-lib';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as route53 from 'aws-cdk-lib/aws-route53';
import * as targets from 'aws-cdk-lib/aws-route53-targets';
import { Construct } from 'constructs';
import { checkDomainName, checkHostedZoneId, checkInZone } from './validation';

/** A Route 53 hosted zone given by id and name. */
export interface HostedZoneRef {
  /** The zone id, e.g. `Z0123456789ABCDEFGHIJ`. */
  readonly hostedZoneId: string;
  /** The zone's domain, e.g. `example.com`. */
  readonly zoneName: string;
}

/** Properties of {@link ProxyDns}. */
export interface ProxyDnsProps {
  /** The zone holding the record. */
  readonly zone: HostedZoneRef;
  /** The proxy's public name, inside the zone (e.g. `teleport.example.com`). */
  readonly domainName: string;
  /**
   * The load balancer serving the web UI/API on 443 (an alias record). Give exactly one of
   * `loadBalancer` and `ipAddress`.
   *
   * @default - none; `ipAddress` must be given
   */
  readonly loadBalancer?: elbv2.ILoadBalancerV2;

  /**
   * An IPv4 address the proxy listens on itself (a plain A record).
   *
   * @default - none; `loadBalancer` must be given
   */
  readonly ipAddress?: string;

  /**
   * Time to live of a plain A record (ignored for an alias).
   *
   * @default Duration.minutes(5)
   */
  readonly ttl?: Duration;
}

/** The proxy's DNS record. */
export class ProxyDns extends Construct {
  public readonly hostedZone: route53.IHostedZone;
  public readonly record: route53.ARecord;

  constructor(scope: Construct, id: string, props: ProxyDnsProps) {
    super(scope, id);
    if ((props.loadBalancer === undefined) === (props.ipAddress === undefined)) {
      throw new Error('ProxyDns: give exactly one of loadBalancer and ipAddress');
    }
    this.hostedZone = importHostedZone(this, 'Zone', props.zone, props.domainName);
    if (props.loadBalancer) {
      this.record = new route53.ARecord(this, 'Alias', {
        zone: this.hostedZone,
        recordName: `${props.domainName}.`,
        target: route53.RecordTarget.fromAlias(new targets.LoadBalancerTarget(props.loadBalancer)),
        comment: 'Teleport proxy (web UI/API on 443)',
      });
    } else {
      this.record = new route53.ARecord(this, 'Address', {
        zone: this.hostedZone,
        recordName: `${props.domainName}.`,
        target: route53.RecordTarget.fromIpAddresses(props.ipAddress!),
        ttl: props.ttl ?? Duration.minutes(5),
        comment: 'Teleport proxy (its own public address)',
      });
    }
  }
}

/** Validates `zone` (and that `domainName` lies inside it) and imports it without a lookup. */
export function importHostedZone(scope: Construct, id: string, zone: HostedZoneRef, domainName: string): route53.IHostedZone {
  checkHostedZoneId('hostedZoneId', zone.hostedZoneId);
  checkDomainName('hostedZoneName', zone.zoneName.replace(/\.$/, ''));
  checkDomainName('domainName', domainName);
  checkInZone('domainName', domainName, zone.zoneName);
  return route53.HostedZone.fromHostedZoneAttributes(scope, id, {
    hostedZoneId: zone.hostedZoneId,
    zoneName: zone.zoneName.replace(/\.$/, ''),
  });
}
