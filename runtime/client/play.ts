/**
 * `tsh play <session-id>`: fetches a recorded session from the auth server
 * (through the proxy, as the user; the auth server checks the user may read
 * it) and writes what the terminal showed. To a terminal it replays with the
 * recorded timing (`--speed` to go faster); otherwise it writes it at once.
 */
import { replay } from '../recordings/playback';
import { fetchRecording } from '../recordings/playback';
import { CurrentLogin, withCluster } from './cluster';

export interface PlayOptions {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  /** @default 1 */
  speed?: number;
  /** @default out.isTTY */
  realtime?: boolean;
}

export async function play(login: CurrentLogin, sid: string, opts: PlayOptions): Promise<number> {
  const rec = await withCluster(login, (c) => fetchRecording(c.auth, sid));
  return replay(rec.events, rec.bytes, (b) => opts.out.write(b), { speed: opts.speed ?? 1, realtime: opts.realtime ?? !!opts.out.isTTY });
}
