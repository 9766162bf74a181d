/**
 * The plugin side of figma-paywall, for a plugin's main thread: call your
 * paid server with the user's plugin payment token, and open Figma's
 * checkout when it answers 402.
 *
 * ```ts
 * import { paidFetch } from 'figma-paywall-plugin'
 *
 * const response = await paidFetch('https://api.example.com/generate', {
 *   method: 'POST',
 *   headers: { 'Content-Type': 'application/json' },
 *   body: JSON.stringify({ prompt: 'a cat in a hat' }),
 * })
 * if (response.ok) figma.notify((await response.json()).result)
 * else figma.notify('This feature is for buyers')
 * ```
 *
 * For calls made from the UI iframe, call `installPaywallBridge()` here and
 * use `paidFetch` from `figma-paywall-plugin/ui` there.
 *
 * @packageDocumentation
 */

import {
  BODY_HEADERS,
  BRIDGE_KEY,
  type BridgeReply,
  type BridgeRequest,
  callTo,
  type Credits,
  creditsFrom,
  DEVELOPMENT_STATUS_HEADER,
  type Host,
  type Interstitial,
  networkMessage,
  originOf,
  type PaidFetchOptions,
  paidFetchWith,
  PAYMENT_TOKEN_HEADER,
  PaywallError,
  reasonOf,
  type Token,
  TOKEN_REUSE_MS,
} from './core.js'

export {
  type Credits,
  DEFAULT_MAX_WAIT_MS,
  DEVELOPMENT_STATUS_HEADER,
  type Interstitial,
  type PaidFetchOptions,
  PAYMENT_TOKEN_HEADER,
  PaywallError,
  type PaywallErrorCode,
  retryAfterMs,
  TOKEN_REUSE_MS,
} from './core.js'

/** `figma.payments`, or an error that says how to get it. */
function payments(): PaymentsAPI {
  if (typeof figma === 'undefined') {
    throw new PaywallError(
      'not_in_figma',
      "figma-paywall-plugin: there is no `figma` here. In a plugin's UI iframe import paidFetch from 'figma-paywall-plugin/ui', and call installPaywallBridge() in the main code.",
    )
  }
  if (!figma.payments) {
    throw new PaywallError(
      'no_payments_permission',
      'figma.payments is missing: add "permissions": ["payments"] to your manifest.json (Figma gives the payments API only to plugins that ask for it).',
    )
  }
  return figma.payments
}

/** Whether Figma took `setPaymentStatusInDevelopment`: the plugin runs in development. */
let inDevelopment = false

/**
 * Sets the payment status this plugin has in development, as
 * `figma.payments.setPaymentStatusInDevelopment` does, and from then on
 * sends it with each `paidFetch` (`X-Figma-Payment-Status-In-Development`),
 * read from `figma.payments.status` at each call, so checkout in
 * development counts too. A server in development mode (`cargo run
 * --example ai_endpoint`, `figma-paywall --demo --development`) takes it with any token;
 * every other server refuses it (400 `development_only`), since Figma's
 * API ignores it.
 *
 * ```ts
 * import { setPaymentStatusInDevelopment } from 'figma-paywall-plugin'
 *
 * // Only while the plugin talks to a server on this machine.
 * if (SERVER.startsWith('http://localhost')) setPaymentStatusInDevelopment('UNPAID')
 * ```
 *
 * @throws {PaywallError} `figma_failed`: Figma refused the call, as it
 *   does outside development; nothing is sent with later calls.
 */
export function setPaymentStatusInDevelopment(status: PaymentStatus['type']): void {
  const api = payments()
  try {
    api.setPaymentStatusInDevelopment({ type: status })
  } catch (cause) {
    inDevelopment = false
    throw new PaywallError(
      'figma_failed',
      `figma.payments.setPaymentStatusInDevelopment() failed, as it does outside development: ${cause instanceof Error ? cause.message : String(cause)}`,
      cause,
    )
  }
  inDevelopment = true
}

/** The status to send with the token: in development only. */
function developmentStatus(): string | undefined {
  return inDevelopment ? payments().status.type : undefined
}

