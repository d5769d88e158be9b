export * from './ca';
export * from './pin';
