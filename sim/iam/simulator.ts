/**
 * @cloud-copilot/iam-simulate, answered synchronously.
 *
 * The audit must decide a call before the endpoint that received it answers, and its contract
 * (`CallAuditor.check` in sim/types.ts) is synchronous; the library's `runSimulation` is async
 * (it reads its action, resource-type and condition-key data from files as it goes). So the
 * library runs in a worker thread, and `simulate` posts one simulation to it and blocks on a
 * shared flag (`Atomics.wait`) until the worker has posted the answer, which is then read from
 * the port without the event loop (`receiveMessageOnPort`). A call costs about a millisecond once
 * the library has loaded the services' data.
 *
 * The worker runs the library's own validation (policy syntax, action names, resource types for
 * the action, context keys) and returns, per evaluated resource, what decided: the library's
 * `getDenialReasons` and `getGrantReasons`, and the explains of the identity statements (which
 * action and resource entries of each statement matched, which conditions failed), as plain data.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { EvaluationResult, RequestDenial, RequestGrant, Simulation, StatementExplain } from '@cloud-copilot/iam-simulate';

/** One identity statement as the library evaluated it for one request. */
export interface StatementOutcome {
  /** The identity policy's name as given to the library. */
  readonly policyId: string;
  /** 1-based index of the statement in its policy. */
  readonly index: number;
  readonly sid?: string;
  readonly explain: StatementExplain;
}

/** What decided one evaluated resource (one, or for a wildcard resource one per matching pattern). */
export interface AnalysisOutcome {
  readonly denials: RequestDenial[];
  readonly grants: RequestGrant[];
  /** Identity statements, matched or not (Allow and Deny). */
  readonly identityStatements: StatementOutcome[];
}

/** The library's answer: a result with its analyses, or why it could not evaluate the request. */
export type SimulationOutcome =
  | { readonly result: EvaluationResult; readonly analyses: AnalysisOutcome[] }
  | { readonly error: string };

/** The simulator did not answer (its worker died or hung). */
export class SimulatorError extends Error {
  constructor(readonly reason: string) {
    super(`iam-simulate: ${reason}`);
    this.name = 'SimulatorError';
  }
}

/** Plain JavaScript run in the worker: it loads the library from the path the parent resolved. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { port, flag, library } = workerData;
let lib, loadError;
try { lib = require(library); } catch (err) { loadError = err; }
const statement = (s) => ({ policyId: s.policyId, index: s.statement.index(), sid: s.statement.sid(), explain: s.explain });
const outcome = (analysis) => ({
  denials: lib.getDenialReasons(analysis),
  grants: lib.getGrantReasons(analysis),
  identityStatements: analysis.identityAnalysis
    ? [...analysis.identityAnalysis.allowStatements, ...analysis.identityAnalysis.denyStatements, ...analysis.identityAnalysis.unmatchedStatements].map(statement)
    : [],
});
async function answer(simulation) {
  if (loadError) return { error: 'could not load the library: ' + loadError.message };
  const r = await lib.runSimulation(simulation, {});
  if (r.resultType === 'error') return { error: JSON.stringify(r.errors) };
  const analyses = r.resultType === 'single' ? [r.result.analysis] : r.results.map((x) => x.analysis);
  return { result: r.overallResult, analyses: analyses.map(outcome) };
}
port.on('message', async (simulation) => {
  let reply;
  try { reply = JSON.parse(JSON.stringify(await answer(simulation))); } catch (err) { reply = { error: String(err && err.stack || err) }; }
  port.postMessage(reply);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

export class Simulator {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  /** Why the worker can answer no more (it failed or exited). */
  private failure?: string;

  /** `timeoutMs`: how long one answer may take (the first loads the library and its data). */
  constructor(private readonly timeoutMs = 30_000) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { port: port2, flag: this.flag, library: require.resolve('@cloud-copilot/iam-simulate') },
      transferList: [port2],
    });
    this.worker.on('error', (err) => (this.failure = `the worker failed: ${err.message}`));
    this.worker.on('exit', (code) => (this.failure ??= `the worker exited (status ${code})`));
    this.worker.unref();
  }

  /** Runs one simulation, blocking this thread until the library has answered. */
  simulate(simulation: Simulation): SimulationOutcome {
    if (this.failure) throw new SimulatorError(this.failure);
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(simulation);
    if (Atomics.wait(this.flag, 0, 0, this.timeoutMs) === 'timed-out') {
      throw new SimulatorError(`no answer within ${this.timeoutMs} ms for ${simulation.request.action} on ${simulation.request.resource.resource}`);
    }
    const reply = receiveMessageOnPort(this.port);
    if (!reply) throw new SimulatorError('the worker signalled an answer but posted none');
    return reply.message as SimulationOutcome;
  }

  /** Stops the worker. */
  async close(): Promise<void> {
    this.port.close();
    await this.worker.terminate();
  }
}
