// typescript-eslint parses with `require('typescript')` and needs the compiler's JavaScript API.
// The repo's own `typescript` (7.x, the native compiler used by `tsc`) ships no such API, so this
// workspace package pins a JavaScript TypeScript of its own. npm installs it, and typescript-eslint
// with it, under this folder (their peer range excludes the root's 7.x), where typescript-eslint's
// `require('typescript')` finds it first. ts-api-utils, which typescript-eslint loads, accepts any
// TypeScript from 4.8 on, so npm would hoist it next to the root's 7.x; the root package.json's
// `overrides` gives it this 6.0 too, which keeps it here. eslint.config.js imports from here.
export { default } from 'typescript-eslint'
