/// <reference types="@figma/plugin-typings" />
// A fake of what Figma gives a plugin's main thread, typed against
// @figma/plugin-typings so that it cannot drift from Figma's API:
// `figma.payments`, the part of `figma.ui` the bridge uses, and the main
// thread's `fetch` (Figma's `FetchOptions` and `FetchResponse`).

/** What the user does when checkout opens. */
export type InCheckout = 'buy' | 'close' | 'throw'

/** How a fake figma mints tokens and records purchases. */
export interface Store {
  mint(): Promise<string>
  buy(): Promise<void>
}

type Handler = (message: unknown, props: OnMessageProperties) => void

/** `figma.payments` and `figma.ui`, with counts of what the plugin did. */
export class FakeFigma {
  status: PaymentStatus = { type: 'UNPAID' }
  inCheckout: InCheckout = 'close'
  /** A published plugin: Figma refuses `setPaymentStatusInDevelopment`. */
  published = false
  /** The interstitial of each checkout opened. */
  readonly checkouts: string[] = []
  tokensMinted = 0
  /** Messages the main thread sent the UI. */
  readonly toUi: unknown[] = []
  private handlers: Handler[] = []
  /** Where `figma.ui.postMessage` delivers, once a UI is attached. */
  deliverToUi: (message: unknown) => void = () => {}

  constructor(private readonly store: Store) {
    const figma = this
    this.payments = {
      get status() {
        return figma.status
      },
      setPaymentStatusInDevelopment(status) {
        if (figma.published) throw new Error('setPaymentStatusInDevelopment can only be used in development')
        figma.status = status
      },
      getUserFirstRanSecondsAgo: () => 0,
      async initiateCheckoutAsync(options) {
        figma.checkouts.push(options?.interstitial ?? 'PAID_FEATURE')
        if (figma.inCheckout === 'throw') {
          throw new Error('Cannot call initiateCheckoutAsync in query mode')
        }
        if (figma.inCheckout === 'buy') {
          await figma.store.buy()
          figma.status = { type: 'PAID' }
        }
      },
      requestCheckout() {},
      async getPluginPaymentTokenAsync() {
        figma.tokensMinted++
        return figma.store.mint()
      },
    }
  }

  readonly payments: PaymentsAPI

  readonly ui: Pick<UIAPI, 'postMessage' | 'on' | 'off'> = {
    postMessage: (message) => {
      this.toUi.push(message)
      this.deliverToUi(message)
    },
    on: ((type: 'message', handler: Handler) => {
      if (type === 'message') this.handlers.push(handler)
    }) as UIAPI['on'],
    off: ((type: 'message', handler: Handler) => {
      if (type === 'message') this.handlers = this.handlers.filter((h) => h !== handler)
    }) as UIAPI['off'],
  }

  /** A message from the UI (`parent.postMessage({pluginMessage}, '*')`). */
  fromUi(message: unknown) {
    for (const handler of this.handlers) handler(message, { origin: 'null' })
  }

  /** How many handlers listen to the UI's messages. */
  get listeners() {
    return this.handlers.length
  }
}

/** Makes `figma` (with or without `payments`) and `fetch` this fake's. */
export function install(
  figma: FakeFigma,
  fetch: (url: string, init?: FetchOptions) => Promise<FetchResponse>,
  options: { payments?: boolean } = {},
) {
  const api = { ui: figma.ui, ...(options.payments === false ? {} : { payments: figma.payments }) }
  Object.assign(globalThis, { figma: api as unknown as PluginAPI, fetch })
}

/**
 * Figma's main-thread `fetch` on top of node's: the answer's headers in
 * `headersObject`, as Figma gives them. With `redirect: 'manual'` a
 * redirect comes back as it is, `Location` and all.
 */
export async function figmaFetch(url: string, init: FetchOptions = {}): Promise<FetchResponse> {
  const response = await nodeFetch(url, {
    method: init.method,
    headers: init.headers,
    body: init.body as BodyInit | undefined,
    redirect: init.redirect as RequestRedirect | undefined,
  })
  const headersObject: { [name: string]: string } = {}
  response.headers.forEach((value, name) => {
    headersObject[name] = value
  })
  return {
    headersObject,
    ok: response.ok,
    redirected: response.redirected,
    status: response.status,
    statusText: response.statusText,
    type: response.type,
    url: response.url,
    arrayBuffer: () => response.arrayBuffer(),
    text: () => response.text(),
    json: () => response.json(),
  }
}

/** Node's own `fetch`, kept before any test replaces the global. */
const nodeFetch: (url: string, init: RequestInit) => Promise<Response> = globalThis.fetch.bind(globalThis)
