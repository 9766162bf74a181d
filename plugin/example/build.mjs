// Builds the example plugin into example/dist/: code.js for Figma's main
// thread (one script, no imports) and ui.html with its script inlined, as
// Figma loads them. `npm run build:example`, after `npm run build`.

import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

import { build } from 'esbuild'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
const common = {
  bundle: true,
  write: false,
  target: 'es2017',
  logLevel: 'warning',
  // The package as a creator installs it: its built output.
  alias: {
    'figma-paywall-plugin/ui': here('../dist/ui.js'),
    'figma-paywall-plugin': here('../dist/index.js'),
  },
}

const code = await build({ ...common, entryPoints: [here('code.ts')], format: 'iife' })
const ui = await build({ ...common, entryPoints: [here('ui.ts')], format: 'iife' })
const html = (await readFile(here('ui.html'), 'utf8')).replace(
  '<script>/* ui.js */</script>',
  () => `<script>${ui.outputFiles[0].text.replaceAll('</script', '<\\/script')}</script>`,
)
await mkdir(here('dist'), { recursive: true })
await writeFile(here('dist/code.js'), code.outputFiles[0].text)
await writeFile(here('dist/ui.html'), html)
