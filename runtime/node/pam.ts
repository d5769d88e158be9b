/**
 * PAM for node sessions (`ssh_service.pam`): sessions start through
 * `build/pam-launch` (native/pam-launch.c, built at install when libpam's
 * headers are there), which runs the account check and opens the PAM session
 * around the user's program, as sshd does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PamSettings {
  service: string;
  launcher: string;
}

/** The package root, from runtime/node (ts) or dist/runtime/node (js). */
function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/** The launcher's path when it was built and can run here. */
export function findPamLauncher(): string | undefined {
  const p = path.join(packageRoot(), 'build', 'pam-launch');
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return p;
  } catch {
    return undefined;
  }
}
