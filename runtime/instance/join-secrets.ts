/**
 * A proxy or node instance's join secrets: the token and CA pin the control plane publishes in
 * SSM (`/teleport/<cluster>/tokens/<role>`, `/teleport/<cluster>/ca-pin`), fetched before the
 * service starts and written to the files its teleport.yaml names. Until the control plane has
 * published them (a new cluster's first minutes) the fetch waits with a bounded backoff, then
 * gives up with a message saying what is missing.
 */
import { existsSync } from 'node:fs';
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { parseCaPinList } from '../config/tokens';
import { JoinRole, SsmPaths } from '../contract/aws';
import { BadParameterError } from '../utils/errors';
import { writeFileAtomic } from '../utils/files';
import { caPinFile, joinTokenFile, type InstancePaths } from './generate';

export interface JoinSecrets {
  readonly token: string;
  readonly caPins: string[];
}

export interface FetchOptions {
  /** Give up after this long. @default 5 minutes */
  readonly timeoutMs?: number;
  /** First wait after a missing parameter; doubles up to `maxDelayMs`. @default 1 s */
  readonly initialDelayMs?: number;
  /** @default 30 s */
  readonly maxDelayMs?: number;
  /** Called before each wait, e.g. to log it. */
  readonly onWait?: (missing: string, delayMs: number) => void;
}

/** Errors worth waiting out: not published yet, throttled, or a network blip. */
function retryable(err: unknown): boolean {
  const e = err as { name?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'ParameterNotFound' || e.name === 'ThrottlingException' || e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode;
  return status === undefined || status >= 500;
}

/** Reads the join token of `role` and the CA pin of `cluster`, waiting until both exist. */
export async function fetchJoinSecrets(ssm: SSMClient, cluster: string, role: JoinRole, opts: FetchOptions = {}): Promise<JoinSecrets> {
  const tokenPath = SsmPaths.token(cluster, role);
  const pinPath = SsmPaths.caPin(cluster);
  const { token, pin } = await waitForParameters(ssm, tokenPath, pinPath, opts);
  return parseSecrets(token, pin, tokenPath, pinPath);
}

async function waitForParameters(ssm: SSMClient, tokenPath: string, pinPath: string, opts: FetchOptions): Promise<{ token: string; pin: string }> {
  const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
  const maxDelayMs = opts.maxDelayMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let delayMs = opts.initialDelayMs ?? 1000;
  for (;;) {
    let missing: string;
    let lastError: unknown;
    try {
      const token = await getParameter(ssm, tokenPath, true);
      const pin = await getParameter(ssm, pinPath, false);
      return { token, pin };
    } catch (err) {
      if (!retryable(err)) {
        throw new BadParameterError(`cannot read the join secrets from SSM: ${(err as Error).name}: ${(err as Error).message}`);
      }
      lastError = err;
      missing = (err as { parameter?: string }).parameter ?? `${tokenPath} and ${pinPath}`;
    }
    const wait = Math.min(delayMs, maxDelayMs, deadline - Date.now());
    if (wait <= 0) {
      throw new BadParameterError(
        `${missing} not readable after ${Math.round(timeoutMs / 1000)} s (${(lastError as Error).name}); ` +
          'the control plane publishes it once the auth tier is up (invoke the TokenRotatorFunctionName output to publish now)',
      );
    }
    opts.onWait?.(missing, wait);
    await new Promise((r) => setTimeout(r, wait));
    delayMs *= 2;
  }
}

async function getParameter(ssm: SSMClient, name: string, decrypt: boolean): Promise<string> {
  try {
    const out = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: decrypt }));
    return out.Parameter?.Value ?? '';
  } catch (err) {
    throw Object.assign(err as Error, { parameter: name });
  }
}

function parseSecrets(token: string, pin: string, tokenPath: string, pinPath: string): JoinSecrets {
  const t = token.trim();
  if (t === '' || /\s/.test(t)) throw new BadParameterError(`SSM parameter ${tokenPath} does not hold a join token`);
  const caPins = parseCaPinList(pin, `SSM parameter ${pinPath}`);
  if (caPins.length === 0) throw new BadParameterError(`SSM parameter ${pinPath} is empty`);
  return { token: t, caPins };
}

/**
 * What the unit runs before each start: fetch the secrets (waiting for them on a first boot) and
 * write them. An instance that fetched them before (a restart, a reboot) asks SSM once and, if
 * that fails, keeps the files it has: a joined proxy or node must not stay down while SSM is
 * unreachable. Returns whether the files were refreshed, or kept and why.
 */
export async function refreshJoinSecrets(
  ssm: SSMClient,
  cluster: string,
  role: JoinRole,
  paths: InstancePaths,
  opts: FetchOptions = {},
): Promise<{ refreshed: true } | { refreshed: false; reason: string }> {
  const previous = existsSync(joinTokenFile(paths)) && existsSync(caPinFile(paths));
  try {
    writeJoinSecrets(paths, await fetchJoinSecrets(ssm, cluster, role, previous ? { ...opts, timeoutMs: 0 } : opts));
    return { refreshed: true };
  } catch (err) {
    if (!previous) throw err;
    return { refreshed: false, reason: (err as Error).message };
  }
}

/** Writes the token and pin files (0600, each replaced atomically) that teleport.yaml names. */
export function writeJoinSecrets(paths: InstancePaths, secrets: JoinSecrets): void {
  writeFileAtomic(joinTokenFile(paths), secrets.token + '\n');
  writeFileAtomic(caPinFile(paths), secrets.caPins.join('\n') + '\n');
}
