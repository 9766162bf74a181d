/// <reference types="@figma/plugin-typings" />
// paidFetch in the UI iframe, through the bridge to the main thread
// (`iframe.ts`), on a stand-in server.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { inIframe } from './iframe.js'
import { busy, StandIn } from './stand-in.js'

/** The browser's `fetch`, answered by `server`. */
function browserFetch(server: StandIn) {
  return async (url: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    assert.equal(String(url), 'https://api.example.com/generate')
    const token = new Headers(init.headers).get('x-figma-payment-token') ?? undefined
    const development = new Headers(init.headers).get('x-figma-payment-status-in-development') ?? undefined
    const answer = server.answer(token, init.body as string | undefined, development)
    return new Response(answer.body, { status: answer.status, headers: answer.headers })
  }
}

/** A plugin with a UI, whose iframe's `fetch` is answered by a stand-in. */
async function setUp(options: { bridge?: boolean } = {}) {
  const server = new StandIn()
  return { server, ...(await inIframe(server, browserFetch(server), options)) }
}

const URL_ = 'https://api.example.com/generate'
const POST = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt":"a cat"}' }

test('from the UI, a buyer gets the answer with a token from the main thread', async () => {
  const { server, figma, ui } = await setUp()
  server.buyer = true
  const response = await ui.paidFetch(URL_, POST)
  assert.equal(response.status, 200)
  assert.deepEqual(await response.json(), { result: 'generated' })
  assert.equal((await ui.paidFetch(URL_, POST)).status, 200)
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_1'])
  assert.equal(figma.tokensMinted, 1)
})

test('from the UI, checkout runs in the main thread; closed, the 402 comes back', async () => {
  const { server, figma, ui } = await setUp()
  figma.inCheckout = 'close'
  const refused = await ui.paidFetch(URL_, POST)
  assert.equal(refused.status, 402)
  assert.equal((await refused.json()).reason, 'not_paid')
  assert.deepEqual(figma.checkouts, ['PAID_FEATURE'])

  figma.inCheckout = 'buy'
  const bought = await ui.paidFetch(URL_, POST, { checkout: 'SKIP' })
  assert.equal(bought.status, 200)
  assert.deepEqual(figma.checkouts, ['PAID_FEATURE', 'SKIP'])
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_1', 'ppt_test_2'])
})

test('from the UI, Retry-After is read and waited out', async () => {
  const { server, ui } = await setUp()
  server.buyer = true
  server.busy.push(busy(503, '1'))
  const response = await ui.paidFetch(URL_, POST, { maxWaitMs: 2000 })
  assert.equal(response.status, 200)
  assert.equal(server.tokensSeen.length, 2)
})

test("the bridge sits beside the plugin's own handlers and is removable", async () => {
  const { server, figma, ui, uninstall } = await setUp()
  server.buyer = true
  const own: unknown[] = []
  figma.ui.on('message', (message) => own.push(message))
  figma.fromUi({ type: 'create-rectangles', count: 5 })
  assert.equal((await ui.paidFetch(URL_, POST)).status, 200)
  // The plugin's handler saw its own message, and the bridge's, which it
  // can tell apart; the bridge answered nothing but its own.
  assert.deepEqual(own[0], { type: 'create-rectangles', count: 5 })
  assert.equal(figma.toUi.length, 1)
  assert.equal(figma.listeners, 2)
  uninstall()
  assert.equal(figma.listeners, 1)
})

test('from the UI, errors of the main thread arrive as PaywallErrors', async () => {
  const { figma, ui } = await setUp()
  figma.inCheckout = 'throw'
  await assert.rejects(ui.paidFetch(URL_, POST), (e: unknown) => {
    assert.ok(e instanceof ui.PaywallError)
    assert.equal(e.code, 'checkout_unavailable')
    return true
  })
})

test('without installPaywallBridge the UI says so', async () => {
  const { ui } = await setUp({ bridge: false })
  await assert.rejects(ui.paidFetch(URL_, POST, { bridgeTimeoutMs: 50 }), (e: unknown) => {
    assert.ok(e instanceof ui.PaywallError)
    assert.equal(e.code, 'no_bridge')
    assert.match(e.message, /installPaywallBridge\(\)/)
    return true
  })
})

test('from the UI, the status chosen in development goes with the token, and only then', async () => {
  const { server, figma, main, ui } = await setUp()
  server.buyer = true
  assert.equal((await ui.paidFetch(URL_, POST)).status, 200)
  main.setPaymentStatusInDevelopment('PAID')
  assert.equal((await ui.paidFetch(URL_, POST)).status, 200)
  figma.status = { type: 'UNPAID' }
  assert.equal((await ui.paidFetch(URL_, POST)).status, 200)
  assert.deepEqual(server.developmentSeen, [undefined, 'PAID', 'UNPAID'])
})
