/**
 * The node's native helpers, built into `build/` at install by scripts/build-native.js
 * (`pam-launch`, `passwd-lookup`), found from runtime/node (ts) or dist/runtime/node (js).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where the helper `name` is when built (the package root's build/). */
export function nativeHelperPath(name: string): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'build', name);
}

/** The helper's path when it was built and can run here. */
export function findNativeHelper(name: string): string | undefined {
  const p = nativeHelperPath(name);
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return p;
  } catch {
    return undefined;
  }
}
