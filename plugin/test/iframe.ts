/// <reference types="@figma/plugin-typings" />
// A plugin with a UI, in node: the fake main thread, the UI's window and
// the bridge between them, as in Figma. The UI's `parent.postMessage(
// {pluginMessage}, '*')` reaches the fake figma.ui's handlers, and
// `figma.ui.postMessage` comes back as a `message` event on `window`.

import assert from 'node:assert/strict'

import { FakeFigma, install, type Store } from './fake-figma.js'
import { freshMain, freshUi } from './load.js'

/** The browser's `fetch`, as the UI iframe has it. */
export type BrowserFetch = (url: string | URL | Request, init?: RequestInit) => Promise<Response>

/** A plugin whose UI calls with `fetch`, and whose main thread mints tokens from `store`. */
export async function inIframe(store: Store, fetch: BrowserFetch, options: { bridge?: boolean } = {}) {
  const figma = new FakeFigma(store)
  install(figma, async () => {
    throw new Error('the main thread makes no request here')
  })
  const window = new EventTarget()
  figma.deliverToUi = (message) => {
    window.dispatchEvent(new MessageEvent('message', { data: { pluginMessage: message } }))
  }
  const parent = {
    postMessage(message: { pluginMessage: unknown }, targetOrigin: string) {
      assert.equal(targetOrigin, '*')
      figma.fromUi(message.pluginMessage)
    },
  }
  Object.assign(globalThis, { window, parent, fetch })
  const main = await freshMain()
  const uninstall = options.bridge === false ? () => {} : main.installPaywallBridge()
  return { figma, main, ui: await freshUi(), uninstall }
}
