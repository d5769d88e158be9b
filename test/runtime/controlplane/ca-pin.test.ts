/**
 * The CA pin publisher, driven the way Lambda drives it: the state table lives in DynamoDB Local,
 * the auth server's own code writes the records, the table's real stream records pass through the
 * event source mapping's filter exactly as the stack declares it (lib/control-plane.ts), and the
 * function writes to SSM through the local SSM endpoint (the SDK reaches it by
 * AWS_ENDPOINT_URL_SSM, so the handler runs unchanged).
 */
import { _Record } from '@aws-sdk/client-dynamodb-streams';
import { SSMClient } from '@aws-sdk/client-ssm';
import { hostCaRecordFilter } from '../../../lib/control-plane';
import { Authorities } from '../../../runtime/auth/authorities';
import { CertAuthority } from '../../../runtime/auth/resources';
import { Tokens } from '../../../runtime/auth/tokens';
import { DynamoBackend } from '../../../runtime/backend/dynamodb';
import { SsmPaths } from '../../../runtime/contract/aws';
import { Keys } from '../../../runtime/contract/keys';
import { handler, publishFromStream } from '../../../runtime/controlplane/ca-pin';
import { PUT_ATTEMPTS } from '../../../runtime/controlplane/publish';
import { generateCA } from '../../../runtime/tlsca';
import { caPin } from '../../../runtime/tlsca/pin';
import { parseCaPinList } from '../../../runtime/config/tokens';
import { setLogWriter } from '../../../runtime/utils/logger';
import { DynamoDbLocal, lambdaStreamEvent, LOCAL_REGION, matchesFilter, readStream } from '../../helpers/dynamodb';
import { SsmImitation, startSsm } from '../../helpers/ec2-imitations';
import { waitFor } from '../../helpers/proc';

const CLUSTER = 'acme';
const TABLE = 'teleport-pin';
const PIN_PARAMETER = SsmPaths.caPin(CLUSTER);

