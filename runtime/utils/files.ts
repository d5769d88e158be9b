/** Small file-system helpers shared by modules that keep state on disk. */
import * as fs from 'node:fs';

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.access(p);
    return true;
  } catch {
    return false;
  }
}
