/**
 * What a root cluster's proxy and a leaf cluster's proxy say on a channel of
 * the leaf's reverse tunnel (trusted clusters, runtime/auth/trust.ts) before
 * it becomes a byte pipe: one length-prefixed JSON frame each way (4 bytes
 * big-endian length, then UTF-8 JSON).
 *
 * Root → leaf, one of:
 * - `node`: reach a node of the leaf for a root user: the target as the
 *   `proxy` subsystem named it, the user's certificate (the root proxy
 *   checked its key), the login and the client's address. The leaf proxy
 *   decides access itself, from the leaf's roles, and so does the node.
 * - `auth`: a pipe to the leaf's auth server (`proxy:@leaf`), inside which
 *   tsh speaks mutual TLS with its root certificate.
 * - `discovery`: how many proxies the root has, so the leaf keeps a tunnel
 *   to each (no answer).
 * Leaf → root: `{ok: true}` then the pipe, or `{error}` and the channel ends.
 */
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { AccessDeniedError, BadParameterError, ConnectionProblemError } from '../utils/errors';
import { within } from '../utils/httpconnect';

/** The largest frame either side accepts. */
export const MAX_FRAME_BYTES = 16 * 1024;
export const FRAME_TIMEOUT_MS = 15_000;

/** What the leaf's proxy forwards for a cluster tunnel: `forwarded-tcpip` to this address. */
export const CLUSTER_TUNNEL_BIND = { addr: 'teleport-cluster', port: 3024 } as const;

export const clusterRequestSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('node'),
      host: z.string().min(1).max(255),
      port: z.number().int().min(0).max(65535),
      namespace: z.string().min(1).max(255),
      /** The user certificate blob, base64. */
      cert: z.string().min(1).max(MAX_FRAME_BYTES),
      login: z.string().min(1).max(255),
      client: z.object({ host: z.string().max(64), port: z.number().int().min(0).max(65535) }).strict(),
    })
    .strict(),
  z.object({ type: z.literal('auth') }).strict(),
  z.object({ type: z.literal('discovery'), proxies: z.number().int().min(1).max(1000) }).strict(),
]);
export type ClusterRequest = z.infer<typeof clusterRequestSchema>;
/** A request that reaches the leaf's proxy service: to a node, or to its auth server. */
export type ClusterDial = Exclude<ClusterRequest, { type: 'discovery' }>;

export const clusterAnswerSchema = z.union([z.object({ ok: z.literal(true) }).strict(), z.object({ error: z.string().max(4096) }).strict()]);
export type ClusterAnswer = z.infer<typeof clusterAnswerSchema>;

export function writeFrame(stream: Duplex, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  stream.write(Buffer.concat([len, body]));
}

/** Reads one frame; `rest` holds the bytes that came after it (the pipe's first bytes). */
export function readFrame<T>(stream: Duplex, schema: z.ZodType<T>, what: string, timeoutMs = FRAME_TIMEOUT_MS): Promise<{ value: T; rest: Buffer }> {
  let onData: (d: Buffer) => void = () => undefined;
  let onEnd: () => void = () => undefined;
  const read = new Promise<{ value: T; rest: Buffer }>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) return reject(new BadParameterError(`${what}: a frame of ${len} bytes is larger than ${MAX_FRAME_BYTES}`));
      if (buf.length < 4 + len) return;
      stream.pause();
      let json: unknown;
      try {
        json = JSON.parse(buf.subarray(4, 4 + len).toString());
      } catch {
        return reject(new BadParameterError(`${what}: the frame is not JSON`));
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) return reject(new BadParameterError(`${what}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`));
      resolve({ value: parsed.data, rest: buf.subarray(4 + len) });
    };
    onEnd = () => reject(new ConnectionProblemError(`${what}: the channel closed before its frame`));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
  let timedOut = false;
  return within(read, timeoutMs, () => (timedOut = true))
    .catch((err: Error) => {
      throw timedOut ? new ConnectionProblemError(`${what}: no frame within ${timeoutMs / 1000}s`) : err;
    })
    .finally(() => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
    });
}

/**
 * The root's side of a channel to a leaf's proxy: sends `req` and reads the answer. Resolves with the
 * bytes that came after an `ok` (the pipe's first bytes); a refusal is an AccessDeniedError when it
 * says "access denied", else a ConnectionProblemError. On any failure the stream is destroyed.
 */
export async function requestOnChannel(stream: Duplex, req: ClusterDial, cluster: string, timeoutMs: number): Promise<Buffer> {
  writeFrame(stream, req);
  let answer: { value: ClusterAnswer; rest: Buffer };
  try {
    answer = await readFrame(stream, clusterAnswerSchema, `the proxy of cluster ${cluster}`, timeoutMs);
  } catch (err) {
    stream.destroy();
    throw err;
  }
  if ('error' in answer.value) {
    stream.destroy();
    const reason = answer.value.error;
    throw reason.startsWith('access denied') ? new AccessDeniedError(reason) : new ConnectionProblemError(`cluster ${cluster}: ${reason}`);
  }
  return answer.rest;
}

/** Pipes two streams both ways; `onClose` once both are done (or either failed). */
export function pipeBoth(a: Duplex, b: Duplex, head: Buffer, onClose: (err?: Error) => void): void {
  let done = false;
  const finish = (err?: Error) => {
    if (done) return;
    done = true;
    a.destroy();
    b.destroy();
    onClose(err);
  };
  if (head.length) a.write(head);
  a.on('error', finish);
  b.on('error', finish);
  a.on('close', () => finish());
  b.on('close', () => finish());
  b.pipe(a);
  a.pipe(b);
  a.resume();
  b.resume();
}