describe('CA pin publisher (DynamoDB Local stream, local SSM endpoint)', () => {
  const savedEnv = { ...process.env };
  const logs: string[] = [];
  let ddb: DynamoDbLocal;
  let state: DynamoBackend;
  let ssm: SsmImitation;
  /** Stream records already looked at. */
  let seen = 0;

  /** What the event source mapping delivers of the stream records written since the last call (waiting until `until` is among them). */
  async function delivered(cluster: string, until: (r: _Record) => boolean) {
    const pattern = JSON.parse(hostCaRecordFilter(cluster).pattern as string) as Record<string, unknown>;
    const { streamArn, records } = await waitFor('the write in the stream', async () => {
      const s = await readStream(ddb, TABLE);
      return s.records.slice(seen).some(until) ? s : undefined;
    });
    const fresh = lambdaStreamEvent(records.slice(seen), streamArn).Records;
    seen = records.length;
    return { all: { Records: fresh }, event: { Records: fresh.filter((r) => matchesFilter(pattern, r)) } };
  }
  const keyIs = (key: string) => (r: _Record) => r.dynamodb?.Keys?.FullPath?.S === `teleport${key}`;

  beforeAll(async () => {
    ddb = await DynamoDbLocal.start();
    ssm = await startSsm(new Map());
    // The backend creates the table as the stack declares it (NEW_IMAGE stream); no background work.
    state = await DynamoBackend.open({ tableName: TABLE, endpoint: ddb.endpoint, accessKey: 'local', secretKey: 'local', background: false });
    Object.assign(process.env, {
      TELEPORT_CLUSTER_NAME: CLUSTER,
      AWS_REGION: LOCAL_REGION,
      AWS_ENDPOINT_URL_SSM: ssm.url,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    });
    setLogWriter((line) => logs.push(line));
  });
  afterAll(async () => {
    process.env = savedEnv;
    setLogWriter((line) => process.stderr.write(line + '\n'));
    await state?.close();
    await ssm?.close();
    await ddb?.stop();
  });

  it('GIVEN a cluster whose auth server has not started (tokens, another cluster\'s CA) WHEN its stream is filtered THEN nothing reaches the publisher, and those records would publish nothing', async () => {
    // GIVEN join tokens and a trusted cluster's CAs in the state
    await new Tokens(state).create({ roles: ['node'], ttlMs: 3600_000 });
    await new Authorities(state).init('leaf', 'ed25519');
    // WHEN the stream is read and filtered as the mapping filters it
    const { all, event } = await delivered(CLUSTER, keyIs(Keys.certAuthority('host', 'leaf')));
    // THEN no record passes
    expect(all.Records.length).toBeGreaterThanOrEqual(3);
    expect(event.Records).toEqual([]);
    // AND even unfiltered they publish nothing
    await expect(handler(all)).resolves.toEqual({ records: all.Records.length });
    expect(ssm.writes).toEqual([]);
  });

  it('GIVEN the first auth server creates the CAs WHEN the filtered records invoke the publisher THEN SSM holds the host CA\'s pin within the invocation', async () => {
    // GIVEN the auth server's own CA creation
    const { host } = await new Authorities(state).init(CLUSTER, 'ed25519');
    // WHEN the mapping delivers what passes its filter
    const { event } = await delivered(CLUSTER, keyIs(Keys.certAuthority('host', CLUSTER)));
    // THEN exactly the host CA's INSERT passed (not the user CA's)
    expect(event.Records.map((r) => [r.eventName, r.dynamodb.Keys.FullPath.S])).toEqual([['INSERT', `teleport/authorities/host/${CLUSTER}`]]);
    const out = await handler(event);
    // AND the pin is the CA's, written as a String over any earlier value
    const pin = caPin(host.tlsCert());
    expect(out).toEqual({ records: 1, caPin: pin, parameter: PIN_PARAMETER });
    expect(ssm.writes).toEqual([{ Name: PIN_PARAMETER, Value: pin, Type: 'String', Overwrite: true }]);
    // AND nothing of the CA's keys was logged
    const signingKey = host.resource.spec.signing_keys[0];
    const tlsKey = host.resource.spec.tls_key_pairs[0].key;
    expect(logs.join('\n')).toContain(pin);
    // (a stretch from the middle of each: the start is the PEM header every key shares)
    expect(logs.join('\n')).not.toContain(signingKey.slice(80, 120));
    expect(logs.join('\n')).not.toContain(tlsKey.slice(80, 120));
    expect(logs.join('\n')).not.toContain(Buffer.from(signingKey, 'base64').toString().split('\n')[1]);
  });

  it('GIVEN a published pin WHEN the host CA is rotated to a new TLS key pair THEN the new pin replaces it, even when the batch also replays the creation', async () => {
    // GIVEN the CA record as the auth server stored it
    const key = Keys.certAuthority('host', CLUSTER);
    const ca = JSON.parse((await state.get(key)).value.toString()) as CertAuthority;
    const next = await generateCA(CLUSTER);
    // WHEN the record is rewritten with the new key pair (a MODIFY in the stream)
    ca.spec.tls_key_pairs = [{ cert: Buffer.from(next.cert).toString('base64'), key: Buffer.from(next.key).toString('base64') }];
    await state.put({ key, value: Buffer.from(JSON.stringify(ca)) });
    await delivered(CLUSTER, (r) => r.eventName === 'MODIFY' && keyIs(key)(r));
    // AND the mapping delivers the stream from its trim horizon (INSERT, then MODIFY) in one batch
    seen = 0;
    const { event } = await delivered(CLUSTER, keyIs(key));
    expect(event.Records.map((r) => r.eventName)).toEqual(['INSERT', 'MODIFY']);
    await handler(event);
    // THEN the last write wins: the rotated CA's pin
    expect(ssm.writes.at(-1)).toEqual({ Name: PIN_PARAMETER, Value: caPin(next.cert), Type: 'String', Overwrite: true });
    expect(caPin(next.cert)).not.toBe(ssm.writes[0].Value);
  });

  it('GIVEN a host CA rotation in progress (two TLS key pairs) WHEN its record is delivered THEN both pins are published, the signing CA\'s first, as --ca-pin takes a list', async () => {
    const key = Keys.certAuthority('host', CLUSTER);
    const ca = JSON.parse((await state.get(key)).value.toString()) as CertAuthority;
    const second = await generateCA(CLUSTER);
    const first = ca.spec.tls_key_pairs[0];
    ca.spec.tls_key_pairs = [first, { cert: Buffer.from(second.cert).toString('base64'), key: Buffer.from(second.key).toString('base64') }];
    await state.put({ key, value: Buffer.from(JSON.stringify(ca)) });
    const { event } = await delivered(CLUSTER, (r) => r.eventName === 'MODIFY' && keyIs(key)(r));
    await handler(event);
    const pins = `${caPin(Buffer.from(first.cert, 'base64'))},${caPin(second.cert)}`;
    expect(ssm.writes.at(-1)).toEqual({ Name: PIN_PARAMETER, Value: pins, Type: 'String', Overwrite: true });
    expect(parseCaPinList(pins, 'the parameter')).toHaveLength(2);
  });

  it('GIVEN SSM refuses the write while another is in flight WHEN the publisher runs THEN it tries again, and fails only when SSM keeps refusing', async () => {
    // GIVEN the CA's records and two refusals
    seen = 0;
    const { event } = await delivered(CLUSTER, keyIs(Keys.certAuthority('host', CLUSTER)));
    ssm.refuseWrites(PIN_PARAMETER, 2);
    const before = ssm.requests.length;
    // WHEN it runs THEN the third attempt writes the pin
    await expect(handler(event)).resolves.toMatchObject({ parameter: PIN_PARAMETER });
    expect(ssm.requests.slice(before)).toEqual(Array(3).fill(`PutParameter ${PIN_PARAMETER}`));
    // AND refused on every attempt, the invocation fails (the mapping retries the batch)
    ssm.refuseWrites(PIN_PARAMETER, PUT_ATTEMPTS);
    await expect(handler(event)).rejects.toMatchObject({ name: 'TooManyUpdates' });
  });

  it('GIVEN the host CA key holds a record that is not a CA WHEN delivered THEN the invocation fails naming the key, quoting nothing of the record, and writes nothing', async () => {
    // GIVEN a broken record under another cluster's host CA key
    const key = Keys.certAuthority('host', 'broken');
    await state.put({ key, value: Buffer.from('{"spec":{"signing_keys":["SECRET-KEY-MATERIAL"') });
    const { event } = await delivered('broken', keyIs(key));
    expect(event.Records).toHaveLength(1);
    const writes = ssm.writes.length;
    // WHEN it reaches that cluster's publisher
    const client = new SSMClient({ region: LOCAL_REGION });
    try {
      const err = await publishFromStream(event, { ssm: client, clusterName: 'broken' }).catch((e: Error) => e);
      // THEN
      expect((err as Error).message).toBe('the /authorities/host/broken record is not the host certificate authority of cluster "broken" with a TLS certificate');
      expect(JSON.stringify(err)).not.toContain('SECRET');
    } finally {
      client.destroy();
    }
    expect(ssm.writes.length).toBe(writes);
  });

  it('GIVEN the host CA key holds another cluster\'s CA or a user CA WHEN delivered THEN the invocation fails naming the key and writes nothing', async () => {
    // GIVEN real CAs of cluster "acme" copied under the host CA key of cluster "copied"
    const key = Keys.certAuthority('host', 'copied');
    const writes = ssm.writes.length;
    const client = new SSMClient({ region: LOCAL_REGION });
    try {
      for (const type of ['host', 'user'] as const) {
        const ca = (await state.get(Keys.certAuthority(type, CLUSTER))).value;
        await state.put({ key, value: type === 'host' ? ca : Buffer.from(JSON.stringify({ ...JSON.parse(ca.toString()), spec: { ...JSON.parse(ca.toString()).spec, cluster_name: 'copied' } })) });
        const { event } = await delivered('copied', keyIs(key));
        // WHEN it reaches that cluster's publisher THEN it is refused: a host CA of another cluster, a user CA of this one
        await expect(publishFromStream(event, { ssm: client, clusterName: 'copied' })).rejects.toThrow(
          /^the \/authorities\/host\/copied record is not the host certificate authority of cluster "copied" with a TLS certificate$/,
        );
      }
    } finally {
      client.destroy();
    }
    expect(ssm.writes.length).toBe(writes);
  });

  it('GIVEN an event that is not a DynamoDB stream event WHEN the publisher is invoked THEN it fails saying so', async () => {
    await expect(handler({ 'detail-type': 'Scheduled Event', detail: {} })).rejects.toThrow(/^not a DynamoDB stream event: Records: /);
    await expect(handler({ Records: [{ eventName: 'INSERT', dynamodb: { Keys: {}, NewImage: { Value: { B: 'not base64!' } } } }] })).rejects.toThrow(
      /^not a DynamoDB stream event: Records\.0\.dynamodb\.NewImage\.Value\.B: is not base64$/,
    );
  });
});
