/**
 * The auth API for what nodes ship and admins replay: batches of audit
 * events from a node's spool (checked and stamped by member-audit.ts,
 * de-duplicated by the sender's host ID and `uid`), session recordings
 * uploaded in raw binary parts and completed with a part list, and playback
 * of a recording's events and bytes (formats.md §6.5).
 *
 * The first host to send a part of a recording (or complete it) becomes its
 * uploader: any other host's parts or completion for that session are refused
 * and audited, so a node cannot replace or pre-empt the recording another
 * node is uploading. (A finished recording is never replaced: the store
 * refuses parts for it.)
 */
import { z } from 'zod';
import { Keys } from '../contract/keys';
import { EventFields } from '../events/filelog';
import { MAX_CHUNK_BYTES, MAX_EVENTS_PAGE, MAX_PART_BYTES, MAX_PARTS, parseCount, SESSION_UPLOAD_EI, checkNamespace, checkPartNumber, checkSessionId } from '../recordings/limits';
import { RecordingStore } from '../recordings/store';
import { AccessDeniedError, BadParameterError, isReason, NotFoundError } from '../utils/errors';
import { Caller, route, Route } from './http';
import { rulesAllow } from './access/decision';
import { acceptMemberEvent, auditRefusals, memberHostId } from './member-audit';
import { AuthServer } from './server';

/** At most this many events in one batch. */
export const MAX_EVENT_BATCH = 1000;
/** How long the auth service remembers a delivered event's `uid` to drop a re-sent copy. */
const SEEN_UID_TTL_MS = 24 * 3600_000;
/** How long a host stays the uploader of a recording it started uploading. */
const UPLOADER_TTL_MS = 7 * 24 * 3600_000;
const UID_RE = /^[0-9A-Za-z-]{8,64}$/;

const eventBatchBody = z
  .object({
    events: z.array(z.object({ event: z.string().min(1).max(256) }).passthrough()).max(MAX_EVENT_BATCH),
  })
  .strict();

const completeBody = z
  .object({
    parts: z
      .array(
        z
          .object({
            part: z.number().int().min(1).max(MAX_PARTS),
            file: z.enum(['log', 'bytes']),
            size: z.number().int().min(0).max(MAX_PART_BYTES),
            sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a hex SHA-256'),
          })
          .strict(),
      )
      .max(MAX_PARTS),
  })
  .strict();

/** Runs the handlers that write the audit log one at a time, so batches keep their order and a uid is checked once. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Reading recordings for playback: admins and cluster members read any; a
 * user reads the sessions they ran, or any when a role grants `read` on
 * `session`. A recording the user may not read is reported as missing.
 * Without a recording store every read answers that this auth server keeps none.
 */
export class RecordingReader {
  constructor(
    private readonly auth: AuthServer,
    private readonly recordings?: RecordingStore,
  ) {}

  store(): RecordingStore {
    if (!this.recordings) throw new NotFoundError('this auth server keeps no session recordings');
    return this.recordings;
  }

  /** Throws NotFoundError unless `user` (undefined: a member or an admin) may read the recording. */
  async check(user: string | undefined, ns: string, sid: string): Promise<void> {
    if (user === undefined) return;
    const roles = await this.auth.roles.forUser(await this.auth.users.get(user));
    if (rulesAllow(roles, 'session', 'read')) return;
    const [first] = await this.store().events(sid, { namespace: ns, limit: 1, print: false });
    if (first?.user !== user) throw new NotFoundError(`no recording of session ${sid} in namespace ${ns}`);
  }

  async events(user: string | undefined, ns: string, sid: string, q: { after?: string | null; limit?: string | null; print?: string | null }): Promise<EventFields[]> {
    await this.check(user, ns, sid);
    if (q.print != null && q.print !== 'true' && q.print !== 'false') throw new BadParameterError(`print must be true or false, got ${JSON.stringify(q.print)}`);
    return this.store().events(sid, {
      namespace: ns,
      after: parseCount(q.after ?? null, 'after', 0),
      limit: parseCount(q.limit ?? null, 'limit', MAX_EVENTS_PAGE, MAX_EVENTS_PAGE) || MAX_EVENTS_PAGE,
      print: q.print !== 'false',
    });
  }

  async stream(user: string | undefined, ns: string, sid: string, q: { offset?: string | null; bytes?: string | null }): Promise<Buffer> {
    await this.check(user, ns, sid);
    return this.store().stream(sid, parseCount(q.offset ?? null, 'offset', 0), parseCount(q.bytes ?? null, 'bytes', MAX_CHUNK_BYTES, MAX_CHUNK_BYTES), ns);
  }
}

/**
 * The routes. Without a recording store the recording routes answer that
 * recordings are not kept by this auth server.
 */
