/** Words for a POSIX shell (`sh -c`), for the commands the tools print or generate. */

const SAFE = /^[A-Za-z0-9_./:=@,+%-]+$/;

/** A word as a POSIX shell reads it back unchanged. */
export function shellQuote(word: string): string {
  if (SAFE.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
