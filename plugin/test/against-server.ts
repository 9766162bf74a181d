/// <reference types="@figma/plugin-typings" />
// The built helper, in node, against a real server: `tests/plugin.rs` runs
// it against `cargo run --example ai_endpoint`, whose mock Figma plays
// Figma's plugin side (`/plugin/payment-token`, `/plugin/checkout`).
//
//   SERVER_URL=http://127.0.0.1:3000 FIGMA_URL=http://127.0.0.1:PORT \
//   PLUGIN_ID=1122334455 USER_ID=2003 IN_CHECKOUT=buy \
//   node build-test/test/against-server.js
//
// Optional: STATUS (what figma.payments.status says first, default
// UNPAID), CHECKOUT (an interstitial, or `false`), MAX_WAIT_MS,
// DEVELOPMENT (a status: the plugin runs in development, calls
// setPaymentStatusInDevelopment with it, and gets tokens the mock never
// issued; checkout there changes the status only). Prints one
// JSON line: the status and body the plugin got, the checkouts it opened,
// the tokens it minted.

import { FakeFigma, figmaFetch, type InCheckout, install } from './fake-figma.js'
import { freshMain } from './load.js'

function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`set ${name}`)
  return value
}

const figmaUrl = env('FIGMA_URL')
const who = `user_id=${encodeURIComponent(env('USER_ID'))}&plugin_id=${encodeURIComponent(env('PLUGIN_ID'))}`

async function post(path: string): Promise<string> {
  const response = await fetch(`${figmaUrl}${path}?${who}`, { method: 'POST' })
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`)
  return response.text()
}

const development = process.env.DEVELOPMENT as PaymentStatus['type'] | undefined
let developmentTokens = 0
const figma = new FakeFigma(
  development
    ? {
        // Figma's tokens in development: nothing the server could look up.
        mint: async () => `from-figma-in-development-${++developmentTokens}`,
        buy: async () => {},
      }
    : {
        mint: () => post('/plugin/payment-token'),
        buy: async () => {
          await post('/plugin/checkout')
        },
      },
)
figma.inCheckout = (process.env.IN_CHECKOUT ?? 'close') as InCheckout
figma.status = { type: (process.env.STATUS ?? 'UNPAID') as PaymentStatus['type'] }
install(figma, figmaFetch)

const main = await freshMain()
if (development) main.setPaymentStatusInDevelopment(development)
const checkout = process.env.CHECKOUT
const response = await main.paidFetch(
  `${env('SERVER_URL')}/generate`,
  {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'a cat in a hat' }),
  },
  {
    ...(checkout === undefined ? {} : { checkout: checkout === 'false' ? false : (checkout as 'PAID_FEATURE') }),
    ...(process.env.MAX_WAIT_MS ? { maxWaitMs: Number(process.env.MAX_WAIT_MS) } : {}),
  },
)
const text = await response.text()
let body: unknown = text
try {
  body = JSON.parse(text)
} catch {
  // Not JSON: the text.
}
console.log(
  JSON.stringify({
    status: response.status,
    retryAfter: response.headersObject['retry-after'] ?? null,
    credits: main.creditsOf(response) ?? null,
    body,
    checkouts: figma.checkouts,
    tokensMinted: figma.tokensMinted,
  }),
)
