/**
 * V8's garbage collector tuned for a process that moves bulk data: SSH
 * channels on the node and the proxy allocate an ArrayBuffer for every socket
 * read and for every packet that spans two reads. V8 counts those buffers as
 * external memory, and each 64 MB that the count grows past its level at the
 * last full collection starts a full mark-compact ("external memory
 * pressure"). By default the buffers a scavenge frees leave the count only
 * when a background thread has swept them; on a busy machine that thread
 * lags, the count climbs, and a transfer sets off a mark-compact every 20 to
 * 30 MB: 23 to 81 of them per GiB through the node or the proxy, up to half
 * of their CPU (bench/README.md, "Data path"). Two flags: array buffers are
 * swept on the main thread right after the scavenge that frees them (a list
 * walk: cheap), and the young generation grows 8-fold at once instead of
 * doubling. They change when memory is collected, never what a program
 * computes; an idle process keeps a small young generation.
 *
 * They take effect only when set while the process starts (runtime/cli/gcflags.ts
 * imports this first). An operator who sized the young generation themselves
 * (`--max-semi-space-size` and friends in NODE_OPTIONS or on the command line)
 * is left alone.
 */
import * as v8 from 'node:v8';

/** V8's `--semi-space-growth-factor` for teleport processes (V8's default is 2). */
export const SEMI_SPACE_GROWTH_FACTOR = 8;

/** The V8 flags this module sets, as `v8.setFlagsFromString` takes them. */
export const GC_FLAG = `--semi-space-growth-factor=${SEMI_SPACE_GROWTH_FACTOR} --no-concurrent-array-buffer-sweeping`;

/** Whether the operator set young-generation flags of their own (then nothing is changed). */
export function ownYoungGenerationFlags(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((a) => /^--(max|min)[-_]semi[-_]space[-_]size|^--semi[-_]space[-_]growth[-_]factor/.test(a));
}

/** Applies GC_FLAG to this process unless the operator sized the young generation; returns whether it did. */
export function tuneGarbageCollection(execArgv: readonly string[] = process.execArgv, nodeOptions: string | undefined = process.env.NODE_OPTIONS): boolean {
  if (ownYoungGenerationFlags(execArgv, nodeOptions)) return false;
  v8.setFlagsFromString(GC_FLAG);
  return true;
}
