/** jest globalSetup: see test/helpers/testrun.ts. */
import { startRun } from './testrun';

/** The HTTP proxy variables the runtime and tsh honour (runtime/utils/httpconnect.ts): tests that want one set their own. */
const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];

export default function globalSetup(): void {
  // A machine's own proxy (one that reaches the package registries, say) must not carry the tests' loopback connections.
  for (const v of PROXY_VARS) delete process.env[v];
  startRun();
}
