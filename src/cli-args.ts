/** One option a CLI command accepts. */
export interface OptionSpec {
  /** `--name`. */
  flag: string;
  /** Placeholder of its value (`NAME`); absent for a plain flag such as `--yes`. */
  value?: string;
  help: string;
}

/** One CLI command: how it is called, what it does, which options and arguments it takes. */
export interface CommandSpec {
  /** `migrate:generate`, or `secrets rotate` for a command with a subcommand. */
  name: string;
  /** Positional arguments after the command, in order (`NAME`); all required. */
  args?: string[];
  options?: OptionSpec[];
  summary: string;
  /** Further lines for `<command> --help`. */
  details?: string;
}

const HELP: OptionSpec = { flag: '--help', help: 'show this help and do nothing else (also -h)' };

/** Every command of `gatehouse` (`dist/cli.js`). */
export const COMMANDS: CommandSpec[] = [
  { name: 'migrate', summary: 'apply pending database migrations (safe to run from several replicas at once)' },
  {
    name: 'migrate:revert',
    options: [{ flag: '--yes', help: 'really revert (without it: say what would be reverted, exit 2)' }],
    summary: 'revert the most recently applied migration; its down() may drop tables and their data',
  },
  { name: 'migrate:show', summary: 'list pending migrations; exit 1 if any are pending' },
  {
    name: 'migrate:generate',
    args: ['NAME'],
    options: [{ flag: '--out', value: 'DIR', help: 'write into DIR instead of migrations/' }],
    summary: 'write <DIR>/<timestamp>-NAME.ts (NAME in PascalCase) with the SQL that brings the database in line with the entities',
    details: 'Apply pending migrations first.',
  },
  {
    name: 'create-admin-key',
    options: [
      { flag: '--name', value: 'NAME', help: 'a label for the key, 1-100 characters (required)' },
      { flag: '--expires-at', value: 'ISO-DATE', help: 'expiry, a future ISO 8601 date such as 2027-01-31T00:00:00Z' },
    ],
    summary: 'create an admin API key and print it (once) on stdout, nothing else; applies pending migrations first unless DB_MIGRATE=false',
    details: 'Works while a server runs on the embedded PostgreSQL: the CLI uses that database.',
  },
  {
    name: 'secrets rotate',
    summary: 're-seal every stored secret under the first key of GATEHOUSE_ENCRYPTION_KEYS (online, idempotent, resumable; one replica at a time); prints counts; exit 1 if any row cannot be opened',
  },
];

const FOOTER = `Configuration comes from the environment and .env, as for the server (docs/configuration.md).
With no DATABASE_URL the embedded PostgreSQL is used: the one a running server started on
EMBEDDED_POSTGRES_DIR if there is one, else the CLI starts it for the command's duration.`;

const optionUsage = (o: OptionSpec) => (o.value ? `${o.flag} ${o.value}` : o.flag);
const synopsis = (c: CommandSpec) =>
  [c.name, ...(c.args ?? []), ...(c.options ?? []).map((o) => (o.flag === '--name' ? optionUsage(o) : `[${optionUsage(o)}]`))].join(' ');

/** The general help (`gatehouse --help`). */
export function usage(): string {
  const lines = COMMANDS.map((c) => `  ${synopsis(c)}\n      ${c.summary}`);
  return `Usage: gatehouse <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nEvery command accepts --help (-h): it prints that command's help and does nothing else.\n\n${FOOTER}`;
}

/** The help of one command (`gatehouse <command> --help`). */
export function commandUsage(command: CommandSpec): string {
  const options = [...(command.options ?? []), HELP];
  const width = Math.max(...options.map((o) => optionUsage(o).length));
  const optionLines = options.map((o) => `  ${optionUsage(o).padEnd(width)}  ${o.help}`).join('\n');
  return `Usage: gatehouse ${synopsis(command)}\n\n${command.summary}${command.details ? `\n${command.details}` : ''}\n\nOptions:\n${optionLines}\n\n${FOOTER}`;
}

