import { parseList } from 'structured-headers'

// What `paidFetch` does, wherever it runs: the main thread (Figma's `fetch`
// and `figma.payments`) and the UI iframe (the browser's `fetch`, and the
// main thread through the bridge) each give it a `Host`.

/** The interstitial of Figma's checkout (`figma.payments.initiateCheckoutAsync`). */
export type Interstitial = 'PAID_FEATURE' | 'TRIAL_ENDED' | 'SKIP'

/** What `paidFetch` does beyond sending the token. */
export interface PaidFetchOptions {
  /**
   * On a `402` whose `reason` is `"not_paid"`, open Figma's checkout once
   * with this interstitial, and if the user bought, send the request again
   * with a fresh token. `false` never opens checkout: the 402 comes back.
   * Default `'PAID_FEATURE'`.
   */
  checkout?: Interstitial | false
  /**
   * On a `429` or `503` whose `Retry-After` is at most this many
   * milliseconds, wait and send the request once more. `0` never waits.
   * Default 10 000 (10 s). A `429` for spent credits
   * (`credits_exhausted`) is never waited out: it renews with its window.
   */
  maxWaitMs?: number
  /**
   * The origins the payment token may go to, such as
   * `['https://api.example.com']` (scheme, host and port, as in
   * manifest.json's `networkAccess.allowedDomains`). A call to any other
   * origin fails with `origin_not_allowed` before a token is asked for.
   * Default: the origin of the first URL `paidFetch` was called with (in
   * each of the main thread and the UI iframe).
   */
  origins?: readonly string[]
}

/** What went wrong, for a creator to act on. */
export type PaywallErrorCode =
  /** `figma.payments` is missing: `"permissions": ["payments"]` is not in manifest.json. */
  | 'no_payments_permission'
  /** Figma refused to open checkout here: query mode, or a widget rendering. */
  | 'checkout_unavailable'
  /** The request never got an answer: `networkAccess`, CORS, or the server is down. */
  | 'network'
  /** The UI's `paidFetch` got no answer from the main thread: no `installPaywallBridge()`. */
  | 'no_bridge'
  /** Not in a Figma plugin: there is no `figma` global. */
  | 'not_in_figma'
  /** A call to Figma's plugin API failed (its error is the `cause`). */
  | 'figma_failed'
  /** The URL's origin is not one the token may go to (`origins`), or `origins` holds something that is not an origin. */
  | 'origin_not_allowed'
  /** The server redirected elsewhere, or where `fetch` hides the target: the redirect was not followed with the token. */
  | 'redirect_refused'

/**
 * An error a creator can act on: its `code` says which, its `message` what
 * to change. Never carries the payment token.
 */
export class PaywallError extends Error {
  /** Which mistake, or which limit of Figma's, this is. */
  readonly code: PaywallErrorCode
  /** What failed underneath, if anything (Figma's own error). */
  readonly cause?: unknown

  constructor(code: PaywallErrorCode, message: string, cause?: unknown) {
    super(message)
    this.name = 'PaywallError'
    this.code = code
    if (cause !== undefined) this.cause = cause
  }
}

/** The header the server reads the plugin payment token from. */
export const PAYMENT_TOKEN_HEADER = 'X-Figma-Payment-Token'

/**
 * The header that carries, only while the plugin runs in development, the
 * payment status chosen there (`setPaymentStatusInDevelopment`, or
 * checkout in development). Only a server in development mode honours it;
 * any other refuses it with a 400 `development_only`.
 */
export const DEVELOPMENT_STATUS_HEADER = 'X-Figma-Payment-Status-In-Development'

/** How long `paidFetch` waits on `Retry-After` unless told otherwise. */
export const DEFAULT_MAX_WAIT_MS = 10_000

/**
 * How long one token is reused. Figma publishes no lifetime for plugin
 * payment tokens ("short-lived"); reusing one lets the server answer from
 * its cache instead of asking Figma again, within the creator's small
 * budget. A token the server says Figma refused is replaced at once.
 */
export const TOKEN_REUSE_MS = 5 * 60_000

/** A plugin payment token, and whether it was used before. */
export interface Token {
  value: string
  reused: boolean
  /** In development only: the payment status the plugin has there, for `DEVELOPMENT_STATUS_HEADER`. */
  development?: string
}