let current: { value: string; at: number } | undefined
let minting: Promise<string> | undefined

/** The origin of the first URL `paidFetch` was called with: without `options.origins`, the only one the token goes to. */
let firstOrigin: string | undefined

/**
 * A plugin payment token: the one in use while it is under
 * `TOKEN_REUSE_MS` old, else a new one. Concurrent callers share one
 * `getPluginPaymentTokenAsync()`.
 */
async function token(fresh: boolean): Promise<Token> {
  const api = payments()
  if (!fresh && current && Date.now() - current.at < TOKEN_REUSE_MS) {
    return { value: current.value, reused: true, development: developmentStatus() }
  }
  if (!minting) {
    minting = api.getPluginPaymentTokenAsync().then(
      (value) => {
        minting = undefined
        return value
      },
      (cause: unknown) => {
        minting = undefined
        throw new PaywallError(
          'figma_failed',
          `figma.payments.getPluginPaymentTokenAsync() failed: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause,
        )
      },
    )
  }
  const value = await minting
  current = { value, at: Date.now() }
  return { value, reused: false, development: developmentStatus() }
}

/** Opens checkout; the payment status's type once it closes. */
async function checkout(interstitial: Interstitial): Promise<string> {
  const api = payments()
  // Already a buyer for Figma: the server's answer was older than the
  // purchase. No checkout; a fresh token tells the server.
  if (api.status.type === 'PAID') return 'PAID'
  try {
    await api.initiateCheckoutAsync({ interstitial })
  } catch (cause) {
    throw new PaywallError(
      'checkout_unavailable',
      'Figma could not open checkout here: initiateCheckoutAsync throws in query mode (plugin parameters) and while a widget renders. Call paidFetch from a command or an event handler, or pass { checkout: false } and handle the 402 yourself (figma.payments.requestCheckout() in a text-review plugin).',
      cause,
    )
  }
  return api.status.type
}

/** A response whose body was read, with the same body to read again. */
function buffered(response: FetchResponse, text: string): FetchResponse {
  return {
    headersObject: response.headersObject,
    ok: response.ok,
    redirected: response.redirected,
    status: response.status,
    statusText: response.statusText,
    type: response.type,
    url: response.url,
    text: async () => text,
    json: async () => JSON.parse(text),
    arrayBuffer: async () => utf8(text),
  }
}

/** `text` in UTF-8 (Figma's main thread has no `TextEncoder`). */
function utf8(text: string): ArrayBuffer {
  const bytes: number[] = []
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0
    if (code < 0x80) bytes.push(code)
    else if (code < 0x800) bytes.push(0xc0 | (code >> 6), 0x80 | (code & 63))
    else if (code < 0x10000)
      bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63))
    else
      bytes.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 63),
        0x80 | ((code >> 6) & 63),
        0x80 | (code & 63),
      )
  }
  return new Uint8Array(bytes).buffer
}

/**
 * What a metered answer says of the caller's credits: the window with the
 * least left (`remaining`, `limit`, `resetsInSeconds`, `window`), or
 * `undefined` when the server does not meter this call.
 *
 * ```ts
 * const response = await paidFetch(`${SERVER}/generate`, { method: 'POST', body })
 * const credits = creditsOf(response)
 * if (credits) figma.notify(`${credits.remaining} of ${credits.limit} tries left`)
 * ```
 */
export function creditsOf(response: FetchResponse): Credits | undefined {
  return creditsFrom((name) => header(response, name))
}

/** A header of Figma's response, whatever the case of its name. */
function header(response: FetchResponse, name: string): string | null {
  const wanted = name.toLowerCase()
  for (const [key, value] of Object.entries(response.headersObject ?? {})) {
    if (key.toLowerCase() === wanted) return value
  }
  return null
}

/**
 * `fetch(url, init)` from the plugin's main thread, with the user's plugin
 * payment token in `X-Figma-Payment-Token`, sent only to an origin in
 * `options.origins` (default: the origin of the first URL `paidFetch` was
 * called with), and never on through a redirect to another origin. The
 * answer is what the server said, after at most one of each:
 *
 * - a `402` with `reason: "not_paid"`: Figma's checkout opens
 *   (`options.checkout`, default `'PAID_FEATURE'`; `false`: never); if the
 *   user bought, the request is sent again with a new token, else the 402
 *   comes back;
 * - a `429` or `503` whose `Retry-After` is at most `options.maxWaitMs`
 *   (default 10 s): a wait, then the request again;
 * - a `401` with `reason: "token_rejected"` for a token used before: the
 *   request again with a new token.
 *
 * The body is sent again on a retry, so give it as a string or bytes.
 *
 * @throws {PaywallError} `origin_not_allowed` (`url` is not on an origin
 *   the token may go to: nothing was sent), `redirect_refused` (the server
 *   redirected to another origin, or where `fetch` hides),
 *   `no_payments_permission` (manifest.json lacks
 *   `"permissions": ["payments"]`), `checkout_unavailable` (query mode, a
 *   widget rendering), `network` (no answer: `networkAccess`, CORS or the
 *   server).
 */
export async function paidFetch(
  url: string,
  init: FetchOptions = {},
  options: PaidFetchOptions = {},
): Promise<FetchResponse> {
  if (firstOrigin === undefined) firstOrigin = originOf(url)
  const call = callTo(url, init, options.origins, firstOrigin)
  payments()
  const host: Host<FetchResponse> = {
    token,
    checkout,
    async send(to, token, asGet) {
      const headers: { [name: string]: string } = {}
      for (const [name, header] of Object.entries(init.headers ?? init.headersObject ?? {})) {
        if (!asGet || !BODY_HEADERS.includes(name.toLowerCase())) headers[name] = header
      }
      headers[PAYMENT_TOKEN_HEADER] = token.value
      if (token.development !== undefined) headers[DEVELOPMENT_STATUS_HEADER] = token.development
      const sent: FetchOptions = { ...init, headers, redirect: 'manual' }
      delete sent.headersObject
      if (asGet) {
        sent.method = 'GET'
        delete sent.body
      }
      try {
        return await fetch(to, sent)
      } catch (cause) {
        throw new PaywallError('network', networkMessage(to, cause), cause)
      }
    },
    status: (response) => response.status,
    header,
    // Figma's fetch goes through a browser: a redirect may come back opaque.
    hidden: (response) => response.type === 'opaqueredirect' || response.status === 0,
    discard() {},
    async reason(response) {
      const text = await response.text()
      return { response: buffered(response, text), reason: reasonOf(text) }
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  }
  return paidFetchWith(host, call, options)
}

/**
 * Lets `paidFetch` from `figma-paywall-plugin/ui` work in the plugin's UI
 * iframe: it answers the UI's requests for a token and for checkout, which
 * only the main thread can make. Call it once, after `figma.showUI`. It
 * listens with `figma.ui.on('message', …)`, beside your own handlers, and
 * ignores every message but its own. Returns a function that removes it.
 */
export function installPaywallBridge(): () => void {
  const handler = (message: unknown) => {
    const request = (message as { [BRIDGE_KEY]?: BridgeRequest } | null)?.[BRIDGE_KEY]
    if (!request || typeof request.id !== 'number') return
    answer(request).then((reply) => figma.ui.postMessage({ [BRIDGE_KEY]: reply }))
  }
  figma.ui.on('message', handler)
  return () => figma.ui.off('message', handler)
}

/** The main thread's answer to one of the UI's requests. */
async function answer(request: BridgeRequest): Promise<BridgeReply> {
  try {
    if (request.op === 'token') {
      const { value, reused, development } = await token(request.fresh === true)
      return { id: request.id, ok: true, value, reused, development }
    }
    if (request.op === 'checkout') {
      return { id: request.id, ok: true, value: await checkout(request.interstitial) }
    }
    return { id: (request as { id: number }).id, ok: false, code: 'no_bridge', message: 'unknown request' }
  } catch (error) {
    const code = error instanceof PaywallError ? error.code : 'figma_failed'
    const message = error instanceof Error ? error.message : String(error)
    return { id: request.id, ok: false, code, message }
  }
}
