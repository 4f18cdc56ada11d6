import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/**
 * Starts a stdio upstream's process: `node:child_process.spawn` in production; tests pass a
 * fake returning a scripted child (stdin that never drains, an exit on cue).
 */
export type ProcessSpawner = (command: string, args: string[], options: SpawnOptions) => ChildProcess;

/** The real spawner. */
export const nodeSpawner: ProcessSpawner = (command, args, options) => spawn(command, args, options);

/** Nest injection token of the upstreams' {@link ProcessSpawner}. */
export const PROCESS_SPAWNER = Symbol('PROCESS_SPAWNER');
