#!/usr/bin/env node
// The CDK app as cdk.json runs it. When dist/ is the build of the sources as they are now
// (scripts/build-stamp.js), the compiled app (dist/bin/app.js) runs: no compiler in the way of a synth.
// Otherwise bin/app.ts runs through ts-node (transpile only), as it always did. Both are the same code, so
// the templates are the same; an edited source is never synthesised from an old build.
//
// cdk.json starts it with three V8 flags that change how the synth's code is compiled and its memory
// collected, never what it computes (bench/README.md, "Start-up", has the figures):
// - `--no-wasm-tier-up --no-wasm-dynamic-tiering`: aws-cdk-lib validates every template with a WebAssembly
//   engine (@aws/cloudformation-validate, 9 MB of code) that runs for a second or two per synth. V8 compiles
//   the functions it runs with its baseline compiler (Liftoff) and by default compiles the hot ones again with
//   its optimising compiler on background threads, which costs more CPU than it saves in a process this short.
//   The flags keep the baseline code: the same validation runs, with the same findings.
// - `--single-threaded-gc`: the garbage collector works on the main thread only. On two busy cores its helper
//   threads cost more CPU than they save (about 40% of the app's CPU in the measurements).
'use strict';
const path = require('node:path');
const stamp = require('./build-stamp');

if (stamp.upToDate()) {
  require(path.join(stamp.ROOT, 'dist', 'bin', 'app.js'));
} else {
  require('ts-node').register({ project: path.join(stamp.ROOT, 'tsconfig.json'), transpileOnly: true, preferTsExts: true });
  require(path.join(stamp.ROOT, 'bin', 'app.ts'));
}
