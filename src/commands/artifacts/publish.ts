import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base-command.js'
import { durationFlag, parsePositiveInt } from '../../flags.js'
import { publishArtifacts, PUBLISH_STORAGES, type PublishResult } from '../../services/artifacts/publish.js'
import { PUBLISH_TEMPLATES } from '../../services/artifacts/publish-markdown.js'
import { renderPublish } from '../../ui/artifacts-publish.js'

export default class ArtifactsPublish extends BaseCommand<typeof ArtifactsPublish> {
  static override summary = 'Upload an artifacts folder and post (or update) the pull-request comment'
  static override description =
    "Uploads every file under --dir (symlinks only when they stay inside it) and writes published-artifacts.md there. Storage: broker (the broker's own bucket through POST /v1/artifacts/uploads grants; no cloud keys), s3 or r2 (direct, with your AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile), or local (copies into the --bucket folder); auto picks broker when a broker and its token are configured, else local. With --pr it then creates the pull request's artifacts comment, or updates the one it posted before (found by a hidden marker), with a token from GH_TOKEN, GITHUB_TOKEN or `gh auth token`. A failed upload leaves the comment as it was."
  static override examples = [
    '<%= config.bin %> artifacts publish --dir artifacts --pr 42',
    '<%= config.bin %> artifacts publish --dir artifacts --storage s3 --bucket my-qa --region eu-west-1 --presign --pr 42 --repo acme/app',
    '<%= config.bin %> artifacts publish --dir artifacts --storage r2 --bucket qa --endpoint-url https://ACCOUNT.r2.cloudflarestorage.com --base-url https://qa.example.com',
    '<%= config.bin %> artifacts publish --dir artifacts --dry-run --json',
  ]
  static override flags = {
    dir: Flags.string({ description: 'Folder to publish (required)', env: 'CRABBOX_ARTIFACTS_DIR', required: true, helpValue: 'DIR' }),
    storage: Flags.option({
      options: PUBLISH_STORAGES,
      description: 'Where to upload: auto (broker when configured, else local), broker, local, s3 or r2',
      env: 'CRABBOX_ARTIFACTS_STORAGE',
      default: 'auto' as const,
    })(),
    bucket: Flags.string({ description: 'S3/R2 bucket; with local storage, the folder to copy into', env: 'CRABBOX_ARTIFACTS_BUCKET' }),
    prefix: Flags.string({
      description: 'Key prefix (default pr-<N>/<UTC time>, or the time alone); the broker puts your owner in front',
      env: 'CRABBOX_ARTIFACTS_PREFIX',
    }),
    'base-url': Flags.string({ description: 'Public URL of the bucket: read links become BASE/<key>', env: 'CRABBOX_ARTIFACTS_BASE_URL' }),
    pr: Flags.custom<number>({
      description: 'Pull request number to comment on',
      helpValue: 'N',
      parse: async (input) => parsePositiveInt(input),
    })(),
    repo: Flags.string({ description: 'GitHub repository owner/name (default GITHUB_REPOSITORY, else the origin remote)' }),
    template: Flags.option({ options: PUBLISH_TEMPLATES, description: 'Report heading', default: 'openclaw' as const })(),
    summary: Flags.string({ description: 'Markdown shown above the artifacts' }),
    'summary-file': Flags.string({ description: 'File with the Markdown shown above the artifacts', helpValue: 'FILE' }),
    region: Flags.string({ description: 'S3 region (CRABBOX_ARTIFACTS_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION; r2: auto)' }),
    profile: Flags.string({ description: 'AWS profile for s3/r2 (CRABBOX_ARTIFACTS_AWS_PROFILE, _R2_AWS_PROFILE, AWS_PROFILE)' }),
    'endpoint-url': Flags.string({ description: 'S3-compatible endpoint (required for r2)', env: 'CRABBOX_ARTIFACTS_ENDPOINT_URL' }),
    acl: Flags.string({ description: 'S3 canned ACL for uploads, e.g. public-read', env: 'CRABBOX_ARTIFACTS_S3_ACL' }),
    presign: Flags.boolean({
      description: 'S3/R2 read links as presigned GET URLs (valid --expires)',
      env: 'CRABBOX_ARTIFACTS_PRESIGN',
      default: false,
    }),
    expires: durationFlag({
      description: 'How long presigned read links stay valid (at most 7d)',
      env: 'CRABBOX_ARTIFACTS_EXPIRES',
      default: '7d',
    }),
    run: Flags.string({
      description:
        "Broker storage: list the files on this run's portal page; links then open only for who can see the run (default: the run in --dir's metadata.json)",
      helpValue: 'RUN',
    }),
    'dry-run': Flags.boolean({ description: 'List what would be uploaded and print the report; send nothing', default: false }),
    'no-comment': Flags.boolean({ description: 'Upload and write the report, but leave the pull request alone', default: false }),
  }

  async run(): Promise<PublishResult> {
    const { flags } = await this.parse(ArtifactsPublish)
    const context = await this.context()
    const result = await publishArtifacts(context, {
      dir: flags.dir,
      storage: flags.storage,
      bucket: flags.bucket,
      prefix: flags.prefix,
      baseUrl: flags['base-url'],
      pr: flags.pr,
      repo: flags.repo,
      template: flags.template,
      summary: flags.summary,
      summaryFile: flags['summary-file'],
      region: flags.region,
      profile: flags.profile,
      endpointUrl: flags['endpoint-url'],
      acl: flags.acl,
      presign: flags.presign,
      expires: flags.expires,
      dryRun: flags['dry-run'],
      noComment: flags['no-comment'],
      run: flags.run,
    })
    if (!this.jsonEnabled()) process.stdout.write(renderPublish(result))
    return result
  }
}