export function sessionRoutes(auth: AuthServer, reader: RecordingReader): Route[] {
  const ingest = new Serial();
  const store = () => reader.store();
  const ids = (params: Record<string, string>) => ({ ns: checkNamespace(params.ns), sid: checkSessionId(params.sid) });

  /** The user a playback request is checked for: undefined for members and admins. */
  const reading = (caller: Caller) => (caller.kind === 'user' ? caller.identity.username : undefined);
  const base = '/v1/namespaces/:ns/sessions/:sid';

  /**
   * Emits the event unless `host` delivered its uid before; true when emitted. The audit logs store
   * an event (uid and server_id) once themselves, so a retry whose first try was written but not
   * remembered here (the backend failed) is still stored once; this record spares the write and
   * counts the duplicates.
   */
  const emitOnce = async (host: string, e: EventFields): Promise<boolean> => {
    const uid = typeof e.uid === 'string' && UID_RE.test(e.uid) ? e.uid : undefined;
    const seenKey = uid ? Keys.seenEvent(host, uid) : undefined;
    if (seenKey) {
      try {
        await auth.backend.get(seenKey);
        return false;
      } catch (err) {
        if (!isReason(err, 'not_found')) throw err;
      }
    }
    await auth.emit(e);
    if (seenKey) await auth.backend.put({ key: seenKey, value: Buffer.from('1'), expires: new Date(Date.now() + SEEN_UID_TTL_MS) });
    return true;
  };

  /**
   * Makes the caller the uploader of the recording unless another host is;
   * refuses (and audits) anyone else. Returns the caller's host ID.
   */
  const claimUpload = async (req: { caller: Caller; remoteAddr: string }, ns: string, sid: string): Promise<string> =>
    auditRefusals(auth, req, { attempted_event: 'session.upload', sid, namespace: ns }, async () => {
      const host = memberHostId(auth, req.caller);
      const claim = Keys.recordingUploader(ns, sid);
      // Read first: every part after the first finds the claim (one read, no refused conditional write).
      for (;;) {
        const owner = await auth.backend.get(claim).then(
          (item) => item.value.toString(),
          (err) => {
            if (!isReason(err, 'not_found')) throw err;
            return undefined;
          },
        );
        if (owner !== undefined) {
          if (owner !== host) throw new AccessDeniedError(`host ${host} may not upload the recording of session ${sid}: host ${owner} is uploading it`);
          return host;
        }
        try {
          await auth.backend.create({ key: claim, value: Buffer.from(host), expires: new Date(Date.now() + UPLOADER_TTL_MS) });
          return host;
        } catch (err) {
          if (!isReason(err, 'already_exists')) throw err; // another part claimed it first: read whose it is
        }
      }
    });

  return [
    route({
      method: 'POST',
      path: '/v1/events/batch',
      allow: ['Node', 'Proxy'],
      body: eventBatchBody,
      handler: async ({ body, caller, remoteAddr }) => {
        const host = memberHostId(auth, caller);
        // The whole batch is checked first: a refused event leaves the rest of it unwritten too.
        const events: EventFields[] = [];
        for (const e of body.events as EventFields[]) events.push(await acceptMemberEvent(auth, { caller, remoteAddr }, e));
        return ingest.run(async () => {
          let accepted = 0;
          for (const e of events) if (await emitOnce(host, e)) accepted++;
          return { accepted, duplicates: events.length - accepted };
        });
      },
    }),
    route<Buffer>({
      method: 'PUT',
      path: `${base}/recording/parts/:part`,
      allow: ['Node', 'Proxy'],
      rawBodyLimit: MAX_PART_BYTES,
      handler: async ({ params, body, caller, remoteAddr }) => {
        const { ns, sid } = ids(params);
        const part = checkPartNumber(parseCount(params.part, 'part number', 0));
        await claimUpload({ caller, remoteAddr }, ns, sid);
        await store().putPart(sid, part, body, ns);
        return {};
      },
    }),
    route({
      method: 'POST',
      path: `${base}/recording/complete`,
      allow: ['Node', 'Proxy'],
      body: completeBody,
      handler: async ({ params, body, caller, remoteAddr }) => {
        const { ns, sid } = ids(params);
        const host = await claimUpload({ caller, remoteAddr }, ns, sid);
        const res = await store().complete(sid, body.parts, ns);
        if (res.created) await auth.emit({ event: 'session.upload', sid, namespace: ns, url: res.url, ei: SESSION_UPLOAD_EI, server_id: host });
        return res;
      },
    }),
    route({
      method: 'GET',
      path: `${base}/events`,
      allow: ['user'],
      handler: async ({ params, query, caller }) => {
        const { ns, sid } = ids(params);
        return reader.events(reading(caller), ns, sid, { after: query.get('after'), limit: query.get('limit'), print: query.get('print') });
      },
    }),
    route({
      method: 'GET',
      path: `${base}/stream`,
      allow: ['user'],
      handler: async ({ params, query, caller }) => {
        const { ns, sid } = ids(params);
        return reader.stream(reading(caller), ns, sid, { offset: query.get('offset'), bytes: query.get('bytes') });
      },
    }),
  ];
}
