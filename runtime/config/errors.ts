/**
 * ConfigError: every problem found in a teleport.yaml (and in the flags merged
 * over it), one per line, each as `<file>:<line>:<col>: <what is wrong>`.
 */

import { BadParameterError } from '../utils/errors';

export interface ConfigIssue {
  /** The config file, as the user named it; absent for problems in flags. */
  readonly file?: string;
  /** 1-based line and column of the offending key or value. */
  readonly line?: number;
  readonly col?: number;
  readonly message: string;
}

export function formatIssue(issue: ConfigIssue): string {
  if (issue.file === undefined) return issue.message;
  if (issue.line === undefined) return `${issue.file}: ${issue.message}`;
  return `${issue.file}:${issue.line}:${issue.col ?? 1}: ${issue.message}`;
}

export class ConfigError extends BadParameterError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.issues = issues;
  }
}
