/// <reference types="@figma/plugin-typings" />
// A stand-in for a gated server, for the unit tests: answers as
// figma-paywall's gate does (200, 401 token_rejected, 402 not_paid, a busy
// 429/503 with Retry-After). The Rust test `tests/plugin.rs` runs the same
// helper against the real server.

import type { Store } from './fake-figma.js'

export interface Answer {
  status: number
  headers: { [name: string]: string }
  body: string
}

export class StandIn implements Store {
  buyer = false
  /** Tokens Figma would refuse (expired). */
  readonly expired = new Set<string>()
  /** Refusals to answer first, one a request. */
  readonly busy: Answer[] = []
  /** The token each request carried, in order. */
  readonly tokensSeen: (string | undefined)[] = []
  readonly bodies: (string | undefined)[] = []
  /** The status chosen in development each request carried, in order. */
  readonly developmentSeen: (string | undefined)[] = []
  private minted = 0

  async mint() {
    return `ppt_test_${++this.minted}`
  }

  async buy() {
    this.buyer = true
  }

  answer(token: string | undefined, body: string | undefined, development?: string): Answer {
    this.tokensSeen.push(token)
    this.bodies.push(body)
    this.developmentSeen.push(development)
    const json = (status: number, value: object): Answer => ({
      status,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(value),
    })
    const refused = this.busy.shift()
    if (refused) return refused
    if (!token) return json(401, { error: true, status: 401, reason: 'no_identity' })
    if (this.expired.has(token) || !token.startsWith('ppt_test_')) {
      return json(401, { error: true, status: 401, reason: 'token_rejected' })
    }
    if (!this.buyer) {
      return json(402, { error: true, status: 402, reason: 'not_paid', payment_status: 'UNPAID' })
    }
    return json(200, { result: 'generated' })
  }
}

/** A busy answer: `status` with `Retry-After: retryAfter`. */
export function busy(status: 429 | 503, retryAfter: string): Answer {
  return {
    status,
    headers: { 'content-type': 'application/json', 'retry-after': retryAfter },
    body: JSON.stringify({ error: true, status, reason: status === 429 ? 'too_many_lookups' : 'rate_limited' }),
  }
}

/**
 * Figma's main-thread `fetch`, answered by `server`; a body read twice
 * fails the test.
 */
export function figmaFetchFrom(server: StandIn) {
  return async (url: string, init: FetchOptions = {}): Promise<FetchResponse> => {
    const answer = server.answer(
      init.headers?.['X-Figma-Payment-Token'],
      init.body as string | undefined,
      init.headers?.['X-Figma-Payment-Status-In-Development'],
    )
    let read = false
    const text = async () => {
      if (read) throw new Error('the body was read twice')
      read = true
      return answer.body
    }
    return {
      headersObject: answer.headers,
      ok: answer.status < 300,
      redirected: false,
      status: answer.status,
      statusText: '',
      type: 'cors',
      url,
      text,
      json: async () => JSON.parse(await text()),
      arrayBuffer: async () => new TextEncoder().encode(await text()).buffer as ArrayBuffer,
    }
  }
}
