/// <reference types="@figma/plugin-typings" />
// paidFetch in the plugin's main thread, on a fake `figma` and a stand-in
// server.

import assert from 'node:assert/strict'
import { test } from 'node:test'

import { FakeFigma, install } from './fake-figma.js'
import { freshMain } from './load.js'
import { busy, figmaFetchFrom, StandIn } from './stand-in.js'

/** Figma's main-thread `fetch` to the stand-in, at the tests' server only. */
function fetchFrom(server: StandIn) {
  const answer = figmaFetchFrom(server)
  return (url: string, init?: FetchOptions) => {
    assert.match(url, /^https:\/\/api\.example\.com\//)
    return answer(url, init)
  }
}

async function setUp() {
  const server = new StandIn()
  const figma = new FakeFigma(server)
  install(figma, fetchFrom(server))
  return { server, figma, main: await freshMain() }
}

const URL_ = 'https://api.example.com/generate'
const POST = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt":"a cat"}' }

test('a buyer gets the answer, with the token sent and reused', async () => {
  const { server, figma, main } = await setUp()
  server.buyer = true
  const first = await main.paidFetch(URL_, POST)
  assert.equal(first.status, 200)
  assert.deepEqual(await first.json(), { result: 'generated' })
  const second = await main.paidFetch(URL_, POST)
  assert.equal(second.status, 200)
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_1'])
  assert.deepEqual(server.bodies, [POST.body, POST.body])
  assert.equal(figma.tokensMinted, 1)
  assert.deepEqual(figma.checkouts, [])
})

test('a non-buyer who buys in checkout gets the answer, with a new token', async () => {
  const { server, figma, main } = await setUp()
  figma.inCheckout = 'buy'
  const response = await main.paidFetch(URL_, POST)
  assert.equal(response.status, 200)
  assert.deepEqual(figma.checkouts, ['PAID_FEATURE'])
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_2'])
  assert.deepEqual(server.bodies, [POST.body, POST.body])
})

test('a non-buyer who closes checkout gets the 402 back, readable, after one checkout', async () => {
  const { server, figma, main } = await setUp()
  figma.inCheckout = 'close'
  const response = await main.paidFetch(URL_, POST)
  assert.equal(response.status, 402)
  const body = await response.json()
  assert.equal(body.reason, 'not_paid')
  assert.deepEqual(figma.checkouts, ['PAID_FEATURE'])
  assert.equal(server.tokensSeen.length, 1)
})

test('checkout: false never opens checkout; an interstitial is passed on', async () => {
  const { server, figma, main } = await setUp()
  figma.inCheckout = 'buy'
  const refused = await main.paidFetch(URL_, POST, { checkout: false })
  assert.equal(refused.status, 402)
  assert.equal((await refused.json()).reason, 'not_paid')
  assert.deepEqual(figma.checkouts, [])
  const bought = await main.paidFetch(URL_, POST, { checkout: 'TRIAL_ENDED' })
  assert.equal(bought.status, 200)
  assert.deepEqual(figma.checkouts, ['TRIAL_ENDED'])
  assert.equal(server.tokensSeen.length, 3)
})

test('a buyer that Figma already says PAID is not sent to checkout again', async () => {
  const { server, figma, main } = await setUp()
  figma.status = { type: 'PAID' }
  const response = await main.paidFetch(URL_, POST)
  // The server still says UNPAID: the 402, and one more try with a new token.
  assert.equal(response.status, 402)
  assert.deepEqual(figma.checkouts, [])
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_2'])
})

test('a busy 429 or 503 within maxWaitMs is waited out once', async () => {
  for (const status of [429, 503] as const) {
    const { server, main } = await setUp()
    server.buyer = true
    server.busy.push(busy(status, '1'))
    const response = await main.paidFetch(URL_, POST, { maxWaitMs: 1000 })
    assert.equal(response.status, 200, `after a ${status}`)
    assert.equal(server.tokensSeen.length, 2)
  }
})

test('a Retry-After past maxWaitMs, or a second busy answer, comes back as it is', async () => {
  const { server, figma, main } = await setUp()
  server.buyer = true
  server.busy.push(busy(503, '60'))
  const late = await main.paidFetch(URL_, POST, { maxWaitMs: 1000 })
  assert.equal(late.status, 503)
  assert.equal(late.headersObject['retry-after'], '60')
  assert.equal((await late.json()).reason, 'rate_limited')
  assert.equal(server.tokensSeen.length, 1)

  server.busy.push(busy(429, '1'), busy(429, '1'))
  const twice = await main.paidFetch(URL_, POST, { maxWaitMs: 1000 })
  assert.equal(twice.status, 429)
  assert.equal(server.tokensSeen.length, 3)

  server.busy.push(busy(503, '1'))
  const never = await main.paidFetch(URL_, POST, { maxWaitMs: 0 })
  assert.equal(never.status, 503)
  assert.equal(server.tokensSeen.length, 4)
  assert.deepEqual(figma.checkouts, [])
})

test('a reused token Figma refused is replaced once; a new one is not', async () => {
  const { server, figma, main } = await setUp()
  server.buyer = true
  assert.equal((await main.paidFetch(URL_, POST)).status, 200)
  server.expired.add('ppt_test_1')
  const response = await main.paidFetch(URL_, POST)
  assert.equal(response.status, 200)
  assert.deepEqual(server.tokensSeen, ['ppt_test_1', 'ppt_test_1', 'ppt_test_2'])

  // A fresh instance whose first token is refused: the 401 comes back.
  const again = await setUp()
  again.server.buyer = true
  again.server.expired.add('ppt_test_1')
  const refused = await again.main.paidFetch(URL_, POST)
  assert.equal(refused.status, 401)
  assert.equal((await refused.json()).reason, 'token_rejected')
  assert.equal(again.server.tokensSeen.length, 1)
  assert.equal(figma.tokensMinted, 2)
})

test('errors a creator can act on', async () => {
  // No "payments" permission: no figma.payments.
  const server = new StandIn()
  const figma = new FakeFigma(server)
  install(figma, fetchFrom(server), { payments: false })
  const main = await freshMain()
  await assert.rejects(main.paidFetch(URL_, POST), (e: unknown) => {
    assert.ok(e instanceof main.PaywallError)
    assert.equal(e.code, 'no_payments_permission')
    assert.match(e.message, /"permissions": \["payments"\]/)
    return true
  })

  // Checkout where Figma cannot open it (query mode, a widget rendering).
  const query = await setUp()
  query.figma.inCheckout = 'throw'
  await assert.rejects(query.main.paidFetch(URL_, POST), (e: unknown) => {
    assert.ok(e instanceof query.main.PaywallError)
    assert.equal(e.code, 'checkout_unavailable')
    assert.match(e.message, /query mode/)
    return true
  })

  // The network blocked (networkAccess, CORS): never the token in the message.
  const blocked = await setUp()
  install(blocked.figma, async () => {
    throw new Error('Content Security Policy: connect-src blocked')
  })
  await assert.rejects(blocked.main.paidFetch(URL_, POST), (e: unknown) => {
    assert.ok(e instanceof blocked.main.PaywallError)
    assert.equal(e.code, 'network')
    assert.match(e.message, /networkAccess\.allowedDomains names https:\/\/api\.example\.com/)
    assert.doesNotMatch(e.message, /ppt_test/)
    return true
  })
})

test('Retry-After in seconds or as an HTTP date', async () => {
  const { main } = await setUp()
  assert.equal(main.retryAfterMs('3'), 3000)
  assert.equal(main.retryAfterMs(' 0 '), 0)
  const now = Date.parse('Sat, 05 Dec 2026 12:00:00 GMT')
  assert.equal(main.retryAfterMs('Sat, 05 Dec 2026 12:00:02 GMT', now), 2000)
  assert.equal(main.retryAfterMs('Sat, 05 Dec 2026 11:00:00 GMT', now), 0)
  assert.equal(main.retryAfterMs('soon'), undefined)
  assert.equal(main.retryAfterMs(null), undefined)
})

test('a 429 for spent credits is never waited out, whatever its Retry-After', async () => {
  const { server, figma, main } = await setUp()
  server.buyer = true
  server.busy.push({
    status: 429,
    headers: { 'content-type': 'application/json', 'retry-after': '1' },
    body: JSON.stringify({ error: true, status: 429, reason: 'credits_exhausted' }),
  })
  const spent = await main.paidFetch(URL_, POST, { maxWaitMs: 60_000 })
  assert.equal(spent.status, 429)
  assert.equal((await spent.json()).reason, 'credits_exhausted', 'the body is still readable')
  assert.equal(server.tokensSeen.length, 1)
  assert.deepEqual(figma.checkouts, [])
})

test('creditsOf reads the window with the least left from RateLimit and RateLimit-Policy', async () => {
  const { server, main } = await setUp()
  server.buyer = true
  server.busy.push({
    status: 200,
    headers: {
      'RateLimit-Policy': '"month";q=1000;w=2592000, "day";q=100;w=86400',
      RateLimit: '"month";r=912;t=1209600, "day";r=37;t=35100',
    },
    body: '{}',
  })
  const response = await main.paidFetch(URL_, POST)
  assert.deepEqual(main.creditsOf(response), { remaining: 37, limit: 100, resetsInSeconds: 35100, window: 'day' })
  server.busy.push({
    status: 200,
    headers: { 'ratelimit-policy': '"ever";q=5', ratelimit: '"ever";r=2' },
    body: '{}',
  })
  const tries = await main.paidFetch(URL_, POST)
  assert.deepEqual(main.creditsOf(tries), { remaining: 2, limit: 5, resetsInSeconds: undefined, window: 'ever' })
  // None, or none that parses: undefined, never a throw.
  assert.equal(main.creditsOf(await main.paidFetch(URL_, POST)), undefined)
  server.busy.push({ status: 200, headers: { ratelimit: '"day";r=', 'ratelimit-policy': 'garbage ((' }, body: '{}' })
  assert.equal(main.creditsOf(await main.paidFetch(URL_, POST)), undefined)
})

test('no status goes with the token unless Figma took setPaymentStatusInDevelopment', async () => {
  const { server, figma, main } = await setUp()
  server.buyer = true
  await main.paidFetch(URL_, POST)
  // Published: Figma refuses the call, and nothing changes.
  figma.published = true
  assert.throws(
    () => main.setPaymentStatusInDevelopment('PAID'),
    (error: unknown) => error instanceof main.PaywallError && error.code === 'figma_failed',
  )
  await main.paidFetch(URL_, POST)
  assert.deepEqual(server.developmentSeen, [undefined, undefined])
  assert.deepEqual(figma.status, { type: 'UNPAID' })
})

test('in development, the status Figma says goes with each call, checkout included', async () => {
  const { server, figma, main } = await setUp()
  figma.inCheckout = 'buy'
  main.setPaymentStatusInDevelopment('UNPAID')
  const response = await main.paidFetch(URL_, POST)
  assert.equal(response.status, 200)
  assert.deepEqual(figma.checkouts, ['PAID_FEATURE'])
  // Read at each call: after checkout in development, PAID.
  assert.deepEqual(server.developmentSeen, ['UNPAID', 'PAID'])
  assert.equal(main.DEVELOPMENT_STATUS_HEADER, 'X-Figma-Payment-Status-In-Development')
})