/** What the command line asks for. */
export type Invocation =
  | { kind: 'help'; text: string }
  | { kind: 'error'; message: string }
  | { kind: 'run'; command: CommandSpec; args: string[]; options: Record<string, string | true> };

const isHelp = (arg: string) => arg === '--help' || arg === '-h';

/**
 * Parses `argv` (without `node cli.js`). `--help`/`-h` anywhere before a `--` wins: the result
 * is that command's help (the general help if the command is unknown or missing), and nothing
 * runs. Otherwise every option must be one the command accepts (`--opt VALUE` or
 * `--opt=VALUE`; plain flags take no value), and the positional arguments must be exactly the
 * command's. Errors name the offending option or argument and list the accepted ones; callers
 * exit 2 on them.
 */
export function parseCommandLine(argv: readonly string[]): Invocation {
  const end = argv.indexOf('--');
  const before = end < 0 ? argv : argv.slice(0, end);
  const [first, ...rest] = argv;
  const command =
    COMMANDS.find((c) => c.name === `${first} ${rest[0]}`) ?? COMMANDS.find((c) => c.name === first);
  if (before.some(isHelp) || first === 'help') {
    if (first === 'help') {
      const target = COMMANDS.find((c) => c.name === `${rest[0]} ${rest[1]}`) ?? COMMANDS.find((c) => c.name === rest[0]);
      return { kind: 'help', text: target ? commandUsage(target) : usage() };
    }
    const only = command ?? COMMANDS.find((c) => c.name.startsWith(`${first} `)); // `secrets --help`
    return { kind: 'help', text: only ? commandUsage(only) : usage() };
  }
  if (!first) return { kind: 'error', message: `a command is required\n\n${usage()}` };
  if (!command) {
    const known = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]))];
    if (first === 'secrets') return { kind: 'error', message: `secrets: expected a subcommand: rotate, got ${JSON.stringify(rest[0] ?? '')}` };
    return { kind: 'error', message: `unknown command ${JSON.stringify(first)}; expected one of ${known.join(', ')} (gatehouse --help)` };
  }

  const tokens = argv.slice(command.name.split(' ').length);
  const accepted = command.options ?? [];
  const acceptedList = [...accepted.map(optionUsage), '--help'].join(', ');
  const options: Record<string, string | true> = {};
  const args: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token === '--') {
      args.push(...tokens.slice(i + 1));
      break;
    }
    if (!token.startsWith('-') || token === '-') {
      args.push(token);
      continue;
    }
    const eq = token.indexOf('=');
    const flag = eq > 0 && token.startsWith('--') ? token.slice(0, eq) : token;
    const spec = accepted.find((o) => o.flag === flag);
    if (!spec) return { kind: 'error', message: `${command.name}: unknown option ${JSON.stringify(flag)}; accepted: ${acceptedList}` };
    if (flag in options) return { kind: 'error', message: `${command.name}: ${flag} given twice` };
    if (!spec.value) {
      if (eq > 0) return { kind: 'error', message: `${command.name}: ${flag} takes no value` };
      options[flag] = true;
      continue;
    }
    const value = eq > 0 ? token.slice(eq + 1) : tokens[++i];
    if (value === undefined || (eq < 0 && value.startsWith('--'))) {
      return { kind: 'error', message: `${command.name}: ${flag} expects a value (${optionUsage(spec)})` };
    }
    options[flag] = value;
  }
  const expected = command.args ?? [];
  if (args.length > expected.length) {
    return { kind: 'error', message: `${command.name}: unexpected argument ${JSON.stringify(args[expected.length])}; usage: gatehouse ${synopsis(command)}` };
  }
  if (args.length < expected.length) {
    return { kind: 'error', message: `${command.name}: ${expected[args.length]} is required; usage: gatehouse ${synopsis(command)}` };
  }
  return { kind: 'run', command, args, options };
}
