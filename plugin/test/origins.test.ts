/// <reference types="@figma/plugin-typings" />
// Where the payment token goes: only to the origins the creator named (or
// the first one paidFetch was called with), and never on through a
// redirect to another origin. Two real servers on 127.0.0.1 (two ports,
// two origins): `ours`, the plugin's server, and `other`, which must never
// see a token.

import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'

import { FakeFigma, figmaFetch, install } from './fake-figma.js'
import { type BrowserFetch, inIframe } from './iframe.js'
import { freshMain } from './load.js'
import { StandIn } from './stand-in.js'
import { type Origin, twoOrigins } from './two-origins.js'

let ours: Origin
let other: Origin
let close: () => Promise<void>

before(async () => {
  ;({ ours, other, close } = await twoOrigins())
})
after(() => close())
beforeEach(() => {
  ours.seen.length = 0
  other.seen.length = 0
})

/** Node's own `fetch`, kept before a test replaces the global. */
const nodeFetch: BrowserFetch = globalThis.fetch.bind(globalThis)

const POST = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt":"a cat"}' }

/** A plugin's main thread whose Figma `fetch` is `fetch` (node's, by default). */
async function mainThread(fetch = figmaFetch) {
  const store = new StandIn()
  const figma = new FakeFigma(store)
  install(figma, fetch)
  return { figma, main: await freshMain() }
}

/** The rejection `code`, with a message that names no token. */
function refused(code: string, message?: RegExp) {
  return (error: unknown) => {
    assert.equal((error as { code?: string }).code, code, String(error))
    if (message) assert.match((error as Error).message, message)
    assert.doesNotMatch((error as Error).message, /ppt_test/)
    return true
  }
}

/**
 * What a browser's `fetch` does with `redirect: 'manual'`: an
 * `opaqueredirect` (status 0, no headers), the target hidden. Without it,
 * it follows the redirect, custom headers and all.
 */
function hidingRedirects(fetch: BrowserFetch): BrowserFetch {
  return async (url, init = {}) => {
    const response = await fetch(url, init)
    if (init.redirect !== 'manual' || ![301, 302, 303, 307, 308].includes(response.status)) return response
    await response.body?.cancel()
    const opaque = { type: 'opaqueredirect', status: 0, ok: false, redirected: false, url: String(url) }
    return { ...opaque, headers: new Headers(), body: null, clone: () => opaque } as unknown as Response
  }
}

/** Figma's main-thread `fetch` if it goes through a browser that hides redirects. */
async function figmaHidingRedirects(url: string, init: FetchOptions = {}): Promise<FetchResponse> {
  const response = await figmaFetch(url, init)
  if (init.redirect !== 'manual' || ![301, 302, 303, 307, 308].includes(response.status)) return response
  return { ...response, type: 'opaqueredirect', status: 0, ok: false, headersObject: {} }
}

test('without origins, the token goes only to the origin of the first call', async () => {
  const { figma, main } = await mainThread()
  assert.equal((await main.paidFetch(`${ours.url}/generate`, POST)).status, 200)
  await assert.rejects(
    main.paidFetch(`${other.url}/steal`, POST),
    refused('origin_not_allowed', new RegExp(`only to ${ours.url} \\(its first call's origin\\), not to ${other.url}`)),
  )
  // Starts like ours, goes to the other: ours is the user info.
  await assert.rejects(
    main.paidFetch(`http://${ours.url.slice('http://'.length)}@${other.url.slice('http://'.length)}/steal`, POST),
    refused('origin_not_allowed'),
  )
  // The same origin written otherwise is still ours.
  assert.equal((await main.paidFetch(`${ours.url.toUpperCase()}/generate`, POST)).status, 200)
  assert.deepEqual(ours.tokens, ['ppt_test_1', 'ppt_test_1'])
  assert.deepEqual(other.seen, [])
  assert.equal(figma.tokensMinted, 1)
})

test('origins names where the token may go, from the first call on', async () => {
  const { figma, main } = await mainThread()
  const only = { origins: [ours.url] }
  await assert.rejects(main.paidFetch(`${other.url}/steal`, POST, only), refused('origin_not_allowed', new RegExp(`only to ${ours.url}, not`)))
  // Refused before a token was asked for.
  assert.equal(figma.tokensMinted, 0)
  assert.equal((await main.paidFetch(`${ours.url}/generate`, POST, only)).status, 200)

  const both = { origins: [ours.url, `${other.url}/`] }
  assert.equal((await main.paidFetch(`${other.url}/named`, POST, both)).status, 200)
  assert.deepEqual(other.seen.map((seen) => [seen.path, seen.token]), [['/named', 'ppt_test_1']])

  await assert.rejects(
    main.paidFetch(`${ours.url}/generate`, POST, { origins: [`${ours.url}/api`] }),
    refused('origin_not_allowed', /not an origin/),
  )
  assert.deepEqual(ours.tokens, ['ppt_test_1'])
})

