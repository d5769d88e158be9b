/**
 * Modules loaded on first use. A command-line tool builds its whole command tree at start, but each
 * command needs only part of the code behind it: loading X.509, the zod schemas, ssh2 or the auth client
 * only when a command touches them keeps `tsh version` or `tctl --help` from paying for all of them
 * (see "Start-up" in bench/README.md). Written where the static import would be:
 *
 *   const config = lazyModule(() => require('../config') as typeof import('../config'));
 *   ...
 *   config.parseDuration(o.ttl); // loads ../config here, once
 *
 * The module is the same object a static import gives, so its values, classes and `instanceof` behave
 * the same; a module that fails to load throws at the first use, with the loader's own error.
 */
export function lazyModule<T extends object>(load: () => T): T {
  let mod: T | undefined;
  const get = (): T => (mod ??= load());
  return new Proxy({} as T, {
    get: (_target, key) => Reflect.get(get(), key),
    has: (_target, key) => Reflect.has(get(), key),
    ownKeys: () => Reflect.ownKeys(get()),
    getOwnPropertyDescriptor: (_target, key) => {
      const d = Reflect.getOwnPropertyDescriptor(get(), key);
      // The proxy's empty target cannot hold the module's non-configurable properties.
      return d && { ...d, configurable: true };
    },
    set: () => {
      throw new TypeError('a lazily loaded module is read-only');
    },
  });
}
