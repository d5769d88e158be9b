/**
 * How an operator gets the first user after a deployment, given as stack outputs by both stacks:
 * a shell on an instance that runs the auth service, through Session Manager (the instance roles
 * carry the SSM agent's permissions, `ssmAgentStatements` in iam.ts: no SSH key, no open port 22),
 * and in it `tctl users add`, which prints the sign-up URL on the cluster's web address.
 */
import { Fn, Stack } from 'aws-cdk-lib';
import { Construct } from 'constructs';

/** Run in the shell once teleport is up; `<username>` may log in as root and ec2-user (the AMI's Amazon Linux user). */
export const FIRST_USER_COMMAND = 'sudo tctl users add <username> root,ec2-user';

/** `aws ssm start-session` to one instance. */
export function instanceShellCommand(scope: Construct, instanceId: string): string {
  return Fn.join('', ['aws ssm start-session --region ', Stack.of(scope).region, ' --target ', instanceId]);
}

/**
 * `aws ssm start-session` to the first in-service, healthy instance of an Auto Scaling group
 * (the instance id is looked up with `aws autoscaling describe-auto-scaling-groups`).
 */
export function groupShellCommand(scope: Construct, groupName: string): string {
  const region = Stack.of(scope).region;
  return Fn.join('', [
    'aws ssm start-session --region ',
    region,
    ' --target "$(aws autoscaling describe-auto-scaling-groups --region ',
    region,
    ' --auto-scaling-group-names ',
    groupName,
    ` --query "AutoScalingGroups[0].Instances[?LifecycleState=='InService' && HealthStatus=='Healthy'] | [0].InstanceId" --output text)"`,
  ]);
}
