// The example plugin's main thread: shows the UI, lets the UI's paidFetch
// work (installPaywallBridge), and makes one call of its own from here.

import { installPaywallBridge, paidFetch, PaywallError, setPaymentStatusInDevelopment } from 'figma-paywall-plugin'

import { SERVER, STATUS_IN_DEVELOPMENT } from './server'

figma.showUI(__html__, { width: 320, height: 260, themeColors: true })
installPaywallBridge()

// In development against this machine's server: the status to try
// (docs/plugin.md, "See it work in Figma before you publish").
if (STATUS_IN_DEVELOPMENT) setPaymentStatusInDevelopment(STATUS_IN_DEVELOPMENT)

// The plugin's own messages, beside the bridge's.
figma.ui.on('message', async (message: { type?: string; prompt?: string }) => {
  if (message.type !== 'generate-here') return
  try {
    const response = await paidFetch(`${SERVER}/generate`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: message.prompt ?? '' }),
    })
    const body = await response.json()
    figma.ui.postMessage({ type: 'result', status: response.status, body })
  } catch (error) {
    const text = error instanceof PaywallError ? `${error.code}: ${error.message}` : String(error)
    figma.notify(text, { error: true })
  }
})
