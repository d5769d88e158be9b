/**
 * Faults between the auth service and DynamoDB (throttling, connection
 * resets, answers lost after the write was applied), injected by an HTTP
 * proxy in front of DynamoDB Local: the backend and the audit log retry with
 * backoff, and no write or audit event is lost.
 */
import { randomUUID } from 'node:crypto';
import { DynamoBackend } from '../../../runtime/backend/dynamodb';
import { DynamoAuditLog } from '../../../runtime/events/dynamodb';
import { DynamoDbLocal } from '../../helpers/dynamodb';
import { FaultProxy } from '../../helpers/faultproxy';

let local: DynamoDbLocal;
beforeAll(async () => {
  local = await DynamoDbLocal.start();
}, 90_000);
afterAll(() => local?.stop());

const creds = { region: 'us-east-1', accessKey: 'local', secretKey: 'local' };

describe('DynamoDB behind a faulty network', () => {
  it('GIVEN throttling and resets on every third request WHEN the backend writes and reads THEN every write lands', async () => {
    const faults = await FaultProxy.start({ target: local.endpoint, faults: ['throttle', 'reset'] });
    const backend = await DynamoBackend.open({ tableName: `faults-${randomUUID()}`, endpoint: faults.endpoint, ...creds, pollPeriodMs: 200 });
    try {
      for (let i = 0; i < 40; i++) await backend.put({ key: `/faults/k${String(i).padStart(2, '0')}`, value: Buffer.from(`v${i}`) });
      const items = await backend.getRange('/faults/', '/faults/\uffff');
      expect(items.map((i) => i.value.toString())).toEqual(Array.from({ length: 40 }, (_, i) => `v${i}`));
      expect(faults.injected.throttle).toBeGreaterThan(5);
      expect(faults.injected.reset).toBeGreaterThan(5);
    } finally {
      await backend.close();
      await faults.close();
    }
  });

  it('GIVEN throttling, resets and lost answers WHEN 100 audit events are emitted THEN all 100 are found once each', async () => {
    const faults = await FaultProxy.start({ target: local.endpoint, faults: ['throttle', 'reset', 'lose-answer'] });
    const audit = await DynamoAuditLog.open({ tableName: `faults-events-${randomUUID()}`, endpoint: faults.endpoint, ...creds });
    try {
      const from = new Date(Date.now() - 60_000);
      for (let i = 0; i < 100; i++) await audit.emit({ event: 'user.login', user: `u${i}`, success: true });
      const found = await audit.search({ from, to: new Date(Date.now() + 60_000), eventTypes: ['user.login'] });
      expect(found.map((e) => e.user).sort()).toEqual(Array.from({ length: 100 }, (_, i) => `u${i}`).sort());
      expect(faults.injected['lose-answer']).toBeGreaterThan(5);
    } finally {
      await audit.close();
      await faults.close();
    }
  });
});
