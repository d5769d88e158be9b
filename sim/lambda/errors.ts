/** Why a resource of the template cannot run locally: a property or form this simulation does not implement, or a missing part. */
export class ResourceError extends Error {
  constructor(
    readonly logicalId: string,
    readonly reason: string,
  ) {
    super(`${logicalId}: ${reason}`);
    this.name = 'ResourceError';
  }
}
