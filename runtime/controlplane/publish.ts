/**
 * What the control plane writes to SSM Parameter Store, in one place: the rotator publishes the
 * join tokens and the CA pin, the CA pin publisher the pin alone, both through `putParameter`.
 *
 * SSM refuses a write to a parameter while another write to it is in flight (`TooManyUpdates`),
 * which the SDK does not retry. The rotator's runs (schedule, deployment) and the pin publisher
 * may write the pin at the same moment, so that refusal is retried here, with a short backoff.
 */
import { PutParameterCommand, PutParameterCommandInput, SSMClient } from '@aws-sdk/client-ssm';
import { setTimeout as delay } from 'node:timers/promises';
import { SsmPaths } from '../contract/aws';
import { logger } from '../utils/logger';

const log = logger('controlplane');

/** Attempts of one PutParameter refused as a concurrent update. */
export const PUT_ATTEMPTS = 5;
const BACKOFF_MS = 100;

/** PutParameter, retried while SSM reports a concurrent update of the same parameter. */
export async function putParameter(ssm: SSMClient, input: PutParameterCommandInput): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await ssm.send(new PutParameterCommand(input));
      return;
    } catch (err) {
      if ((err as { name?: string }).name !== 'TooManyUpdates' || attempt >= PUT_ATTEMPTS) throw err;
      log.info('another write to the parameter is in flight: trying again', { parameter: input.Name, attempt });
      await delay(BACKOFF_MS * 2 ** (attempt - 1) * (1 + Math.random()));
    }
  }
}

/** Writes `pin` (the cluster's CA pin) to `SsmPaths.caPin(cluster)` as a String, overwriting. */
export async function publishCaPin(ssm: SSMClient, clusterName: string, pin: string): Promise<void> {
  const name = SsmPaths.caPin(clusterName);
  await putParameter(ssm, { Name: name, Value: pin, Type: 'String', Overwrite: true });
  log.info('published the CA pin', { cluster: clusterName, parameter: name, ca_pin: pin });
}
