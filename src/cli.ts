import { parseCommandLine } from './cli-args.js';

/**
 * `gatehouse` (`dist/cli.js`): parses the command line first, so that `--help` and usage errors
 * answer at once and touch nothing; only a valid command loads the application's modules.
 */
async function main(argv: string[]): Promise<number> {
  const invocation = parseCommandLine(argv);
  if (invocation.kind === 'help') {
    process.stdout.write(`${invocation.text}\n`);
    return 0;
  }
  if (invocation.kind === 'error') {
    process.stderr.write(`${invocation.message}\n`);
    return 2;
  }
  const { runCommand } = await import('./cli-commands.js');
  return runCommand(invocation);
}

process.exitCode = await main(process.argv.slice(2));
