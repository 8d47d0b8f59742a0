// ESLint flat config: a modest set of correctness rules, import cycles, the layer rules between
// folders, and a length limit for functions. Type-aware rules are left out (they would need a
// TypeScript program; `npm run typecheck` covers types).
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import tseslint from '@crabbox/typescript-eslint'
import comments from '@eslint-community/eslint-plugin-eslint-comments'
import { createNodeResolver, importX } from 'eslint-plugin-import-x'
import globals from 'globals'

// Every layer rule names the folder it guards, so a report says which boundary an import crosses.
const layer = (text) => `Layer rule: ${text}.`

// import-x/no-restricted-paths compares resolved files, however an import spells its path (npm
// packages resolve into node_modules, outside every zone). Paths are relative to the repo root;
// `except` is relative to its zone's `from`. An import that does not resolve is left to tsc.
const layerZones = [
  {
    target: './src/protocol',
    from: './src',
    except: ['./protocol'],
    message: layer('src/protocol imports only valibot and other src/protocol files'),
  },
  {
    target: './src/protocol',
    from: ['./worker', './test', './bench', './scripts', './bin'],
    message: layer('src/protocol imports only valibot and other src/protocol files'),
  },
  {
    target: './src/transport',
    from: ['./src/services', './src/config', './src/commands'],
    message: layer('src/transport never imports src/services, src/config or src/commands'),
  },
  {
    target: './src/providers',
    from: ['./src/services', './src/commands'],
    message: layer('src/providers never imports src/services or src/commands'),
  },
  {
    target: './src/services',
    from: ['./src/commands', './src/base-command.ts'],
    message: layer('src/services never imports src/commands or src/base-command'),
  },
  {
    target: './src/cloud',
    from: './src',
    except: ['./protocol', './cloud'],
    message: layer('src/cloud imports only src/protocol, src/cloud and npm packages'),
  },
  {
    target: './src/cloud',
    from: ['./worker', './test', './bench', './scripts', './bin'],
    message: layer('src/cloud imports only src/protocol, src/cloud and npm packages'),
  },
  {
    target: './worker',
    from: './src',
    except: ['./protocol', './cloud'],
    message: layer('worker imports only worker, src/protocol, src/cloud and npm packages'),
  },
  {
    target: './worker',
    from: ['./test', './bench', './scripts', './bin'],
    message: layer('worker imports only worker, src/protocol, src/cloud and npm packages'),
  },
]

export default defineConfig(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'tools/*/node_modules/**',
      '.wrangler/**',
      '.crabbox-bench/**',
      'oclif.manifest.json',
      'worker/portal/generated/*.js',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ['**/*.{ts,tsx,js,mjs,cjs}'],
    plugins: { 'import-x': importX, '@eslint-community/eslint-comments': comments },
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    settings: {
      // Files no-cycle follows and parses (import-x ignores other extensions).
      'import-x/extensions': ['.ts', '.tsx', '.js', '.mjs', '.cjs'],
      // Sources import each other as `./x.js` (NodeNext); the files on disk are `./x.ts`.
      'import-x/resolver-next': [
        createNodeResolver({
          extensions: ['.ts', '.tsx', '.js', '.mjs', '.cjs', '.json', '.node'],
          extensionAlias: { '.js': ['.ts', '.tsx', '.js'], '.mjs': ['.mts', '.mjs'] },
          conditionNames: ['types', 'import', 'node', 'require', 'default'],
        }),
      ],
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'import-x/no-duplicates': 'error',
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones: layerZones }],

      // Long functions need a one-line reason:
      // `// eslint-disable-next-line max-lines-per-function -- <reason>`.
      'max-lines-per-function': ['error', { max: 120, skipBlankLines: true, skipComments: true, IIFEs: true }],

      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': ['error', { destructuring: 'all' }],
      'no-throw-literal': 'error',
      'no-self-compare': 'error',
      'no-template-curly-in-string': 'error',
      'no-unreachable-loop': 'error',
      // `catch {}` is how the code says "best effort"; other empty blocks are still errors.
      'no-empty': ['error', { allowEmptyCatch: true }],
      // `interface ProvidedEnv extends Env {}` is how cloudflare:test's env type is declared.
      '@typescript-eslint/no-empty-object-type': ['error', { allowInterfaces: 'with-single-extends' }],
      // Every disable comment says why (`-- <reason>`) and names its rules.
      '@eslint-community/eslint-comments/require-description': ['error', { ignore: ['eslint-enable'] }],
      '@eslint-community/eslint-comments/no-unlimited-disable': 'error',
    },
  },
  {
    // bin/ is CommonJS (bin/package.json): a warm command never starts Node's ES module loader.
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The portal's browser code (bundled by scripts/build-portal-assets.js) runs in the page.
    files: ['worker/portal/vnc-client/**/*.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // A test file's describe() callback groups its tests; it is not a function to split.
    files: ['test/**/*.test.ts'],
    rules: { 'max-lines-per-function': 'off' },
  },
  {
    // A disable comment that no longer silences anything is an error too.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    // src/protocol is shared by the CLI and the worker: of npm packages it uses only valibot.
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!valibot$)[^.]',
              message: layer('src/protocol imports only valibot and other src/protocol files'),
            },
          ],
        },
      ],
    },
  },
  {
    // Test doubles and bench drivers poke at untyped internals; product code stays free of `any`.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
)
