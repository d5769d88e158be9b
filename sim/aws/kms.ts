/**
 * The KMS calls AWS services make for their caller: S3 encrypting an object with a bucket's
 * SSE-KMS key, SSM encrypting a SecureString. IAM checks them as the caller's own calls, with
 * `kms:ViaService` naming the service, so a role needs both the service's permission and the key's.
 */
import type { AwsCall } from '../types';
import { ACCOUNT, arn, PARTITION, REGION } from '../types';

/** The ARN of a KMS key given as an ARN, a key id, or an alias (`alias/aws/ssm`). */
export function keyArn(key: string): string {
  if (key.startsWith('arn:')) return key;
  if (key.startsWith('alias/')) return `arn:${PARTITION}:kms:${REGION}:${ACCOUNT}:${key}`;
  return arn.key(key);
}

export type KmsAction = 'kms:Encrypt' | 'kms:Decrypt' | 'kms:GenerateDataKey';

/** The call `service` makes to KMS on the caller's behalf while serving `via` (`s3:PutObject`). */
export function viaService(action: KmsAction, key: string, service: 's3' | 'ssm', via: string, context: Readonly<Record<string, string>> = {}): Omit<AwsCall, 'caller'> {
  return {
    action,
    resource: keyArn(key),
    context: { 'kms:ViaService': `${service}.${REGION}.amazonaws.com`, 'kms:CallerAccount': ACCOUNT, ...context },
    via,
  };
}
