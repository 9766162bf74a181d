// New instances of the built package, each with its own module state (the
// token in use): one a test, without a hook in the package for it.

import type * as Main from '../dist/index.js'
import type * as Ui from '../dist/ui.js'

let loaded = 0

/** A new instance of `figma-paywall-plugin` (main thread). */
export async function freshMain(): Promise<typeof Main> {
  return import(new URL(`../../dist/index.js?instance=${++loaded}`, import.meta.url).href)
}

/** A new instance of `figma-paywall-plugin/ui`. */
export async function freshUi(): Promise<typeof Ui> {
  return import(new URL(`../../dist/ui.js?instance=${++loaded}`, import.meta.url).href)
}
