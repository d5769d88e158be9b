/** Aligned text tables as tctl and tsh print them. */

/** An aligned text table with a header and a dashed rule, like the seeds' examples. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join(' ')
      .trimEnd();
  return [line(headers), line(headers.map((h) => '-'.repeat(h.length))), ...rows.map(line)].join('\n') + '\n';
}

/** A two-column table without a header (`tctl status`). */
export function keyValueTable(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}
