/**
 * A member's side of a host CA rotation (formats.md §1.7): a node or proxy follows the host CA's
 * phase as its access copy brings it (access/cache.ts), with no action by anyone.
 *
 * | phase          | talks to auth with (client)  | presents (server)            |
 * |----------------|------------------------------|------------------------------|
 * | init           | the old certificates         | the old certificates         |
 * | update_clients | new ones, asked for now      | the old ones                 |
 * | update_servers | the new ones                 | the new ones                 |
 * | standby        | the CA's only key's          | the same                     |
 * | rollback       | the old ones                 | the old ones                 |
 *
 * Put by keys: the client identity is the one from the CA's first (signing) key, the server
 * identity the one from the key servers use in the phase (rotation.ts `servingKeyIndex`). A member
 * holds at most two identities (`current`, the one it presents, and `replacement`), keeps them in
 * its process storage so a restart resumes where it was, asks the auth server for new certificates
 * (`POST /v1/hosts/reissue`, with the keys made here) when it holds none from the signing key, and
 * drops those from a key the CA no longer has. The TLS CAs it trusts the auth servers under are
 * the host CA's (both during a rotation), learnt over the mutual-TLS channel it already trusts.
 */
import { AccessCache } from '../auth/access/cache';
import { AuthClient } from '../auth/client';
import { Identity, IdentityStore } from '../auth/identity';
import type { PackedKeys, ReissueRequest } from '../auth/server';
import { servingKeyIndexIn } from '../auth/rotation';
import { formatAuthorizedKey, generateKeyPair, parseCertificate, publicKeyBlob } from '../sshcert';
import { generateTlsKey, publicKeyPem } from '../tlsca';
import { Logger } from '../utils/logger';

export interface HostRotationOptions {
  /** As loaded at start: the identity the member presents. */
  current: Identity;
  store: IdentityStore;
  client: AuthClient;
  access: AccessCache;
  /** The host's name, as it joined (`nodename`). */
  nodeName: string;
  /** Called when the member should present another identity (its SSH host certificate). */
  serve: (id: Identity) => void;
  log: Logger;
  /** How long after a failed step it tries again. @default 5 s */
  retryMs?: number;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();
const signerOf = (id: Identity) => parseCertificate(id.sshCert).signatureKey;
const stateOf = (ids: Identity[]) => ids.map((id) => [id.sshCert, id.tlsCert, ...id.tlsCACerts].join('|')).join('||');

export class HostRotation {
  private held: Identity[];
  private client: Identity;
  private server: Identity;
  private running: Promise<void> = Promise.resolve();
  private retry?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly opts: HostRotationOptions) {
    this.held = [opts.current];
    this.client = this.server = opts.current;
  }

  /** Loads a replacement a previous run left, follows the CA once, then on every change of the access copy. */
  async start(): Promise<void> {
    const replacement = await this.opts.store.replacement(this.opts.current.role);
    if (replacement) this.held.push(replacement);
    this.opts.access.onChange(() => this.kick());
    this.kick();
    await this.running;
  }

  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    return this.running;
  }

  private kick(): void {
    this.running = this.running.then(() => this.follow()).catch((err: Error) => {
      if (this.stopped) return;
      this.opts.log.warn('cannot follow the host CA rotation yet; trying again', { error: err });
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.kick(), this.opts.retryMs ?? 5_000);
      this.retry.unref();
    });
  }

  private async follow(): Promise<void> {
    const ca = this.opts.access.hostCA();
    if (this.stopped || !ca || !ca.checkingKeys.length) return;
    const trusted = (id: Identity) => ca.checkingKeys.some((k) => k.equals(signerOf(id)));
    let held = this.held.filter(trusted);
    if (!held.length) {
      this.opts.log.error("this host's certificates are from a host CA the cluster no longer trusts (it missed a rotation): join it again");
      return;
    }
    const from = (key: Buffer | undefined) => held.find((id) => key && signerOf(id).equals(key));
    let client = from(ca.checkingKeys[0]);
    if (!client) {
      client = await this.reissue(held[0], ca.tlsCAs);
      held.push(client);
      this.opts.log.info('obtained host certificates from the new host CA', { phase: ca.rotation.phase });
    }
    const server = from(ca.checkingKeys[servingKeyIndexIn(ca.rotation.phase)]) ?? client;
    held = [server, ...(client === server ? [] : [client])].map((id) => ({ ...id, tlsCACerts: ca.tlsCAs }));
    const [current, replacement] = held;
    // Written only when something changed (this runs on every change of the access data).
    if (stateOf(held) !== stateOf(this.held)) {
      await this.opts.store.save(current);
      if (replacement) await this.opts.store.save(replacement, 'replacement');
      else await this.opts.store.removeReplacement(current.role);
    }
    this.held = held;
    const clientNow = held[held.length - 1];
    if (clientNow.tlsCert !== this.client.tlsCert || clientNow.tlsCACerts.join() !== this.client.tlsCACerts.join()) {
      this.opts.client.setCredentials({ key: clientNow.tlsKey, cert: clientNow.tlsCert, ca: clientNow.tlsCACerts });
    }
    this.client = clientNow;
    if (current.sshCert !== this.server.sshCert) {
      this.server = current;
      this.opts.serve(current);
      this.opts.log.info('presenting host certificates from the host CA key servers use now', { phase: ca.rotation.phase });
    }
  }

  /** New certificates for this host from the CA's signing key, with new keys made here; the private keys never leave. */
  private async reissue(id: Identity, tlsCAs: string[]): Promise<Identity> {
    const ssh = generateKeyPair('ed25519');
    const tlsKey = generateTlsKey();
    const req: ReissueRequest = {
      node_name: this.opts.nodeName,
      additional_principals: parseCertificate(id.sshCert).principals,
      dns_names: [],
      public_ssh_key: b64(formatAuthorizedKey(publicKeyBlob(ssh.publicKey))),
      public_tls_key: b64(publicKeyPem(tlsKey)),
    };
    const packed = await this.opts.client.post<PackedKeys>('/v1/hosts/reissue', req);
    return {
      ...id,
      sshKey: ssh.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      sshCert: unb64(packed.cert),
      tlsKey,
      tlsCert: unb64(packed.tls_cert),
      tlsCACerts: tlsCAs,
      sshCACerts: packed.ssh_ca_certs.map(unb64),
    };
  }
}
