/**
 * A second process sharing a SqliteBackend file with the test process. Started by
 * sqlite-peer-client.ts as `node -r ./register.js sqlite-peer.ts <file>`; takes JSON-line
 * commands on stdin and answers (and streams watch events) as JSON lines on stdout.
 */

import * as readline from 'node:readline';
import { SqliteBackend } from '../../../../runtime/backend/sqlite';
import { OpType } from '../../../../runtime/backend/types';
import { TeleportError } from '../../../../runtime/utils/errors';

export type PeerCommand =
  | { id: number; op: 'put'; key: string; value: string }
  | { id: number; op: 'get'; key: string }
  | { id: number; op: 'watch'; prefix: string }
  | { id: number; op: 'race'; keys: string[]; startAt: number }
  | { id: number; op: 'close' };

export type PeerMessage =
  | { ready: true }
  | { id: number; ok: true; result?: unknown }
  | { id: number; ok: false; reason: string; message: string }
  | { event: { type: 'Put' | 'Delete'; key: string; value: string } };

const send = (msg: PeerMessage) => process.stdout.write(JSON.stringify(msg) + '\n');
const yieldToOthers = () => new Promise((resolve) => setImmediate(resolve));

async function main(file: string): Promise<void> {
  const backend = await SqliteBackend.open({ path: file, pollPeriodMs: 50 });

  async function handle(cmd: PeerCommand): Promise<unknown> {
    switch (cmd.op) {
      case 'put':
        await backend.put({ key: cmd.key, value: Buffer.from(cmd.value) });
        return undefined;
      case 'get':
        return (await backend.get(cmd.key)).value.toString();
      case 'watch': {
        const watcher = await backend.newWatcher({ prefixes: [cmd.prefix], name: 'peer' });
        await watcher.next();
        void (async () => {
          for await (const e of watcher) {
            send({ event: { type: e.type === OpType.Put ? 'Put' : 'Delete', key: e.item.key, value: e.item.value.toString() } });
          }
        })();
        return undefined;
      }
      case 'race': {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, cmd.startAt - Date.now())));
        const won: string[] = [];
        for (const key of cmd.keys) {
          try {
            await backend.create({ key, value: Buffer.from(`peer ${process.pid}`) });
            won.push(key);
          } catch (err) {
            if (!(err instanceof TeleportError && err.reason === 'already_exists')) throw err;
          }
          await yieldToOthers();
        }
        return won;
      }
      case 'close':
        await backend.close();
        setImmediate(() => process.exit(0));
        return undefined;
    }
  }

  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const cmd = JSON.parse(line) as PeerCommand;
    handle(cmd).then(
      (result) => send({ id: cmd.id, ok: true, result }),
      (err: unknown) =>
        send({
          id: cmd.id,
          ok: false,
          reason: err instanceof TeleportError ? err.reason : 'internal',
          message: err instanceof Error ? err.message : String(err),
        }),
    );
  });
  lines.on('close', () => void backend.close().then(() => process.exit(0)));
  send({ ready: true });
}

main(process.argv[2]).catch((err: unknown) => {
  process.stderr.write(`sqlite peer failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
