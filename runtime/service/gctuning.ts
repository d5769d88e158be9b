/**
 * V8's garbage collector tuned for a process that moves bulk data: SSH
 * channels on the node and the proxy allocate an ArrayBuffer for every socket
 * read and for many packets. With V8's default young generation, which grows
 * by a factor of 2 only after scavenges that keep much, those buffers outlive
 * the small nursery while they wait in a write queue, reach the old
 * generation, and each 30 MB or so of them sets off a full mark-compact for
 * "external memory pressure": 23 to 53 of them per GiB sent through a node
 * (bench/README.md, "Data path"). Letting the young generation grow 8-fold at
 * once lets the short-lived buffers die in cheap scavenges. It changes when
 * memory is collected, never what a program computes; idle processes keep a
 * small young generation (it grows only under allocation).
 *
 * An operator who sized the young generation themselves (`--max-semi-space-size`
 * and friends in NODE_OPTIONS or on the command line) is left alone.
 */
import * as v8 from 'node:v8';

/** V8's `--semi-space-growth-factor` for teleport processes (V8's default is 2). */
export const SEMI_SPACE_GROWTH_FACTOR = 8;

/** The V8 flag this module sets, as `v8.setFlagsFromString` takes it. */
export const GC_FLAG = `--semi-space-growth-factor=${SEMI_SPACE_GROWTH_FACTOR}`;

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