/** The environment `paidFetch` runs in; `R` is its response type. */
export interface Host<R> {
  /** A plugin payment token: the one in use, or a new one if `fresh`. */
  token(fresh: boolean): Promise<Token>
  /** Opens checkout; the payment status's `type` once it closes. */
  checkout(interstitial: Interstitial): Promise<string>
  /**
   * Sends the request to `url` with `token`, never following a redirect
   * (`redirect: 'manual'`). `asGet`: a redirect made it a GET without a
   * body, as `fetch` does after a 303, or a 301 or 302 to a POST.
   */
  send(url: string, token: Token, asGet: boolean): Promise<R>
  status(response: R): number
  header(response: R, name: string): string | null
  /** Whether `response` is a redirect whose target is hidden (a browser's `opaqueredirect`). */
  hidden(response: R): boolean
  /** Lets go of a response that is not given back (a redirect's body). */
  discard(response: R): void
  /** The refusal's `reason`, and a response whose body can still be read. */
  reason(response: R): Promise<{ response: R; reason: string | undefined }>
  sleep(ms: number): Promise<void>
}

/** One call of `paidFetch`: where it goes, and how. */
export interface Call {
  url: string
  /** `url`'s origin, one the token may go to. */
  origin: string
  /** The method in capitals (`GET` if none). */
  method: string
  /** `init.redirect`: `follow` (the default) follows redirects within `origin` only. */
  redirect: 'follow' | 'error' | 'manual'
}

/**
 * The origin of an absolute `http:` or `https:` URL, as `scheme://host[:port]`
 * in lower case without a default port; `undefined` for anything else.
 *
 * Strict on purpose (Figma's main thread has no `URL` to ask): this only
 * lowercases and drops a default port, which every URL parser does too, so
 * two URLs with the same `originOf` reach the same origin in any `fetch`.
 * A host with other characters (user info `a@b`, `\`, percent escapes,
 * Unicode) is refused rather than guessed at. A host written unusually
 * (`0x7f.1`) is kept as written, and matches only itself.
 */
