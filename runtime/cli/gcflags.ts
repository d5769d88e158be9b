/**
 * Imported first by the `teleport` CLI, before any other module loads: the
 * young generation sizing of service/gctuning.ts, which helps only when it is
 * in place while the process starts (set later, it was measured to change
 * nothing).
 */
import { tuneGarbageCollection } from '../service/gctuning';

tuneGarbageCollection();
