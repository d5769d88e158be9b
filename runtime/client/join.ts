/**
 * `tsh join <session id>`: joins an interactive session someone is running on
 * a node. The auth server's list of active sessions (which shows a user only
 * the sessions of nodes they may see) names the node and the session's
 * login; tsh logs in to that node as that login through the proxy, like
 * `tsh ssh`, and asks to join with `TELEPORT_SESSION=<id>` before its shell.
 * The node decides again (the login must be one the user may use there).
 */
import type { ActiveSession } from '../node/shared';
import { BadParameterError } from '../utils/errors';
import { currentLogin, withCluster } from './cluster';
import { runSession, SessionOptions } from './session';
import { connectNode } from './ssh';

const SID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface JoinOptions {
  sid: string;
  proxy?: string;
  cluster?: string;
  home?: string;
  session?: Omit<SessionOptions, 'command' | 'env' | 'forcePty'>;
}

/** Joins the session and returns the exit code to exit with (the session's, when it ends while joined). */
export async function joinSession(opts: JoinOptions): Promise<number> {
  if (!SID_RE.test(opts.sid)) throw new BadParameterError(`"${opts.sid}" is not a session ID (the UUID in $TELEPORT_SESSION or the audit log's sid)`);
  const me = currentLogin({ proxy: opts.proxy, home: opts.home, cluster: opts.cluster });
  const s = await withCluster(me, (c) => c.auth.get<ActiveSession>(`/v1/namespaces/default/sessions/${opts.sid}`));
  const conn = await connectNode(me, s.server_id, { login: s.login });
  try {
    return await runSession(conn.node, { ...opts.session, forcePty: true, env: { TELEPORT_SESSION: opts.sid } });
  } finally {
    conn.close();
  }
}