export function originOf(url: string): string | undefined {
  const match = /^(https?):\/\/([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?(?=[/?#]|$)/i.exec(url)
  if (!match) return undefined
  const scheme = match[1].toLowerCase()
  const port = match[3] === undefined ? undefined : Number(match[3])
  if (port !== undefined && port > 65535) return undefined
  const standard = port === undefined || (scheme === 'http' && port === 80) || (scheme === 'https' && port === 443)
  return `${scheme}://${match[2].toLowerCase()}${standard ? '' : `:${port}`}`
}

/**
 * `paidFetch`'s call to `url`, if the token may go there: `url`'s origin
 * is in `origins`, or, with none named, is `first` (the origin of the
 * first URL `paidFetch` was called with).
 *
 * @throws {PaywallError} `origin_not_allowed`
 */
export function callTo(
  url: string,
  init: { method?: string; redirect?: string },
  origins: readonly string[] | undefined,
  first: string | undefined,
): Call {
  const origin = originOf(url)
  if (origin === undefined) {
    throw new PaywallError(
      'origin_not_allowed',
      `paidFetch sends the payment token only to an absolute http(s) URL with an ASCII host, and ${JSON.stringify(url.slice(0, 60))} is not one.`,
    )
  }
  const allowed = origins !== undefined ? origins.map(allowedOrigin) : first !== undefined ? [first] : []
  if (!allowed.includes(origin)) {
    const named = origins === undefined ? `${first} (its first call's origin)` : allowed.join(', ')
    throw new PaywallError(
      'origin_not_allowed',
      `paidFetch sends the payment token only to ${named}, not to ${origin}: if that is your server, name it in the origins option.`,
    )
  }
  const redirect = init.redirect === 'error' || init.redirect === 'manual' ? init.redirect : 'follow'
  return { url, origin, method: (init.method ?? 'GET').toUpperCase(), redirect }
}

/** An entry of `options.origins`, as `originOf` writes it. */
function allowedOrigin(entry: string): string {
  const bare = entry.endsWith('/') ? entry.slice(0, -1) : entry
  const origin = originOf(bare)
  if (origin === undefined || /[/?#]/.test(bare.slice(bare.indexOf('://') + 3))) {
    throw new PaywallError(
      'origin_not_allowed',
      `paidFetch's origins option holds ${JSON.stringify(entry)}, which is not an origin: write scheme, host and port only, like 'https://api.example.com'.`,
    )
  }
  return origin
}

/**
 * What a metered answer says of the caller's credits (the server's
 * `RateLimit` and `RateLimit-Policy` fields): the window with the least
 * left, which is what the next calls may spend.
 */
export interface Credits {
  /** What is left in that window (never below 0). */
  remaining: number
  /** That window's allowance. */
  limit: number
  /** Seconds until it renews; `undefined` for an allowance that never does ("5 tries, ever"). */
  resetsInSeconds: number | undefined
  /** Its name: `hour`, `day`, `month` or `ever`. */
  window: string
}

/** Each member of a Structured Fields list of strings: its name and integer parameters. */
function members(value: string | null | undefined): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>()
  if (!value) return out
  let list
  try {
    list = parseList(value)
  } catch {
    return out
  }
  for (const [item, params] of list) {
    if (typeof item !== 'string') continue
    const numbers = new Map<string, number>()
    for (const [key, param] of params) if (typeof param === 'number') numbers.set(key, param)
    out.set(item, numbers)
  }
  return out
}

/**
 * The credits an answer reports, read with `header` (a response's header by
 * name); `undefined` when it carries none, or none that can be read.
 */
export function creditsFrom(header: (name: string) => string | null | undefined): Credits | undefined {
  const policies = members(header('ratelimit-policy'))
  let least: Credits | undefined
  for (const [window, state] of members(header('ratelimit'))) {
    const remaining = state.get('r')
    const limit = policies.get(window)?.get('q')
    if (remaining === undefined || limit === undefined) continue
    if (least === undefined || remaining < least.remaining) {
      least = { remaining, limit, resetsInSeconds: state.get('t'), window }
    }
  }
  return least
}

/** `Retry-After` in milliseconds: seconds, or an HTTP date (RFC 9110). */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/**
 * Sends the request with a payment token; on a refusal does, at most once
 * each: a new token for one Figma refused, the wait for a busy budget,
 * checkout for a non-buyer (then once more if they bought). Each send
 * follows redirects within the call's origin only (`deliver`).
 */
export async function paidFetchWith<R>(host: Host<R>, call: Call, options: PaidFetchOptions = {}): Promise<R> {
  const send = (token: Token) => deliver(host, call, token)
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS
  const first = await host.token(false)
  let response: R = await send(first)

  // A token reused past its life: Figma refused it, so ask for a new one.
  // A new token Figma refused is not tried again.
  if (host.status(response) === 401 && first.reused) {
    const peeked = await host.reason(response)
    response = peeked.response
    if (peeked.reason === 'token_rejected') {
      response = await send(await host.token(true))
    }
  }

  // The server's budget at Figma is busy: wait if it is worth it. Spent
  // credits are not: their Retry-After is when the window renews.
  const status = host.status(response)
  if (status === 429) {
    const peeked = await host.reason(response)
    response = peeked.response
    if (peeked.reason === 'credits_exhausted') return response
  }
  if (status === 429 || status === 503) {
    const wait = retryAfterMs(host.header(response, 'retry-after'))
    if (wait !== undefined && wait <= maxWaitMs) {
      await host.sleep(wait)
      response = await send(await host.token(false))
    }
  }

  // A non-buyer: checkout, then once more with a token minted after it.
  if (host.status(response) === 402 && options.checkout !== false) {
    const peeked = await host.reason(response)
    response = peeked.response
    if (peeked.reason === 'not_paid') {
      const after = await host.checkout(options.checkout ?? 'PAID_FEATURE')
      if (after === 'PAID') {
        response = await send(await host.token(true))
      }
    }
  }
  return response
}

/** The statuses `fetch` follows as redirects (the Fetch standard's redirect status). */
const REDIRECTS = [301, 302, 303, 307, 308]

/** How many redirects one send follows, as `fetch` does. */
const MAX_REDIRECTS = 20

/**
 * Sends `call` with `token`, and follows its redirects as `fetch` would,
 * but only within `call.origin`: the token never goes to another origin
 * through a redirect, nor through one whose target `fetch` hides.
 *
 * @throws {PaywallError} `redirect_refused`
 */
async function deliver<R>(host: Host<R>, call: Call, token: Token): Promise<R> {
  let url = call.url
  let asGet = false
  for (let followed = 0; ; followed++) {
    const response = await host.send(url, token, asGet)
    if (call.redirect === 'manual') return response
    const refused = (why: string) => {
      host.discard(response)
      return new PaywallError('redirect_refused', why)
    }
    if (host.hidden(response)) {
      throw refused(
        `paidFetch: ${call.origin} answered with a redirect that fetch hides here (opaqueredirect), so paidFetch did not follow it with the token. Call the final URL.`,
      )
    }
    const status = host.status(response)
    const location = REDIRECTS.includes(status) ? host.header(response, 'location') : null
    if (location === null) return response
    if (call.redirect === 'error') throw refused(`paidFetch: ${call.origin} answered ${status}, a redirect, and init.redirect is 'error'.`)
    if (followed === MAX_REDIRECTS) throw refused(`paidFetch: ${call.origin} redirected more than ${MAX_REDIRECTS} times.`)
    const next = resolve(location, url)
    const to = next === undefined ? undefined : originOf(next)
    if (next === undefined || to !== call.origin) {
      throw refused(
        `paidFetch did not follow a redirect from ${call.origin} to ${to ?? 'a URL it cannot check'}: the token never leaves its origin. If that is your server, call it directly.`,
      )
    }
    host.discard(response)
    url = next
    const method = asGet ? 'GET' : call.method
    if ((status === 303 && method !== 'GET' && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
      asGet = true
    }
  }
}

/**
 * `location` (a redirect's `Location`) resolved against `base`, by hand
 * (Figma's main thread has no `URL`); `undefined` for what this does not
 * resolve. A relative `location` keeps `base`'s scheme and authority as
 * they are written, so it cannot reach another origin.
 */
function resolve(location: string, base: string): string | undefined {
  // Controls, spaces and `\` are read differently by URL parsers: refused.
  if (/[\u0000-\u0020\u007f\\]/.test(location)) return undefined
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return originOf(location) === undefined ? undefined : location
  const parts = /^([a-z][a-z0-9+.-]*:)(\/\/[^/?#]*)([^?#]*)(\?[^#]*)?/i.exec(base)
  if (!parts) return undefined
  const [, scheme, authority, path, query = ''] = parts
  if (location.startsWith('//')) {
    const full = scheme + location
    return originOf(full) === undefined ? undefined : full
  }
  if (location.startsWith('/')) return scheme + authority + location
  if (location.startsWith('?')) return scheme + authority + path + location
  if (location.startsWith('#')) return scheme + authority + path + query + location
  return scheme + authority + path.slice(0, path.lastIndexOf('/') + 1) + (path === '' ? '/' : '') + location
}

/** The headers that describe a body, dropped when a redirect drops the body. */
export const BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type']

/** The `reason` of a refusal's JSON body, if it has one. */
export function reasonOf(body: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body)
    if (typeof parsed === 'object' && parsed !== null) {
      const reason = (parsed as { reason?: unknown }).reason
      return typeof reason === 'string' ? reason : undefined
    }
  } catch {
    // Not JSON: no reason.
  }
  return undefined
}

/** The message for a request that got no answer; names no token. */
export function networkMessage(url: string, cause: unknown): string {
  const origin = originOf(url) ?? url
  const why = cause instanceof Error ? cause.message : String(cause)
  return (
    `paidFetch: no answer from ${origin} (${why}). Check that manifest.json's ` +
    `networkAccess.allowedDomains names ${origin}, that the server answers CORS ` +
    `with Access-Control-Allow-Origin: * (a plugin's origin is null), and that it is running.`
  )
}

// The bridge between the UI iframe and the main thread: messages under one
// key, so that they sit beside the plugin's own.

/** The key of the bridge's messages inside `pluginMessage`. */
export const BRIDGE_KEY = '__figmaPaywall'

/** UI -> main thread. */
export type BridgeRequest =
  | { id: number; op: 'token'; fresh: boolean }
  | { id: number; op: 'checkout'; interstitial: Interstitial }

/** Main thread -> UI. */
export type BridgeReply =
  | { id: number; ok: true; value: string; reused?: boolean; development?: string }
  | { id: number; ok: false; code: PaywallErrorCode; message: string }
