/**
 * Policy statements shared by the tiers' instance roles. Every statement names its actions
 * exactly (no service wildcards) and the narrowest resource the action supports.
 */
import { Stack, Token, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct, IConstruct } from 'constructs';
import { JoinRole, SsmPaths } from '../runtime/contract/aws';

/** ARN of an SSM parameter given by its path (`/teleport/...`). */
export function ssmParameterArn(scope: Construct, path: string): string {
  return Stack.of(scope).formatArn({ service: 'ssm', resource: 'parameter', resourceName: path.replace(/^\/+/, '') });
}

/**
 * What the SSM agent on every instance needs to register (`ssm:UpdateInstanceInformation`,
 * the permission whose absence broke the original CloudFormation template) and to serve
 * Session Manager (no SSH keys on the instances). These replace the broad
 * AmazonSSMManagedInstanceCore managed policy.
 */
export function ssmAgentStatements(scope: Construct): iam.PolicyStatement[] {
  const stack = Stack.of(scope);
  return [
    new iam.PolicyStatement({
      sid: 'SsmAgentRegister',
      actions: ['ssm:UpdateInstanceInformation'],
      resources: [stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
    }),
    new iam.PolicyStatement({
      sid: 'SsmSessionManager',
      actions: [
        'ssmmessages:CreateControlChannel',
        'ssmmessages:CreateDataChannel',
        'ssmmessages:OpenControlChannel',
        'ssmmessages:OpenDataChannel',
      ],
      resources: ['*'],
    }),
  ];
}

/** `kms:Decrypt` of `key`, only when SSM calls it (reading a SecureString parameter). */
export function ssmDecryptStatement(scope: Construct, key: kms.IKey): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'DecryptSecureStrings',
    actions: ['kms:Decrypt'],
    resources: [key.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `ssm.${Stack.of(scope).region}.amazonaws.com` } },
  });
}

/**
 * How cdk-nag spells an ARN built with `Stack.formatArn` in a finding id: pseudo parameters
 * appear as `<AWS::Region>` etc. in an environment-agnostic stack, as literals otherwise.
 */
export function nagArn(scope: Construct, service: string, resource: string): string {
  const stack = Stack.of(scope);
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  return `arn:<AWS::Partition>:${service}:${region}:${account}:${resource}`;
}

/** The cdk-nag acknowledgements every instance role carries, each naming the finding it covers. */
export function acknowledgeInstanceRoleFindings(role: IConstruct): void {
  Validations.of(role).acknowledge({
    id: `AwsSolutions-IAM5[Resource::${nagArn(role, 'ec2', 'instance/*')}]`,
    reason: 'ssm:UpdateInstanceInformation is called by the SSM agent of whichever instance in this account/region assumes the role; instance ids are not known at deploy time.',
  });
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason: 'ssmmessages:* channel actions (Session Manager) support no resource-level permissions; the actions are listed individually.',
  });
}

/**
 * A tier's instance role (construct id `Role`): its own statements plus the SSM agent's, and the
 * acknowledgements every instance role carries.
 */
export function instanceRole(scope: Construct, description: string, statements: iam.PolicyStatement[]): iam.Role {
  const role = new iam.Role(scope, 'Role', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description,
    inlinePolicies: { teleport: new iam.PolicyDocument({ statements: [...statements, ...ssmAgentStatements(scope)] }) },
  });
  acknowledgeInstanceRoleFindings(role);
  return role;
}

/** What a tier that joins with a token needs: its own join token and the CA pin from SSM, and the key to decrypt them. */
export function joinStatements(scope: Construct, clusterName: string, role: JoinRole, key: kms.IKey): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'JoinParameters',
      actions: ['ssm:GetParameter'],
      resources: [ssmParameterArn(scope, SsmPaths.token(clusterName, role)), ssmParameterArn(scope, SsmPaths.caPin(clusterName))],
    }),
    ssmDecryptStatement(scope, key),
  ];
}
