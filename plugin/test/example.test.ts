/// <reference types="@figma/plugin-typings" />
// The example plugin (example/), as Figma would load it: its manifest, and
// its built main code run on a fake `figma`, answering its UI.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { runInNewContext } from 'node:vm'

import { FakeFigma } from './fake-figma.js'
import { figmaFetchFrom, StandIn } from './stand-in.js'

const example = (path: string) => new URL(`../../example/${path}`, import.meta.url)

test('the manifest asks for payments and lets the plugin reach its server', async () => {
  const manifest = JSON.parse(await readFile(example('manifest.json'), 'utf8'))
  assert.deepEqual(manifest.permissions, ['payments'])
  const code = await readFile(example(manifest.main), 'utf8')
  const ui = await readFile(example(manifest.ui), 'utf8')
  for (const source of [code, ui]) {
    const servers = new Set(source.match(/https?:\/\/localhost:\d+/g))
    assert.ok(servers.size > 0)
    // A server on this machine is for development: Figma's devAllowedDomains.
    for (const server of servers) assert.ok(manifest.networkAccess.devAllowedDomains.includes(server), server)
    for (const server of servers) assert.ok(!manifest.networkAccess.allowedDomains.includes(server), server)
  }
  // The server's URL is written in one place: server.ts.
  for (const file of ['code.ts', 'ui.ts']) {
    assert.doesNotMatch(await readFile(example(file), 'utf8'), /https?:\/\//, file)
  }
  // One script each, as Figma loads them: no module syntax, no file to fetch.
  assert.doesNotMatch(code, /^\s*(import|export)\s/m)
  assert.doesNotMatch(ui, /<script[^>]+src=/)
})

test('the built main code answers its UI: a token through the bridge, a call of its own', async () => {
  const manifest = JSON.parse(await readFile(example('manifest.json'), 'utf8'))
  const code = await readFile(example(manifest.main), 'utf8')
  const server = new StandIn()
  server.buyer = true
  const figma = new FakeFigma(server)
  let shown = false
  const notified: string[] = []
  const fetch = figmaFetchFrom(server)
  const api = {
    payments: figma.payments,
    ui: figma.ui,
    showUI: () => {
      shown = true
    },
    notify: (text: string) => {
      notified.push(text)
    },
  }
  // Objects made in the plugin's context, compared as data.
  const sent = () => JSON.parse(JSON.stringify(figma.toUi))
  runInNewContext(code, { figma: api, __html__: '<html></html>', fetch, setTimeout, console })
  assert.ok(shown)

  // The UI asks for a token, as paidFetch from 'figma-paywall-plugin/ui' does.
  figma.fromUi({ __figmaPaywall: { id: 7, op: 'token', fresh: false } })
  await new Promise((resolve) => setTimeout(resolve, 20))
  // In development against localhost: the status it chose goes along.
  assert.deepEqual(sent(), [
    { __figmaPaywall: { id: 7, ok: true, value: 'ppt_test_1', reused: false, development: 'UNPAID' } },
  ])

  // The UI's button for a call from the main thread.
  figma.fromUi({ type: 'generate-here', prompt: 'a cat' })
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual(sent()[1], { type: 'result', status: 200, body: { result: 'generated' } })
  assert.deepEqual(server.tokensSeen, ['ppt_test_1'])
  assert.deepEqual(server.developmentSeen, ['UNPAID'])
  assert.deepEqual(server.bodies, ['{"prompt":"a cat"}'])
  assert.deepEqual(notified, [])
})
