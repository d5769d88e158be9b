/** The CDK context `deploy:local` synthesizes with unless told otherwise (sim/cli.ts). */

/**
 * Context of the HA stack when none is given: a small cluster with a hosted zone (so that its DNS
 * record exists) and an ACM certificate (so that an ALB terminates TLS, as in production; the
 * local deployment stands in a certificate of its own for it).
 */
export const DEFAULT_CONTEXT: Record<string, string> = {
  clusterName: 'local',
  domainName: 'teleport.example.com',
  hostedZoneId: 'Z0123456789ABCDEFGHIJ',
  hostedZoneName: 'example.com',
  certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555',
  authMinCapacity: '1',
  proxyMinCapacity: '1',
  nodeMinCapacity: '2',
};

/** What the faults scenario needs: two auth instances, nodes that may scale down to one. */
export const FAULTS_CONTEXT: Record<string, string> = { authMinCapacity: '2', nodeMinCapacity: '1' };

