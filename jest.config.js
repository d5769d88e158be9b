/**
 * Jest: TypeScript through ts-jest (type checking is done once by `tsc` in `npm test`). The global
 * setup and teardown give the run its own TMPDIR and fail it when tests leave processes, OS accounts
 * or temp files behind (test/helpers/testrun.ts).
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { diagnostics: false }],
  },
  globalSetup: '<rootDir>/test/helpers/jest-global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/jest-global-teardown.ts',
  testTimeout: 60000,
  maxWorkers: 2,
};
