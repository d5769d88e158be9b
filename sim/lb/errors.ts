/** The one error type of the local load balancers, with a machine-readable reason. */

export type LoadBalancingErrorReason =
  /** The template uses a load-balancing feature the local deployment does not emulate. */
  | 'unsupported'
  /** The template's load-balancing resources are incomplete or contradict each other. */
  | 'invalid_template'
  /** A call names a target group or target that is not there. */
  | 'not_found'
  /** A call's arguments cannot be used (a target id haproxy cannot name, a target registered twice at different addresses). */
  | 'bad_parameter'
  /** haproxy refused a command, did not start, or stopped. */
  | 'haproxy';

export class LoadBalancingError extends Error {
  constructor(
    readonly reason: LoadBalancingErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'LoadBalancingError';
  }
}