test('a redirect to another origin is not followed with the token', async () => {
  const { main } = await mainThread()
  for (const path of ['/to-other/302', '/to-other/307', '/to-other/scheme-relative', '/hop']) {
    await assert.rejects(
      main.paidFetch(`${ours.url}${path}`, POST),
      refused('redirect_refused', new RegExp(`from ${ours.url} to ${other.url}`)),
      path,
    )
  }
  // Ours got the token each time (and /hop's same-origin hop); the other origin nothing.
  assert.deepEqual(
    ours.seen.map((seen) => [seen.path, seen.token]),
    [
      ['/to-other/302', 'ppt_test_1'],
      ['/to-other/307', 'ppt_test_1'],
      ['/to-other/scheme-relative', 'ppt_test_1'],
      ['/hop', 'ppt_test_1'],
      ['/to-other/302', 'ppt_test_1'],
    ],
  )
  assert.deepEqual(other.seen, [])
})

test('same-origin redirects are followed with the token, up to one that leaves', async () => {
  const { main } = await mainThread()
  // 307 keeps the method and the body; 302 after a POST and 303 make a GET without one.
  const kept = await main.paidFetch(`${ours.url}/here/307`, POST)
  assert.deepEqual(await kept.json(), { result: 'generated', method: 'POST', body: POST.body })
  for (const path of ['/here/302', '/here/303']) {
    const got = await main.paidFetch(`${ours.url}${path}`, POST)
    assert.deepEqual(await got.json(), { result: 'generated', method: 'GET', body: '' }, path)
  }
  const arrived = ours.seen.filter((seen) => seen.path.startsWith('/generate'))
  assert.deepEqual(
    arrived.map((seen) => [seen.path, seen.method, seen.token, seen.contentType]),
    [
      ['/generate?from=here', 'POST', 'ppt_test_1', 'application/json'],
      ['/generate', 'GET', 'ppt_test_1', undefined],
      ['/generate', 'GET', 'ppt_test_1', undefined],
    ],
  )
  // A same-origin hop, then one to the other origin: stopped there.
  await assert.rejects(main.paidFetch(`${ours.url}/hop`, POST), refused('redirect_refused'))
  assert.deepEqual(other.seen, [])
})

test("where Figma's fetch hides a redirect (opaqueredirect), it is refused, not followed", async () => {
  const { main } = await mainThread(figmaHidingRedirects)
  for (const path of ['/to-other/302', '/to-other/307']) {
    await assert.rejects(main.paidFetch(`${ours.url}${path}`, POST), refused('redirect_refused', /opaqueredirect/), path)
  }
  assert.deepEqual(ours.tokens, ['ppt_test_1', 'ppt_test_1'])
  assert.deepEqual(other.seen, [])
})

test('from the UI, the token goes only to the first origin, or to those named', async () => {
  const { ui } = await inIframe(new StandIn(), hidingRedirects(nodeFetch))
  assert.equal((await ui.paidFetch(`${ours.url}/generate`, POST)).status, 200)
  await assert.rejects(ui.paidFetch(`${other.url}/steal`, POST), refused('origin_not_allowed'))
  await assert.rejects(ui.paidFetch(`${ours.url}/generate`, POST, { origins: [other.url.replace('http:', 'https:')] }), refused('origin_not_allowed'))
  assert.equal((await ui.paidFetch(`${other.url}/named`, POST, { origins: [ours.url, other.url] })).status, 200)
  assert.deepEqual(ours.tokens, ['ppt_test_1'])
  assert.deepEqual(other.seen.map((seen) => [seen.path, seen.token]), [['/named', 'ppt_test_1']])
})

test('from the UI, in a browser, a redirect is refused: the browser hides where it leads', async () => {
  const { ui } = await inIframe(new StandIn(), hidingRedirects(nodeFetch))
  for (const path of ['/to-other/302', '/to-other/307', '/here/307']) {
    await assert.rejects(ui.paidFetch(`${ours.url}${path}`, POST), refused('redirect_refused', /opaqueredirect/), path)
  }
  assert.deepEqual(ours.tokens, ['ppt_test_1', 'ppt_test_1', 'ppt_test_1'])
  assert.deepEqual(other.seen, [])
})

test("from the UI, where fetch shows redirects (node's), same-origin ones are followed, others not", async () => {
  const { ui } = await inIframe(new StandIn(), nodeFetch)
  const kept = await ui.paidFetch(`${ours.url}/here/307`, POST)
  assert.deepEqual(await kept.json(), { result: 'generated', method: 'POST', body: POST.body })
  const get = await ui.paidFetch(`${ours.url}/here/302`, POST)
  assert.deepEqual(await get.json(), { result: 'generated', method: 'GET', body: '' })
  for (const path of ['/to-other/302', '/to-other/307', '/hop']) {
    await assert.rejects(ui.paidFetch(`${ours.url}${path}`, POST), refused('redirect_refused'), path)
  }
  assert.deepEqual(other.seen, [])
})
