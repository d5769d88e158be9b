/**
 * The node's native helpers, built into `build/` at install by scripts/build-native.js
 * (`pam-launch`, `passwd-lookup`), found from runtime/node (ts) or dist/runtime/node (js),
 * and the package root they and the compiled runtime are under.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package's root (where package.json is), from runtime/node or dist/runtime/node. */
export function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** Where the helper `name` is when built (the package root's build/). */
export function nativeHelperPath(name: string): string {
  return path.join(packageRoot(), 'build', name);
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
