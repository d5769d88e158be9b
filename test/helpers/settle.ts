/**
 * `node --expose-gc dist/test/helpers/settle.js <cli.js> args...` runs the
 * compiled CLI as if started directly, and on SIGUSR1 runs two full garbage
 * collections and prints `settled heapUsed=<bytes> external=<bytes>` on stderr: the fuzz
 * suites' memory checks (fuzz.ts settledMemory) measure a settled heap, not
 * whatever garbage happens to be waiting. Test-only: the runtime has no such hook.
 */
const [node, , cli, ...args] = process.argv;
const collect = (globalThis as { gc?: () => void }).gc;
if (!cli || !collect) {
  process.stderr.write('usage: node --expose-gc settle.js <cli.js> [args...]\n');
  process.exit(2);
}
// USR1 (the daemon's diagnostic report, which only logs) and not USR2, which hands the sockets to a new process.
process.on('SIGUSR1', () => {
  collect();
  collect();
  const m = process.memoryUsage();
  process.stderr.write(`settled heapUsed=${m.heapUsed} external=${m.external}\n`);
});
process.argv = [node, cli, ...args];
require(cli);

export {};
