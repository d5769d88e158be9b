/**
 * The user's SSH agent as a proxy in recording mode uses it (forward.ts): the
 * agent the client forwarded on the very session channel that asked for the
 * `proxy` subsystem, reached over `auth-agent@openssh.com` channels the proxy
 * opens back to the client. It offers ssh2 one identity only, the user
 * certificate the client logged in to the proxy with, and signs only with it:
 * the other keys an agent may hold are never listed or used, and the agent is
 * used for nothing but this session's onward login.
 */
import type { Duplex } from 'node:stream';
import { BaseAgent, type IdentityCallback, type ParsedKey, type SignCallback, type SigningRequestOptions } from 'ssh2';
import { type Certificate, certificateKey } from '../sshcert';
import { SshReader, SshWriter } from '../sshcert/wire';
import { AccessDeniedError, ConnectionProblemError } from '../utils/errors';

/** draft-miller-ssh-agent message numbers. */
const AGENT_FAILURE = 5;
const AGENTC_REQUEST_IDENTITIES = 11;
const AGENT_IDENTITIES_ANSWER = 12;
const AGENTC_SIGN_REQUEST = 13;
const AGENT_SIGN_RESPONSE = 14;
const SSH_AGENT_RSA_SHA2_256 = 2;
const SSH_AGENT_RSA_SHA2_512 = 4;
/** An agent answer larger than this is refused (OpenSSH's limit). */
const MAX_AGENT_MESSAGE = 256 * 1024;
const AGENT_TIMEOUT_MS = 15_000;

/** Opens a channel to the client's agent. */
export type AgentOpener = (cb: (err: Error | undefined, channel?: Duplex) => void) => void;

/** One request and its answer on a fresh agent channel. */
function ask(open: AgentOpener, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    open((err, channel) => {
      if (err || !channel) return reject(new ConnectionProblemError(`the forwarded agent cannot be reached: ${err?.message ?? 'no channel'}`));
      let buf = Buffer.alloc(0);
      const done = (e: Error | undefined, answer?: Buffer) => {
        clearTimeout(timer);
        channel.removeAllListeners('data');
        channel.destroy();
        if (e) reject(e);
        else resolve(answer!);
      };
      const timer = setTimeout(() => done(new ConnectionProblemError('the forwarded agent did not answer')), AGENT_TIMEOUT_MS);
      channel.on('error', (e: Error) => done(new ConnectionProblemError(`the forwarded agent failed: ${e.message}`)));
      channel.on('close', () => done(new ConnectionProblemError('the forwarded agent closed the channel')));
      channel.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 4) return;
        const len = buf.readUInt32BE(0);
        if (len < 1 || len > MAX_AGENT_MESSAGE) return done(new ConnectionProblemError(`the forwarded agent sent a message of ${len} bytes`));
        if (buf.length >= 4 + len) done(undefined, buf.subarray(4, 4 + len));
      });
      channel.write(new SshWriter().uint32(request.length).raw(request).toBuffer());
    });
  });
}

export class ForwardedAgent extends BaseAgent<ParsedKey> {
  private readonly key: ParsedKey;

  /**
   * @param open opens a channel to the agent the client forwarded to the proxy
   * @param cert the user certificate the client logged in with: the only identity used
   * @param forTarget opens a channel to the client's agent for the target, when the
   *   client asked the target for agent forwarding (ssh2 calls getStream then)
   */
  constructor(
    private readonly open: AgentOpener,
    private readonly cert: Certificate,
    private readonly forTarget?: AgentOpener,
  ) {
    super();
    this.key = certificateKey(cert);
  }

  getIdentities(cb: IdentityCallback<ParsedKey>): void {
    ask(this.open, Buffer.from([AGENTC_REQUEST_IDENTITIES])).then(
      (answer) => {
        try {
          const r = new SshReader(answer, 'agent identities answer');
          const type = r.raw(1, 'message type')[0];
          if (type !== AGENT_IDENTITIES_ANSWER) throw new ConnectionProblemError(`the forwarded agent answered message ${type} to a request for identities`);
          const n = r.uint32('count');
          for (let i = 0; i < n; i++) {
            const blob = r.bytes('key blob');
            r.bytes('comment');
            if (blob.equals(this.cert.blob)) return cb(null, [this.key]);
          }
          cb(new AccessDeniedError(`the forwarded agent does not hold the certificate "${this.cert.keyId}" used to log in to the proxy`));
        } catch (err) {
          cb(err as Error);
        }
      },
      (err: Error) => cb(err),
    );
  }

  sign(pubKey: ParsedKey, data: Buffer, options: SigningRequestOptions | SignCallback, cb?: SignCallback): void {
    const done = typeof options === 'function' ? options : cb;
    const opts = typeof options === 'function' ? {} : (options ?? {});
    if (!done) return;
    if (!pubKey.getPublicSSH().equals(this.cert.blob)) return done(new AccessDeniedError('the proxy signs only with the certificate the user logged in with'));
    const flags = opts.hash === 'sha512' ? SSH_AGENT_RSA_SHA2_512 : opts.hash === 'sha256' ? SSH_AGENT_RSA_SHA2_256 : 0;
    const request = new SshWriter().raw(Buffer.from([AGENTC_SIGN_REQUEST])).string(this.cert.blob).string(data).uint32(flags).toBuffer();
    ask(this.open, request).then(
      (answer) => {
        try {
          const r = new SshReader(answer, 'agent sign response');
          const type = r.raw(1, 'message type')[0];
          if (type === AGENT_FAILURE) throw new AccessDeniedError('the forwarded agent refused to sign (is it locked, or does it ask for confirmation?)');
          if (type !== AGENT_SIGN_RESPONSE) throw new ConnectionProblemError(`the forwarded agent answered message ${type} to a sign request`);
          const sig = new SshReader(r.bytes('signature'), 'agent signature');
          sig.string('signature algorithm');
          done(null, sig.bytes('signature'));
        } catch (err) {
          done(err as Error);
        }
      },
      (err: Error) => done(err),
    );
  }

  override getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    if (!this.forTarget) return cb(new AccessDeniedError('agent forwarding to the target was not asked for'));
    this.forTarget(cb);
  }
}
