/**
 * Accessibility checks with axe-core (a pinned devDependency) in a real page.
 *
 * The web UI's pages run under a strict CSP (`script-src 'self'` plus a nonce),
 * which a `<script>` tag added by the test would break. axe's source is instead
 * evaluated through the DevTools protocol (`page.evaluate`), which CSP does not
 * govern, so the page is checked exactly as the proxy serves it: no
 * `bypassCSP`, no header stripped.
 */
import * as fs from 'node:fs';
import type { Page } from 'playwright-core';

/** The rules the web UI must pass: WCAG 2.0 and 2.1 at levels A and AA, and axe's best practices (landmarks, headings). */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'];
/** The impacts that fail a check (axe's scale: minor, moderate, serious, critical). */
export const FAILING_IMPACTS = ['moderate', 'serious', 'critical'];

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  /** One CSS selector per offending element. */
  targets: string[];
}

let axeSource: string | undefined;

/** Runs axe on the page as it is now and returns its violations of AXE_TAGS' rules, of every impact. */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate<boolean>('typeof window.axe === "object"'))) await page.evaluate(axeSource);
  const options = JSON.stringify({ runOnly: { type: 'tag', values: AXE_TAGS }, resultTypes: ['violations'] });
  return page.evaluate<AxeViolation[]>(`axe.run(document, ${options}).then((r) => r.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((n) => n.target.map((t) => (Array.isArray(t) ? t.join(' ') : t)).join(' >> ')),
  })))`);
}

/** The violations that fail a check: impact moderate or worse. */
export const failing = (violations: AxeViolation[]) => violations.filter((v) => v.impact !== null && FAILING_IMPACTS.includes(v.impact));

/** One line per violation: rule, impact, what it asks, and the selectors of the elements. */
export const formatViolations = (page: string, violations: AxeViolation[]) =>
  violations.map((v) => `${page}: ${v.id} (${v.impact}): ${v.help}: ${v.targets.join(', ')}`).join('\n');
