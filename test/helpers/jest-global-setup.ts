/** jest globalSetup: see test/helpers/testrun.ts. */
import { startRun } from './testrun';

export default function globalSetup(): void {
  startRun();
}
