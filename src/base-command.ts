import { Command, Errors, Flags, type Interfaces } from '@oclif/core'
import { loadConfig } from './config/load.js'
import { CrabboxError, RemoteExit } from './errors.js'
import { heldWork } from './exit-hold.js'
import { asFailure, printFailure, printOrigin } from './failure.js'
import { RescueError } from './ui/rescue.js'
import { serviceContext, type ServiceContext } from './services/context.js'
import { createProgress, type Progress } from './ui/progress.js'
import { closest } from './ui/suggest.js'

export type CommandFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type CommandArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Owns what every command shares: config loading, stderr progress, `--json`
 * (oclif's JSON flag: the typed return of `run()` is the JSON), and the mapping
 * from errors to exit codes. Commands never catch and print errors themselves.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    debug: Flags.boolean({ description: 'Print diagnostics to stderr', helpGroup: 'GLOBAL', default: false }),
    quiet: Flags.boolean({ char: 'q', description: 'Print no progress, only warnings and errors', helpGroup: 'GLOBAL', default: false }),
  }

  protected flags!: CommandFlags<T>
  protected args!: CommandArgs<T>
  private cachedContext?: ServiceContext
  private cachedProgress?: Progress

  public override async init(): Promise<void> {
    await super.init()
    const { flags, args } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as CommandFlags<T>
    this.args = args as CommandArgs<T>
  }

  /** Progress on stderr: plain lines under --json or when not a TTY, only warnings with --quiet. */
  protected get progress(): Progress {
    const quiet = Boolean((this.flags as { quiet?: boolean } | undefined)?.quiet)
    this.cachedProgress ??= createProgress({ plain: this.jsonEnabled(), quiet })
    return this.cachedProgress
  }

  /** Loads config once per process, with command flags overriding every other layer. */
  protected async context(flagOverrides: Partial<Record<string, unknown>> = {}): Promise<ServiceContext> {
    if (this.cachedContext) return this.cachedContext
    const progress = this.progress
    const { config, files, repoRoot } = await loadConfig({ cwd: process.cwd(), flags: flagOverrides, warn: (m) => progress.warn(m) })
    this.cachedContext = serviceContext({ config, progress, json: this.jsonEnabled(), cwd: process.cwd(), repoRoot, configFiles: files })
    return this.cachedContext
  }

  /** The `--json` object printed for a failure; a command may put it in its own result shape. */
  protected failureJson(failure: CrabboxError): unknown {
    const rescue = failure instanceof RescueError ? { rescue: failure.steps } : {}
    return { error: { code: failure.code, message: failure.message, hint: failure.hint, exitCode: failure.exitCode, ...rescue } }
  }

  /**
   * A phase still open when the command ends (a wait that returned) leaves no live line behind;
   * work held past the command's result (src/exit-hold.ts) ends before the process does, on
   * success and failure alike.
   */
  protected override async finally(error: Error | undefined): Promise<unknown> {
    this.cachedProgress?.done()
    await heldWork()
    return super.finally(error)
  }

  protected override async catch(error: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (error instanceof RemoteExit) this.exit(error.exitCode)
    if (error instanceof Errors.ExitError) throw error
    const usage = !(error instanceof CrabboxError) && error.oclif?.exit !== undefined
    if (usage) this.suggestFlag(error)
    // oclif's own errors (bad flags, missing args) carry exit 2 and print usage help.
    if (usage && !this.jsonEnabled()) return super.catch(error)
    const debug = Boolean((this.flags as { debug?: boolean } | undefined)?.debug)
    // The live status line goes first; the phase that failed stays as one `✗` line.
    this.cachedProgress?.fail()
    const failure = usage
      ? // Under --json too: same exit code as without it, in our error shape rather than oclif's dump.
        new CrabboxError(error.message.replace(/\nSee more help with --help$/, '').trim(), {
          exit: error.oclif!.exit!,
          code: error.oclif!.exit === 2 ? 'usage' : 'error',
          hint: `${(error as { suggestion?: string }).suggestion ?? ''}See ${['crabbox', ...(this.id?.split(':') ?? [])].join(' ')} --help.`,
          cause: error,
        })
      : asFailure(error, debug)
    if (this.jsonEnabled()) this.logJson(this.failureJson(failure))
    else printFailure(failure)
    if (debug) printOrigin(failure, error)
    this.exit(failure.exitCode)
  }

  /**
   * `Nonexistent flag: --jsno` gains "did you mean --json?"; on a command that takes a remote
   * command (`run ls -la`), where that command goes. Both in the message oclif prints and in our JSON hint.
   */
  private suggestFlag(error: Error & { suggestion?: string }): void {
    const match = /Nonexistent flags?: (-{1,2}[\w-]+)/.exec(error.message)
    if (!match) return
    const flags: Record<string, { type?: string }> = {
      ...(this.ctor as typeof BaseCommand).baseFlags,
      ...this.ctor.flags,
      ...(this.ctor.enableJsonFlag ? { json: {} } : {}),
    }
    const guess = match[1].startsWith('--') ? closest(match[1].slice(2), Object.keys(flags)) : undefined
    const lines: string[] = []
    if (guess) lines.push(`Did you mean --${guess}?`)
    if (this.ctor.strict === false) {
      const dashDash = this.argv.indexOf('--')
      const words = dashDash >= 0 ? this.argv.slice(0, dashDash) : this.argv
      const first = words.findIndex(
        (word, index) => !word.startsWith('-') && !(index > 0 && flags[words[index - 1].replace(/^--/, '')]?.type === 'option'),
      )
      if (first >= 0 && !guess) {
        const name = ['crabbox', ...(this.id?.split(':') ?? [])].join(' ')
        const before = words.slice(0, first).join(' ')
        lines.push(`The remote command goes after --: ${name} ${before ? `${before} ` : ''}-- ${words.slice(first).join(' ')}`)
      }
    }
    if (lines.length === 0) return
    error.suggestion = `${lines.join(' ')} `
    error.message = `${error.message.replace(/\nSee more help with --help$/, '')}\n${lines.join('\n')}\nSee more help with --help`
  }
}
