/**
 * A fresh SoftHSM2 token per test: its own SOFTHSM2_CONF and token directory
 * in a temp dir (removed by cleanup), initialized with softhsm2-util.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, run, tempDir } from './proc';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  readonly dir: string;
  readonly label: string;
  readonly pin: string;
  /** A file holding the PIN (for `pin_path`). */
  readonly pinPath: string;
  /** SOFTHSM2_CONF for the processes that use the token. */
  readonly env: NodeJS.ProcessEnv;
  /** `auth_service` lines naming this token (`token_label`, `pin_path`). */
  authConfig(over?: Partial<{ pin: string; label: string; modulePath: string }>): string[];
  cleanup(): void;
}

export async function createSoftHsmToken(label = 'teleport-test'): Promise<SoftHsmToken> {
  const dir = tempDir('softhsm-');
  const tokens = path.join(dir, 'tokens');
  fs.mkdirSync(tokens);
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const env = { SOFTHSM2_CONF: conf };
  const pin = '1234';
  const pinPath = path.join(dir, 'pin');
  fs.writeFileSync(pinPath, pin + '\n', { mode: 0o600 });
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  const r = await run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', '5678'], { env: { ...process.env, ...env } });
  if (r.code !== 0) {
    cleanup();
    throw new Error(`softhsm2-util --init-token exited ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return {
    dir,
    label,
    pin,
    pinPath,
    env,
    cleanup,
    authConfig: (over = {}) => [
      'ca_key_params:',
      '  pkcs11:',
      `    module_path: ${over.modulePath ?? SOFTHSM_MODULE}`,
      `    token_label: "${over.label ?? label}"`,
      over.pin !== undefined ? `    pin: "${over.pin}"` : `    pin_path: ${pinPath}`,
    ],
  };
}

/** What a private key object in the token says about itself. */
export interface TokenKey {
  id: string;
  extractable: boolean;
  sensitive: boolean;
}

/**
 * The private keys in the token, read by a separate process (SoftHSM2 reads
 * SOFTHSM2_CONF from the real environment, which a jest worker's process.env is not).
 */
export async function tokenPrivateKeys(token: SoftHsmToken): Promise<TokenKey[]> {
  const script = `
    const p = require('pkcs11js');
    const [label, pin] = process.argv.slice(1);
    const lib = new p.PKCS11();
    lib.load(${JSON.stringify(SOFTHSM_MODULE)});
    lib.C_Initialize();
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === label);
    const session = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
    lib.C_Login(session, p.CKU_USER, pin);
    lib.C_FindObjectsInit(session, [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }]);
    const handles = lib.C_FindObjects(session, 100);
    lib.C_FindObjectsFinal(session);
    const keys = handles.map((h) => {
      const [id, ex, se] = lib.C_GetAttributeValue(session, h, [{ type: p.CKA_ID }, { type: p.CKA_EXTRACTABLE }, { type: p.CKA_SENSITIVE }]);
      return { id: id.value.toString('hex'), extractable: ex.value[0] === 1, sensitive: se.value[0] === 1 };
    });
    lib.C_Finalize();
    process.stdout.write(JSON.stringify(keys));
  `;
  const r = await run(process.execPath, ['-e', script, token.label, token.pin], { env: token.env, cwd: ROOT });
  if (r.code !== 0) throw new Error(`reading token "${token.label}" failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as TokenKey[];
}
