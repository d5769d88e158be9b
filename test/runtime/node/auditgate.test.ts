/** The node's audit gate: fail closed (or continue) when an event cannot be recorded, and tell the operator once per outage. */
import * as os from 'node:os';
import * as path from 'node:path';
import { run, tempDir } from '../../helpers/proc';
import { SmallDisk } from '../../helpers/tmpfs';
import * as fs from 'node:fs';
import { EventFields } from '../../../runtime/events/filelog';
import { AuditGate, AuditUnavailableError } from '../../../runtime/node/auditgate';
import { Logger } from '../../../runtime/utils/logger';

const ENOSPC = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

/** A logger that keeps `level msg` lines. */
function captured(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log: Logger = {
    debug: (m) => lines.push(`debug ${m}`),
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    child: () => log,
  };
  return { log, lines };
}

describe('AuditGate', () => {
  it('GIVEN audit_failure refuse WHEN events cannot be written THEN sessions are refused with the reason, the outage is logged once, and the recovery once', async () => {
    // GIVEN a gate whose writes fail until `full` is cleared
    let full = true;
    const { log, lines } = captured();
    const gate = new AuditGate({ write: async (e: EventFields) => (full ? Promise.reject(ENOSPC) : e), dir: os.tmpdir(), mode: 'refuse', log });
    // WHEN two sessions try to record their start
    for (let i = 0; i < 2; i++) {
      const err = await gate.emitDurable({ event: 'session.start' }).catch((e: unknown) => e);
      // THEN each is refused with what the user is told
      expect(err).toBeInstanceOf(AuditUnavailableError);
      expect((err as Error).message).toBe('session refused: the node cannot record audit events (disk full)');
    }
    // AND WHEN the disk has room again
    full = false;
    await gate.emitDurable({ event: 'session.start' });
    await gate.emitDurable({ event: 'session.start' });
    // THEN one error line for the outage and one info line for the recovery
    expect(lines.filter((l) => !l.startsWith('debug'))).toEqual([
      'error cannot record audit events; refusing sessions until they can be recorded',
      'info audit events are recorded again',
    ]);
  });

  it('GIVEN audit_failure continue WHEN an event cannot be written THEN the session goes on and the outage is logged', async () => {
    const { log, lines } = captured();
    const gate = new AuditGate({ write: () => Promise.reject(ENOSPC), dir: os.tmpdir(), mode: 'continue', log });
    await expect(gate.emitDurable({ event: 'session.start' })).resolves.toBeUndefined();
    expect(lines).toEqual(['error cannot record audit events; sessions run unaudited (audit_failure: continue)']);
  });

  it('GIVEN a disk with less free space than an event needs WHEN a command asks THEN it is refused as disk full; with room it may run', async () => {
    const { log } = captured();
    const write = async (e: EventFields) => e;
    const tight = new AuditGate({ write, dir: os.tmpdir(), mode: 'refuse', minFreeBytes: Number.MAX_SAFE_INTEGER, log });
    await expect(tight.ready('exec')).rejects.toThrow('session refused: the node cannot record audit events (disk full)');
    const roomy = new AuditGate({ write, dir: os.tmpdir(), mode: 'refuse', minFreeBytes: 1, log });
    await expect(roomy.ready('exec')).resolves.toBeUndefined();
  });

  it('GIVEN writes failing on a disk that reports free space (read-only) WHEN a command asks THEN a test write decides: refused while it fails, allowed once it works', async () => {
    // GIVEN a gate on a small disk, remounted read-only after a failed event
    const dir = tempDir('gate-');
    const disk = await SmallDisk.mount(dir, '4m');
    try {
      const { log, lines } = captured();
      const gate = new AuditGate({ write: (e: EventFields) => fs.promises.writeFile(path.join(dir, 'event'), JSON.stringify(e)).then(() => e), dir, mode: 'refuse', log });
      expect((await run('mount', ['-o', 'remount,ro', dir])).code).toBe(0);
      await expect(gate.emitDurable({ event: 'session.start' })).rejects.toThrow(AuditUnavailableError);
      // WHEN a command asks while the disk is read-only
      // THEN it is refused though the disk has room
      await expect(gate.ready('exec')).rejects.toThrow('session refused: the node cannot record audit events (read-only file system)');
      // AND WHEN the disk is writable again THEN it may run, and the recovery is logged
      expect((await run('mount', ['-o', 'remount,rw', dir])).code).toBe(0);
      await expect(gate.ready('exec')).resolves.toBeUndefined();
      expect(lines.filter((l) => !l.startsWith('debug'))).toEqual([
        'error cannot record audit events; refusing sessions until they can be recorded',
        'info audit events are recorded again',
      ]);
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      await disk.unmount();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
