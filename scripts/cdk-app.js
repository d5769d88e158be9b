#!/usr/bin/env node
// The CDK app as cdk.json runs it. When dist/ is the build of the sources as they are now
// (scripts/build-stamp.js), the compiled app (dist/bin/app.js) runs: no compiler in the way of a synth.
// Otherwise bin/app.ts runs through ts-node (transpile only), as it always did. Both are the same code, so
// the templates are the same; an edited source is never synthesised from an old build.
'use strict';
const path = require('node:path');
const stamp = require('./build-stamp');

if (stamp.upToDate()) {
  require(path.join(stamp.ROOT, 'dist', 'bin', 'app.js'));
} else {
  require('ts-node').register({ project: path.join(stamp.ROOT, 'tsconfig.json'), transpileOnly: true, preferTsExts: true });
  require(path.join(stamp.ROOT, 'bin', 'app.ts'));
}
