#!/usr/bin/env node
/**
 * The CDK app: the HA `ClusterStack` (default, `-c stack=cluster`) or the single-instance
 * `StarterStack` (`-c stack=starter`), built from context and checked by cdk-nag's AWS Solutions
 * rules (synthesis fails on any unacknowledged finding).
 *
 *   npx cdk synth -c clusterName=acme -c domainName=teleport.example.com \
 *     -c hostedZoneId=Z0123456789ABCDEFGHIJ -c hostedZoneName=example.com
 *   npx cdk synth -c stack=starter -c clusterName=acme
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { clusterPropsFromContext, clusterStackName, stackKindFromContext, starterPropsFromContext, starterStackName } from '../lib/app-context';
import { ClusterStack } from '../lib/cluster-stack';
import { StarterStack } from '../lib/starter-stack';

const app = new App();
try {
  const get = (key: string) => app.node.tryGetContext(key);
  if (stackKindFromContext(get) === 'starter') {
    const props = starterPropsFromContext(get);
    new StarterStack(app, starterStackName(props.clusterName), {
      ...props,
      description: `Teleport starter ${props.clusterName}: one instance running every role`,
    });
  } else {
    const props = clusterPropsFromContext(get);
    new ClusterStack(app, clusterStackName(props.clusterName), {
      ...props,
      description: `Teleport HA cluster ${props.clusterName}`,
    });
  }
} catch (err) {
  // Bad input: say what is wrong without a stack trace.
  console.error(`error: ${(err as Error).message}`);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
