/** jest globalTeardown: fails the run, naming them, when the tests left processes, OS accounts or temp files (test/helpers/testrun.ts). */
import { currentRun, endRun } from './testrun';

export default async function globalTeardown(): Promise<void> {
  const left = await endRun(currentRun());
  if (left.length > 0) throw new Error(`the tests left these behind (now removed):\n  ${left.join('\n  ')}`);
}
