// Whether dist/ is the build of the sources as they are now. After a successful `tsc`, scripts/build.js
// writes dist/.build-stamp.json: one SHA-256 over the compiler's inputs (every file under the folders
// tsconfig.json includes, tsconfig.json itself and package-lock.json, which pins the compiler and the
// types), taken *before* the build started, so an edit made during a build still counts as a change.
// Content, not modification times: a checkout or a copy that keeps sizes and times cannot fool it.
// Plain JavaScript on purpose: it runs before dist/ exists.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const STAMP = path.join(ROOT, 'dist', '.build-stamp.json');
const STAMP_VERSION = 1;

/** The top folders of tsconfig.json's `include` patterns (`runtime/**\/*.ts` → `runtime`). */
function includedRoots(root) {
  const tsconfig = JSON.parse(fs.readFileSync(path.join(root, 'tsconfig.json'), 'utf8'));
  const include = tsconfig.include;
  if (!Array.isArray(include) || include.length === 0) throw new Error('tsconfig.json has no "include" list');
  return [...new Set(include.map((p) => String(p).split('/')[0]))].sort();
}

/** Every file under `dir`, relative to `root`, sorted; symbolic links are followed as the compiler does. */
function filesUnder(root, dir, out) {
  let entries;
  try {
    entries = fs.readdirSync(path.join(root, dir), { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') return out;
    throw err;
  }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name === 'node_modules') continue;
    const rel = path.join(dir, e.name);
    const st = e.isSymbolicLink() ? fs.statSync(path.join(root, rel)) : e;
    if (st.isDirectory()) filesUnder(root, rel, out);
    else if (st.isFile()) out.push(rel);
  }
  return out;
}

/** The SHA-256 (hex) over the names and contents of the compiler's inputs. */
function sourceHash(root = ROOT) {
  const files = ['tsconfig.json', 'package-lock.json'];
  for (const dir of includedRoots(root)) filesUnder(root, dir, files);
  const h = crypto.createHash('sha256');
  for (const rel of files) {
    const data = fs.readFileSync(path.join(root, rel));
    h.update(`${rel}\0${data.length}\0`);
    h.update(data);
  }
  return h.digest('hex');
}

/** The hash recorded by the last successful build, or undefined (no build, a failed one, an unreadable stamp). */
function stampedHash(stamp = STAMP) {
  try {
    const s = JSON.parse(fs.readFileSync(stamp, 'utf8'));
    return s && s.version === STAMP_VERSION && typeof s.sources === 'string' ? s.sources : undefined;
  } catch {
    return undefined;
  }
}

/** Records `hash` as what dist/ was built from (written whole, then renamed over the old stamp). */
function writeStamp(hash, stamp = STAMP) {
  fs.mkdirSync(path.dirname(stamp), { recursive: true });
  const tmp = `${stamp}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ version: STAMP_VERSION, sources: hash, built: new Date().toISOString() }) + '\n');
  fs.renameSync(tmp, stamp);
}

/** Forgets the last build (before a new one starts, so a build that fails leaves dist/ marked stale). */
function clearStamp(stamp = STAMP) {
  fs.rmSync(stamp, { force: true });
}

/** Whether dist/ holds the build of the sources as they are now. */
function upToDate(root = ROOT) {
  const stamp = path.join(root, 'dist', '.build-stamp.json');
  const recorded = stampedHash(stamp);
  return recorded !== undefined && recorded === sourceHash(root);
}

module.exports = { ROOT, STAMP, sourceHash, stampedHash, writeStamp, clearStamp, upToDate };
