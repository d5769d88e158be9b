/**
 * sim/lambda/custom-resources.ts with the real CDK provider framework (aws-cdk-lib's
 * provider-framework runtime, the asset `custom_resources.Provider` deploys): CloudFormation's
 * requests reach the framework function, which invokes the user function through the Lambda API
 * (served by sim/lambda/api.ts on a stand-in gateway) and PUTs the response to our HTTPS
 * endpoint; Create, a replacing Update (with the old resource's cleanup), Delete, a failing user
 * function, and a function that never answers.
 */
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lambdaApi } from '../../sim/lambda/api';
import { CustomResourceError, CustomResources } from '../../sim/lambda/custom-resources';
import { Functions } from '../../sim/lambda/functions';
import type { ServiceHandler } from '../../sim/aws/gateway';
import { endpointTls } from '../../sim/tls';
import { arn } from '../../sim/types';
import { fixture, physicalName, PROVIDER_FRAMEWORK_DIR, serveService, type Fixture, type TestGateway } from './lambda-fixture';

/** The user's onEvent handler: logs the request, names the resource after its Name, fails on Fail. */
const USER = `exports.handler = async (event) => {
  console.log('REQUEST ' + JSON.stringify(event));
  const props = event.ResourceProperties;
  if (props.Fail === 'true') throw new Error('the user function refused: ' + props.Name);
  if (event.RequestType === 'Delete') return {};
  return { PhysicalResourceId: 'thing-' + props.Name, Data: { Echo: props.Name, CountType: typeof props.Count, Request: event.RequestType } };
};`;

/** A function that never answers CloudFormation. */
const SILENT = `exports.handler = async () => ({});`;

const framework = (): { code: string; handler: string; files: Record<string, string> } => {
  const files = Object.fromEntries(['cfn-response.js', 'consts.js', 'outbound.js', 'util.js'].map((f) => [f, fs.readFileSync(path.join(PROVIDER_FRAMEWORK_DIR, f), 'utf8')]));
  return { code: fs.readFileSync(path.join(PROVIDER_FRAMEWORK_DIR, 'framework.js'), 'utf8'), handler: 'framework.onEvent', files };
};

/** The requests the user function received, from its output. */
function requests(functions: Functions): Record<string, any>[] {
  return [...functions.output(physicalName('User')).matchAll(/REQUEST (.*)/g)].map((m) => JSON.parse(m[1]));
}

describe('custom resources through the CDK provider framework', () => {
  let fx: Fixture;
  let functions: Functions;
  let gateway: TestGateway;
  let custom: CustomResources;

  beforeAll(async () => {
    const thing = (props: Record<string, unknown>) => ({ Type: 'Custom::Thing', Properties: { ServiceToken: { 'Fn::GetAtt': ['Framework', 'Arn'] }, ...props } });
    fx = fixture(
      {
        Framework: { ...framework(), variables: { USER_ON_EVENT_FUNCTION_ARN: { 'Fn::GetAtt': ['User', 'Arn'] } } },
        User: { code: USER },
        Silent: { code: SILENT },
      },
      {
        Thing: thing({ Name: 'one', Count: 3 }),
        Broken: thing({ Name: 'bad', Fail: true }),
        Mute: { Type: 'AWS::CloudFormation::CustomResource', Properties: { ServiceToken: { 'Fn::GetAtt': ['Silent', 'Arn'] }, ServiceTimeout: 1 } },
      },
    );
    // The response endpoint needs port 443 (the framework drops the URL's port): a loopback address of its own.
    const host = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(1, 255)}`;
    const tls = await endpointTls(fx.dir, ['127.0.0.1', host]);
    // The functions need the gateway's URL, and the gateway's Lambda route the functions.
    let api: ServiceHandler | undefined;
    gateway = await serveService((req, authorize) => api!(req, authorize), fx.credentials, tls);
    functions = Functions.create({
      resources: fx.resources,
      resolve: fx.resolve,
      cdkOut: fx.cdkOut,
      credentials: fx.credentials,
      env: { ...fx.env, AWS_ENDPOINT_URL: gateway.url, NODE_EXTRA_CA_CERTS: tls.certFile },
      log: fx.log,
      workDir: fx.workDir,
    });
    api = lambdaApi(functions);
    custom = await CustomResources.create({ resources: fx.resources, resolve: fx.resolve, functions, log: fx.log, tls, host, stackName: 'Teleport-acme' });
  });

  afterAll(async () => {
    await custom?.close();
    await functions?.close();
    await gateway?.close();
    fx?.cleanup();
  });

  test('Create runs the user function through the framework and returns its physical id and data', async () => {
    // WHEN CloudFormation creates the resource
    const result = await custom.create('Thing');
    // THEN the user function's answer comes back through the framework's response
    expect(result).toEqual({ physicalResourceId: 'thing-one', data: { Echo: 'one', CountType: 'string', Request: 'Create' } });
    // AND the user function got CloudFormation's request, properties as strings, ServiceToken included
    const [request] = requests(functions);
    expect(request).toMatchObject({
      RequestType: 'Create',
      LogicalResourceId: 'Thing',
      ResourceType: 'Custom::Thing',
      StackId: expect.stringMatching(/^arn:aws:cloudformation:eu-west-1:123456789012:stack\/Teleport-acme\//),
      RequestId: expect.any(String),
      ResourceProperties: { ServiceToken: arn.function(physicalName('Framework')), Name: 'one', Count: '3' },
    });
    expect(request.PhysicalResourceId).toBeUndefined();
    // AND the framework invoked it through the Lambda API as its own role
    expect(gateway.calls).toContainEqual(expect.objectContaining({ action: 'lambda:InvokeFunction', resource: arn.function(physicalName('User')), caller: expect.objectContaining({ roleLogicalId: 'FrameworkRole' }) }));
  });

  test('an Update that changes the physical id is followed by the Delete of the old resource; Delete ends it', async () => {
    // WHEN the resource's Name changes
    const result = await custom.update('Thing', { ...fx.resources.Thing.Properties, Name: 'two' });
    // THEN it is replaced
    expect(result.physicalResourceId).toBe('thing-two');
    const [, update, cleanup] = requests(functions);
    expect(update).toMatchObject({ RequestType: 'Update', PhysicalResourceId: 'thing-one', ResourceProperties: { Name: 'two' }, OldResourceProperties: { Name: 'one' } });
    // AND the old resource is deleted with its own properties
    expect(cleanup).toMatchObject({ RequestType: 'Delete', PhysicalResourceId: 'thing-one', ResourceProperties: { Name: 'one' } });
    // WHEN it is deleted THEN the new one is
    await custom.delete('Thing');
    expect(requests(functions)[3]).toMatchObject({ RequestType: 'Delete', PhysicalResourceId: 'thing-two' });
    expect(custom.physicalId('Thing')).toBeUndefined();
  });

  test('a failing user function fails the request with its reason', async () => {
    // WHEN the resource whose user function throws is created
    // THEN the request fails with the error the framework reported
    const failure = await custom.create('Broken').catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(CustomResourceError);
    expect((failure as CustomResourceError).reason).toContain('the user function refused: bad');
    // AND the framework's marker is the physical id, so that a rollback's Delete is ignored
    expect(custom.physicalId('Broken')).toBe('AWSCDK::CustomResourceProviderFramework::CREATE_FAILED');
  });

  test('a function that never answers fails the request after ServiceTimeout', async () => {
    await expect(custom.create('Mute')).rejects.toThrow('custom resource Mute Create failed: no response within 1 s');
  });
});
