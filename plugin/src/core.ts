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
   * Default 10 000 (10 s).
   */
  maxWaitMs?: number
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
}

/** The environment `paidFetch` runs in; `R` is its response type. */
export interface Host<R> {
  /** A plugin payment token: the one in use, or a new one if `fresh`. */
  token(fresh: boolean): Promise<Token>
  /** Opens checkout; the payment status's `type` once it closes. */
  checkout(interstitial: Interstitial): Promise<string>
  /** Sends the request with `token`. */
  send(token: string): Promise<R>
  status(response: R): number
  header(response: R, name: string): string | null
  /** The refusal's `reason`, and a response whose body can still be read. */
  reason(response: R): Promise<{ response: R; reason: string | undefined }>
  sleep(ms: number): Promise<void>
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
 * checkout for a non-buyer (then once more if they bought).
 */
export async function paidFetchWith<R>(host: Host<R>, options: PaidFetchOptions = {}): Promise<R> {
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS
  const first = await host.token(false)
  let response: R = await host.send(first.value)

  // A token reused past its life: Figma refused it, so ask for a new one.
  // A new token Figma refused is not tried again.
  if (host.status(response) === 401 && first.reused) {
    const peeked = await host.reason(response)
    response = peeked.response
    if (peeked.reason === 'token_rejected') {
      response = await host.send((await host.token(true)).value)
    }
  }

  // The server's budget at Figma is busy: wait if it is worth it.
  const status = host.status(response)
  if (status === 429 || status === 503) {
    const wait = retryAfterMs(host.header(response, 'retry-after'))
    if (wait !== undefined && wait <= maxWaitMs) {
      await host.sleep(wait)
      response = await host.send((await host.token(false)).value)
    }
  }

  // A non-buyer: checkout, then once more with a token minted after it.
  if (host.status(response) === 402 && options.checkout !== false) {
    const peeked = await host.reason(response)
    response = peeked.response
    if (peeked.reason === 'not_paid') {
      const after = await host.checkout(options.checkout ?? 'PAID_FEATURE')
      if (after === 'PAID') {
        response = await host.send((await host.token(true)).value)
      }
    }
  }
  return response
}

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
  // Figma's main thread has no `URL`: the scheme and host, by hand.
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]+/i.exec(url)?.[0] ?? url
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
  | { id: number; ok: true; value: string; reused?: boolean }
  | { id: number; ok: false; code: PaywallErrorCode; message: string }
