// The package as a TypeScript project sees it: both entry points type-check
// under moduleResolution node, node16 and bundler, from a copy of what npm
// packs (package.json, dist/, the licenses).

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { test } from 'node:test'

const pkg = resolve('.')
const tsc = join(pkg, 'node_modules/typescript/bin/tsc')

const main = `import { creditsOf, paidFetch } from 'figma-paywall-plugin'
export async function run(): Promise<number | undefined> {
  const response = await paidFetch('https://api.example.com/generate', { method: 'POST' })
  return creditsOf(response)?.remaining
}
`
const ui = `import { creditsOf, paidFetch } from 'figma-paywall-plugin/ui'
export async function run(): Promise<number | undefined> {
  const response = await paidFetch('https://api.example.com/generate', { method: 'POST' })
  return creditsOf(response)?.remaining
}
`

for (const [resolution, module, type] of [
  ['node', 'commonjs', 'commonjs'],
  ['node16', 'node16', 'module'],
  ['bundler', 'esnext', 'module'],
] as const) {
  test(`both entry points type-check under moduleResolution ${resolution}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `figma-paywall-plugin-${resolution}-`))
    try {
      const installed = join(dir, 'node_modules/figma-paywall-plugin')
      mkdirSync(installed, { recursive: true })
      for (const file of ['package.json', 'dist', 'LICENSE-MIT', 'LICENSE-APACHE']) {
        cpSync(join(pkg, file), join(installed, file), { recursive: true })
      }
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type }))
      writeFileSync(join(dir, 'main.ts'), main)
      writeFileSync(join(dir, 'ui.ts'), ui)
      for (const [file, lib, types] of [
        ['main.ts', ['ES2017'], ['plugin-typings']],
        ['ui.ts', ['ES2017', 'DOM'], []],
      ] as const) {
        const config = join(dir, `tsconfig.${file}.json`)
        writeFileSync(
          config,
          JSON.stringify({
            compilerOptions: {
              module,
              moduleResolution: resolution,
              strict: true,
              noEmit: true,
              skipLibCheck: false,
              lib,
              types,
              typeRoots: [join(pkg, 'node_modules/@figma')],
            },
            files: [join(dir, file)],
          }),
        )
        try {
          execFileSync(process.execPath, [tsc, '-p', config], { encoding: 'utf8' })
        } catch (error) {
          const out = (error as { stdout?: string }).stdout ?? String(error)
          assert.fail(`${file} under ${resolution}: ${out}`)
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
}
