#!/usr/bin/env node
/**
 * The CDK app: one HA `ClusterStack` built from context, checked by cdk-nag's AWS Solutions
 * rules (synthesis fails on any unacknowledged finding).
 *
 *   npx cdk synth -c clusterName=acme -c domainName=teleport.example.com \
 *     -c hostedZoneId=Z0123456789ABCDEFGHIJ -c hostedZoneName=example.com
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { clusterPropsFromContext, clusterStackName } from '../lib/app-context';
import { ClusterStack } from '../lib/cluster-stack';

const app = new App();
try {
  const props = clusterPropsFromContext((key) => app.node.tryGetContext(key));
  new ClusterStack(app, clusterStackName(props.clusterName), {
    ...props,
    description: `Teleport HA cluster ${props.clusterName}`,
  });
} catch (err) {
  // Bad input: say what is wrong without a stack trace.
  console.error(`error: ${(err as Error).message}`);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
