import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { HANDLER_BUNDLING } from '../../lib/control-plane';
import { HandlerBundles } from '../../lib/handler-bundles';
import { ROOT } from '../helpers/proc';
import { scratchDir } from '../helpers/scratch';

const HANDLERS = ['token-rotator.ts', 'ca-pin.ts', 'lifecycle.ts'].map((f) => path.join(ROOT, 'runtime', 'controlplane', f));

/** Each function's asset directory in a synthesised assembly: its files and their bytes, by function id. */
function assets(outdir: string, stackName: string): Record<string, { hash: string; files: Record<string, string> }> {
  const template = JSON.parse(fs.readFileSync(path.join(outdir, `${stackName}.template.json`), 'utf8'));
  const manifest = JSON.parse(fs.readFileSync(path.join(outdir, `${stackName}.assets.json`), 'utf8'));
  const out: Record<string, { hash: string; files: Record<string, string> }> = {};
  for (const [id, r] of Object.entries(template.Resources as Record<string, { Type: string; Properties: any }>)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const hash = String(r.Properties.Code.S3Key).replace(/\.zip$/, '');
    const dir = path.join(outdir, manifest.files[hash].source.path);
    const files: Record<string, string> = {};
    for (const f of fs.readdirSync(dir).sort()) files[f] = fs.readFileSync(path.join(dir, f)).toString('base64');
    out[id.replace(/[0-9A-F]{8}$/, '')] = { hash, files };
  }
  return out;
}

describe('HandlerBundles: the control plane handlers bundled by one esbuild run', () => {
  test('gives each function the same files and asset hash as NodejsFunction bundling each on its own, from one esbuild run', () => {
    // GIVEN two assembly directories at the same depth (source maps name the sources relative to the bundle)
    const base = scratchDir('handler-bundles-');
    const shared = path.join(base, 'shared');
    const each = path.join(base, 'each');
    // WHEN one app bundles the three handlers with HandlerBundles
    const a = new App({ outdir: shared });
    const sa = new Stack(a, 'Bundles');
    const bundles = new HandlerBundles(ROOT, HANDLERS, HANDLER_BUNDLING);
    HANDLERS.forEach((entry, i) => {
      new nodejs.NodejsFunction(sa, `Fn${i}`, { code: bundles.code(entry), handler: 'index.handler', runtime: lambda.Runtime.NODEJS_24_X });
    });
    a.synth();
    // AND another lets NodejsFunction bundle each with the same bundling options
    const b = new App({ outdir: each });
    const sb = new Stack(b, 'Bundles');
    HANDLERS.forEach((entry, i) => {
      new nodejs.NodejsFunction(sb, `Fn${i}`, {
        entry,
        handler: 'handler',
        runtime: lambda.Runtime.NODEJS_24_X,
        projectRoot: ROOT,
        depsLockFilePath: path.join(ROOT, 'package-lock.json'),
        bundling: {
          forceDockerBundling: false,
          minify: HANDLER_BUNDLING.minify,
          sourceMap: HANDLER_BUNDLING.sourceMap,
          target: HANDLER_BUNDLING.target,
          format: nodejs.OutputFormat.CJS,
          externalModules: [...HANDLER_BUNDLING.externalModules],
        },
      });
    });
    b.synth();
    // THEN esbuild ran once for the three
    expect(bundles.esbuildRuns).toBe(1);
    // AND each function's asset is byte for byte NodejsFunction's, under the same hash
    const mine = assets(shared, 'Bundles');
    const theirs = assets(each, 'Bundles');
    expect(Object.keys(mine).sort()).toEqual(['Fn0', 'Fn1', 'Fn2']);
    expect(mine).toEqual(theirs);
    // AND every function has its own bundle: its own handler, not another's asset
    expect(new Set(Object.values(mine).map((m) => m.hash)).size).toBe(3);
    expect(Object.keys(mine.Fn0.files)).toEqual(['index.js', 'index.js.map']);
    expect(Buffer.from(mine.Fn0.files['index.js'], 'base64').toString()).toContain('teleport-token-rotator-');
    expect(Buffer.from(mine.Fn2.files['index.js'], 'base64').toString()).toContain('autoscaling:EC2_INSTANCE_TERMINATING');
  }, 120_000);

  test('an entry esbuild cannot bundle stops the synth with esbuild\'s error (no fallback to Docker)', () => {
    // GIVEN a handler whose import does not resolve
    const dir = scratchDir('handler-bundles-bad-');
    const bad = path.join(dir, 'bad.ts');
    fs.writeFileSync(bad, "import { nothing } from './missing-module';\nexport const handler = () => nothing;\n");
    const app = new App({ outdir: path.join(dir, 'out') });
    const stack = new Stack(app, 'Bad');
    const bundles = new HandlerBundles(dir, [bad], HANDLER_BUNDLING);
    // WHEN the function's asset is staged THEN the synth fails naming the unresolved import
    expect(() => new lambda.Function(stack, 'Fn', { code: bundles.code(bad), handler: 'index.handler', runtime: lambda.Runtime.NODEJS_24_X })).toThrow(
      /Failed to bundle asset Bad\/Fn\/Code\/Stage[\s\S]*Could not resolve "\.\/missing-module"/,
    );
  });

  test('refuses an entry it was not given, a relative entry and a missing one', () => {
    // GIVEN bundles of the three handlers
    const bundles = new HandlerBundles(ROOT, HANDLERS, HANDLER_BUNDLING);
    // WHEN asked for another file's code THEN it throws (it would have no bundle for it)
    expect(() => bundles.code(path.join(ROOT, 'runtime', 'controlplane', 'env.ts'))).toThrow(/is not one of this construct's handler entries/);
    // AND construction checks the entries
    expect(() => new HandlerBundles(ROOT, ['runtime/controlplane/ca-pin.ts'], HANDLER_BUNDLING)).toThrow(/is not an absolute path/);
    expect(() => new HandlerBundles(ROOT, [path.join(ROOT, 'no-such-handler.ts')], HANDLER_BUNDLING)).toThrow(/does not exist/);
    expect(() => new HandlerBundles(ROOT, [HANDLERS[0], HANDLERS[0]], HANDLER_BUNDLING)).toThrow(/the same entry twice/);
  });
});
