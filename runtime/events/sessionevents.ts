/**
 * The audit events of an SSH session, built the same way wherever the session
 * is served: on a node, or on a proxy in recording mode (proxy/forward.ts).
 */
import type { EventFields } from './filelog';

/** Who did it where: the cluster user, the login, the server and its namespace. */
export interface SessionWho {
  user: string;
  login: string;
  server_id: string;
  namespace: string;
}

/** The `scp` event of a command that runs scp (`-t` uploads, `-f` downloads), or undefined for any other command. */
export function scpEvent(command: string, who: SessionWho, remote: string): EventFields | undefined {
  const scp = /^\s*scp\s+(.*)$/.exec(command);
  if (!scp) return undefined;
  const flags = scp[1].split(/\s+/);
  const action = flags.includes('-t') ? 'upload' : flags.includes('-f') ? 'download' : 'scp';
  const target = flags.filter((f) => !f.startsWith('-')).join(' ');
  return { event: 'scp', action, path: target, command, ...who, 'addr.remote': remote, code: action === 'download' ? 'T3004I' : 'T3005I' };
}

/** The `exec` event of a command that ended with `exitCode`, or by `signal`. */
export function execEvent(command: string, exitCode: number, signal: string | undefined, who: SessionWho, remote: string): EventFields {
  const failed = exitCode !== 0 || !!signal;
  return {
    event: 'exec',
    command,
    exitCode: String(exitCode),
    exitError: signal ? `signal ${signal}` : failed ? `exit status ${exitCode}` : '',
    ...who,
    'addr.remote': remote,
    code: failed ? 'T3002E' : 'T3002I',
  };
}

/** The `subsystem` event of a subsystem request; `error` empty when it started. */
export function subsystemEvent(name: string, error: string, who: SessionWho): EventFields {
  return { event: 'subsystem', name, exitError: error, ...who, code: error ? 'T3001E' : 'T3001I' };
}

/** `session.start` of an interactive session. */
export function sessionStartEvent(f: { sid: string; who: SessionWho; remote: string; local: string; cols: number; rows: number; hostname: string; labels: Record<string, string> }): EventFields {
  return {
    event: 'session.start',
    sid: f.sid,
    ...f.who,
    'addr.remote': f.remote,
    'addr.local': f.local,
    size: `${f.cols}:${f.rows}`,
    server_hostname: f.hostname,
    server_labels: f.labels,
  };
}

/** `session.end` of an interactive session. */
export function sessionEndEvent(f: { sid: string; who: SessionWho; participants: string[]; hostname: string; serverAddr: string; started: Date }): EventFields {
  return {
    event: 'session.end',
    sid: f.sid,
    ...f.who,
    participants: f.participants,
    interactive: true,
    enhanced_recording: false,
    server_hostname: f.hostname,
    server_addr: f.serverAddr,
    session_start: f.started.toISOString(),
    session_stop: new Date().toISOString(),
  };
}
