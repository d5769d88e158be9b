/**
 * PAM for node sessions (`ssh_service.pam`): sessions start through
 * `build/pam-launch` (native/pam-launch.c, built at install when libpam's
 * headers are there), which runs the account check and opens the PAM session
 * around the user's program, as sshd does. A node told to use PAM on a host
 * without the launcher does not start (fail closed).
 */
import { BadParameterError } from '../utils/errors';
import { findNativeHelper, nativeHelperPath } from './native';

export interface PamSettings {
  service: string;
  launcher: string;
}

const launcherPath = () => nativeHelperPath('pam-launch');

/** The launcher's path when it was built and can run here. */
export const findPamLauncher = (): string | undefined => findNativeHelper('pam-launch');

/**
 * What the node's sessions use PAM with, or undefined when `pam.enabled` is off.
 * Throws when PAM is on but the launcher is missing: sessions must not start without PAM.
 */
export function pamSettings(pam: { enabled: boolean; serviceName: string }): PamSettings | undefined {
  if (!pam.enabled) return undefined;
  const launcher = findPamLauncher();
  if (!launcher) {
    throw new BadParameterError(
      `ssh_service.pam.enabled is on, but this installation has no PAM launcher (${launcherPath()}), so sessions cannot go through PAM: ` +
        'install a C compiler and the PAM headers (Debian: libpam0g-dev), then reinstall or run "node scripts/build-native.js"; or set pam.enabled: no',
    );
  }
  return { service: pam.serviceName, launcher };
}
