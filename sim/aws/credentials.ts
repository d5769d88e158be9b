/**
 * Credentials of the deployment's callers. Every instance (through IMDS) and every function
 * (through its environment) gets its own access key id, so that each signed request names its
 * caller (`Credential=<AKID>/...` in the SigV4 `Authorization` header) and the gateway can check
 * it against that caller's role.
 */
import { randomBytes } from 'node:crypto';
import type { Caller, IssuedCredentials } from '../types';

export class CredentialRegistry {
  private readonly byKey = new Map<string, Caller>();

  /** New credentials for `caller`, valid for `hours`. */
  issue(caller: Caller, hours = 6): IssuedCredentials {
    const accessKeyId = `ASIA${randomBytes(8).toString('hex').toUpperCase()}`;
    this.byKey.set(accessKeyId, caller);
    return {
      accessKeyId,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: randomBytes(60).toString('base64'),
      expiration: new Date(Date.now() + hours * 3600_000).toISOString(),
    };
  }

  /** The caller an access key id was issued to. */
  callerOf(accessKeyId: string): Caller | undefined {
    return this.byKey.get(accessKeyId);
  }

  /** Forgets every key of `name` (a terminated instance): its later calls are unattributable and refused. */
  revoke(name: string): void {
    for (const [key, caller] of this.byKey) if (caller.name === name) this.byKey.delete(key);
  }
}

/** The access key id of a SigV4 `Authorization` header (`AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`). */
export function accessKeyOf(authorization: string | undefined): { accessKeyId: string; region: string; service: string } | undefined {
  const m = /Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(authorization ?? '');
  return m ? { accessKeyId: m[1], region: m[2], service: m[3] } : undefined;
}
