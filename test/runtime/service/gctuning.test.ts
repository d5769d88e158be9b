/** The young-generation sizing teleport applies at start (service/gctuning.ts), and the operator's own flags winning over it. */
import { GC_FLAG, ownYoungGenerationFlags, tuneGarbageCollection } from '../../../runtime/service/gctuning';

describe('tuneGarbageCollection', () => {
  let setFlags: jest.SpyInstance;
  beforeEach(() => {
    // the module object itself (an import's namespace copy cannot be spied on)
    setFlags = jest.spyOn(require('node:v8') as typeof import('node:v8'), 'setFlagsFromString').mockImplementation(() => undefined);
  });
  afterEach(() => setFlags.mockRestore());

  it('GIVEN no young-generation flags of the operator WHEN teleport starts THEN the young-generation growth and main-thread array buffer sweeping are set', () => {
    // GIVEN flags about other things
    const applied = tuneGarbageCollection(['--enable-source-maps'], '--max-old-space-size=512');
    // THEN the flag is applied
    expect(applied).toBe(true);
    expect(setFlags).toHaveBeenCalledWith(GC_FLAG);
    expect(GC_FLAG).toBe('--semi-space-growth-factor=8 --no-concurrent-array-buffer-sweeping');
  });

  it.each([
    [[], '--max-semi-space-size=64'],
    [[], '--require x.js --min_semi_space_size=8'],
    [['--semi-space-growth-factor=4'], undefined],
    [['--max-semi-space-size', '32'], ''],
  ])('GIVEN the operator sized the young generation (%j, NODE_OPTIONS %j) THEN nothing is changed', (execArgv, nodeOptions) => {
    expect(ownYoungGenerationFlags(execArgv, nodeOptions)).toBe(true);
    expect(tuneGarbageCollection(execArgv, nodeOptions)).toBe(false);
    expect(setFlags).not.toHaveBeenCalled();
  });
});
