/**
 * The plugin side of figma-paywall, for a plugin's UI iframe: `paidFetch`
 * with the browser's `fetch`. The token and checkout come from the main
 * thread, which must call `installPaywallBridge()` from
 * `figma-paywall-plugin`.
 *
 * ```ts
 * import { paidFetch } from 'figma-paywall-plugin/ui'
 *
 * const response = await paidFetch('https://api.example.com/generate', {
 *   method: 'POST',
 *   headers: { 'Content-Type': 'application/json' },
 *   body: JSON.stringify({ prompt: 'a cat in a hat' }),
 * })
 * ```
 *
 * @packageDocumentation
 */

import {
  BODY_HEADERS,
  BRIDGE_KEY,
  type BridgeReply,
  type BridgeRequest,
  callTo,
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
} from './core.js'
import type { Credits } from './core.js'

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
} from './core.js'

/**
 * What a metered answer says of the caller's credits: the window with the
 * least left (`remaining`, `limit`, `resetsInSeconds`, `window`), or
 * `undefined` when the server does not meter this call.
 *
 * ```ts
 * const response = await paidFetch(`${SERVER}/generate`, { method: 'POST', body })
 * const credits = creditsOf(response)
 * if (credits) status.textContent = `${credits.remaining} of ${credits.limit} left`
 * ```
 */
export function creditsOf(response: Response): Credits | undefined {
  return creditsFrom((name) => response.headers.get(name))
}

/** `paidFetch`'s options in the UI. */
export interface UiPaidFetchOptions extends PaidFetchOptions {
  /**
   * How long to wait for a token from the main thread before saying that
   * `installPaywallBridge()` is missing. Default 10 000 (10 s).
   */
  bridgeTimeoutMs?: number
}

/** How long the UI waits for the main thread to give a token. */
const TOKEN_TIMEOUT_MS = 10_000

let nextId = 1

/** The origin of the first URL `paidFetch` was called with: without `options.origins`, the only one the token goes to. */
let firstOrigin: string | undefined

type Request = BridgeRequest extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never

/**
 * Asks the main thread, over `parent.postMessage`, and waits for its reply
 * (at most `timeoutMs`, if given).
 */
function ask(request: Request, timeoutMs?: number): Promise<BridgeReply & { ok: true }> {
  const id = nextId++
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const listener = (event: MessageEvent) => {
      const reply = (event.data?.pluginMessage as { [BRIDGE_KEY]?: BridgeReply } | undefined)?.[BRIDGE_KEY]
      if (!reply || reply.id !== id) return
      window.removeEventListener('message', listener)
      if (timer !== undefined) clearTimeout(timer)
      if (reply.ok) resolve(reply)
      else reject(new PaywallError(reply.code, reply.message))
    }
    window.addEventListener('message', listener)
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        window.removeEventListener('message', listener)
        reject(
          new PaywallError(
            'no_bridge',
            "paidFetch in the UI got no token from the plugin's main thread: call installPaywallBridge() from 'figma-paywall-plugin' in your main code, after figma.showUI().",
          ),
        )
      }, timeoutMs)
    }
    parent.postMessage({ pluginMessage: { [BRIDGE_KEY]: { ...request, id } } }, '*')
  })
}

async function token(fresh: boolean, timeoutMs: number): Promise<Token> {
  const reply = await ask({ op: 'token', fresh }, timeoutMs)
  return { value: reply.value, reused: reply.reused === true, development: reply.development }
}

async function checkout(interstitial: Interstitial): Promise<string> {
  // The user may take minutes in checkout: no time limit.
  return (await ask({ op: 'checkout', interstitial })).value
}

/**
 * `fetch(url, init)` from the plugin's UI iframe, with the user's plugin
 * payment token in `X-Figma-Payment-Token`, and the same retries as the
 * main thread's `paidFetch`: checkout on a 402 `not_paid`, one wait on a
 * 429 or 503 within `options.maxWaitMs`, a new token for a reused one
 * Figma refused.
 *
 * The token goes only to an origin in `options.origins` (default: the
 * origin of the first URL this `paidFetch` was called with). A browser
 * hides where a redirect leads (`opaqueredirect`), so in the iframe a
 * redirect is never followed with the token: it fails with
 * `redirect_refused`.
 *
 * The server must answer CORS: a plugin's iframe has the origin `null`, so
 * only `Access-Control-Allow-Origin: *` lets it read an answer.
 *
 * @throws {PaywallError} `origin_not_allowed`, `redirect_refused`,
 *   `no_bridge` (the main thread did not call `installPaywallBridge()`
 *   within `options.bridgeTimeoutMs`), `network`, and what the main
 *   thread's `paidFetch` throws.
 */
export async function paidFetch(
  url: string,
  init: RequestInit = {},
  options: UiPaidFetchOptions = {},
): Promise<Response> {
  if (firstOrigin === undefined) firstOrigin = originOf(url)
  const call = callTo(url, init, options.origins, firstOrigin)
  const timeoutMs = options.bridgeTimeoutMs ?? TOKEN_TIMEOUT_MS
  const host: Host<Response> = {
    token: (fresh) => token(fresh, timeoutMs),
    checkout,
    async send(to, token, asGet) {
      const headers = new Headers(init.headers)
      headers.set(PAYMENT_TOKEN_HEADER, token.value)
      if (token.development !== undefined) headers.set(DEVELOPMENT_STATUS_HEADER, token.development)
      const sent: RequestInit = { ...init, headers, redirect: 'manual' }
      if (asGet) {
        for (const name of BODY_HEADERS) headers.delete(name)
        sent.method = 'GET'
        sent.body = null
      }
      try {
        return await fetch(to, sent)
      } catch (cause) {
        throw new PaywallError('network', networkMessage(to, cause), cause)
      }
    },
    status: (response) => response.status,
    header: (response, name) => response.headers.get(name),
    hidden: (response) => response.type === 'opaqueredirect',
    discard(response) {
      response.body?.cancel().catch(() => {})
    },
    async reason(response) {
      const text = await response.clone().text()
      return { response, reason: reasonOf(text) }
    },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  }
  return paidFetchWith(host, call, options)
}
