/** Session recordings: written on the node, uploaded in parts, kept by the auth service, played back. */
export * from './limits';
export * from './recorder';
export * from './store';
export * from './uploader';
export * from './playback';
