/**
 * `HandlerBundles`: Lambda handlers bundled from their TypeScript sources by one esbuild run.
 *
 * `NodejsFunction` bundles each function on its own: an `npx --no-install esbuild` process per function
 * (npm's start-up alone costs about 0.3 s of CPU each), every one parsing the same shared sources again.
 * This bundles all the handlers of a construct together, the first time the CDK asks for any of them,
 * with esbuild's JS API from the synth process (`buildSync`: one esbuild process), and hands each
 * function its own files when the CDK stages its asset. The esbuild options are the ones `NodejsFunction`
 * passes on its command line for the same bundling props, and each handler's `index.js` and
 * `index.js.map` are written to a directory at the same depth of the cloud assembly as the CDK's own
 * bundling directory, so the source map's relative paths, the files and the asset hashes are the same as
 * `NodejsFunction`'s (test/lib/handler-bundles.test.ts compares them byte for byte).
 *
 * Nothing is skipped or reused across synths: every synth that stages an asset bundles from the sources
 * as they are, and the asset hash is the hash of the output (`AssetHashType.OUTPUT`), as before. Bundling
 * fails closed: an esbuild error stops the synth; there is no fallback to Docker.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AssetHashType, DockerImage, ILocalBundling } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { BuildOptions, BuildResult } from 'esbuild';

/** How the handlers are bundled: the `NodejsFunction` bundling props this project uses. */
export interface HandlerBundleOptions {
  /** esbuild's `target`, e.g. `node24`. */
  readonly target: string;
  /** Output module format. */
  readonly format: 'cjs' | 'esm';
  readonly minify: boolean;
  /** A linked source map (`index.js.map`) beside the bundle, sources included. */
  readonly sourceMap: boolean;
  /** Module specifiers left to the runtime (esbuild `external`, wildcards allowed). */
  readonly externalModules: readonly string[];
}

/** What one esbuild run produced: for each entry, its output files by name. */
interface Build {
  /** The directory the outputs were laid out in (the cloud assembly directory). */
  readonly parent: string;
  readonly files: ReadonlyMap<string, ReadonlyArray<{ name: string; contents: Uint8Array }>>;
}

/** The handlers of one construct, bundled together; {@link code} gives each function its asset. */
export class HandlerBundles {
  private readonly entries: readonly string[];
  private build?: Build;
  private runs = 0;

  /**
   * @param projectRoot the directory esbuild runs in and the asset's source (as `NodejsFunction`'s `projectRoot`)
   * @param entries absolute paths of every handler's source, all known before the first function is made
   */
  constructor(
    private readonly projectRoot: string,
    entries: readonly string[],
    private readonly options: HandlerBundleOptions,
  ) {
    if (entries.length === 0) throw new Error('HandlerBundles needs at least one entry');
    for (const e of entries) {
      if (!path.isAbsolute(e)) throw new Error(`handler entry ${e} is not an absolute path`);
      if (!fs.existsSync(e)) throw new Error(`handler entry ${e} does not exist`);
    }
    if (new Set(entries).size !== entries.length) throw new Error('HandlerBundles lists the same entry twice');
    this.entries = [...entries];
  }

  /** How many times esbuild has run (once per cloud assembly directory that staged a handler). */
  get esbuildRuns(): number {
    return this.runs;
  }

  /** The asset of one handler: `index.js` (and its map) from the shared esbuild run, hashed by its output. */
  code(entry: string): lambda.AssetCode {
    if (!this.entries.includes(entry)) throw new Error(`${entry} is not one of this construct's handler entries`);
    return lambda.Code.fromAsset(this.projectRoot, {
      assetHashType: AssetHashType.OUTPUT,
      bundling: {
        // Never used: local bundling either writes the bundle or throws (no Docker fallback).
        image: DockerImage.fromRegistry('dummy'),
        local: {
          // The CDK caches staged assets in the process by a hash of these bundling options (functions left out):
          // the entry and the options make each handler's key its own, so no function is given another's asset.
          entry: path.relative(this.projectRoot, entry),
          options: this.options,
          tryBundle: (outputDir: string) => {
            this.writeBundle(entry, outputDir);
            return true;
          },
        } as ILocalBundling,
      },
    });
  }

  private writeBundle(entry: string, outputDir: string): void {
    const parent = path.dirname(path.resolve(outputDir));
    // The outputs are laid out beside the CDK's bundling directory, so their source maps' relative paths are
    // the same as if esbuild had written into it; another assembly directory gets its own run.
    if (this.build?.parent !== parent) this.build = this.bundleAll(parent);
    const files = this.build.files.get(entry);
    if (!files || files.length === 0) throw new Error(`esbuild produced no output for ${entry}`);
    for (const f of files) fs.writeFileSync(path.join(outputDir, f.name), f.contents);
  }

  private bundleAll(parent: string): Build {
    // One output directory per entry, named apart from anything the CDK writes (`asset.*`, `bundling-temp-*`),
    // one level below the assembly directory like the CDK's own bundling directories. Nothing is written there.
    const dirOf = (i: number) => path.join(parent, `handler-bundle-${i}`);
    const options = {
      absWorkingDir: this.projectRoot,
      entryPoints: this.entries.map((e, i) => ({ in: e, out: path.join(`handler-bundle-${i}`, 'index') })),
      outdir: parent,
      outExtension: { '.js': this.options.format === 'esm' ? '.mjs' : '.js' },
      bundle: true,
      platform: 'node',
      target: this.options.target,
      format: this.options.format,
      minify: this.options.minify,
      sourcemap: this.options.sourceMap,
      external: [...this.options.externalModules],
      write: false,
      logLevel: 'warning',
    } satisfies BuildOptions;
    const result: BuildResult<typeof options> = esbuildSync().buildSync(options);
    this.runs++;
    const files = new Map<string, Array<{ name: string; contents: Uint8Array }>>();
    this.entries.forEach((e, i) => {
      const dir = dirOf(i);
      const out = result.outputFiles.filter((f) => path.dirname(f.path) === dir);
      files.set(e, out.map((f) => ({ name: path.basename(f.path), contents: f.contents })));
    });
    return { parent, files };
  }
}

/**
 * esbuild's JS API for one synchronous run. By default its synchronous calls go to a service process that a
 * worker thread keeps, which outlives the call and is left to exit after the synth has; with worker threads
 * off (`ESBUILD_WORKER_THREADS=0`, read when esbuild is first loaded) `buildSync` runs one esbuild process
 * and has waited for it when it returns. Loaded on first use: a synth that bundles nothing never loads it.
 */
function esbuildSync(): typeof import('esbuild') {
  process.env.ESBUILD_WORKER_THREADS ??= '0';
  return require('esbuild') as typeof import('esbuild');
}
