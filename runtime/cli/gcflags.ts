/**
 * Imported first by the `teleport` CLI, before any other module loads: the
 * garbage collector settings of service/gctuning.ts, which were measured to
 * help only when in place while the process starts.
 */
import { tuneGarbageCollection } from '../service/gctuning';

tuneGarbageCollection();
