/*
 * Lets a plain `node` child process load the project's TypeScript sources: compiles each .ts
 * file on require with the project's own TypeScript (types are not checked; tsc does that).
 * Used by sqlite.test.ts to run a real second process on the same SQLite file.
 */
const fs = require('node:fs');
const ts = require('typescript');

require.extensions['.ts'] = (module, filename) => {
  const source = fs.readFileSync(filename, 'utf8');
  const { outputText } = ts.transpileModule(source, {
    fileName: filename,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      isolatedModules: true,
    },
  });
  module._compile(outputText, filename);
};
