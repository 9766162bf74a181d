// The example plugin's UI: calls the server from the iframe (origin null)
// with the token the main thread gives through the bridge.

import { type Credits, creditsOf, paidFetch, PaywallError } from 'figma-paywall-plugin/ui'

import { SERVER } from './server'

const prompt = document.getElementById('prompt') as HTMLTextAreaElement
const output = document.getElementById('output') as HTMLElement
const credits = document.getElementById('credits') as HTMLElement

/**
 * "12 of 20 tries left today" for a non-buyer's free tries, "97 of 100
 * credits left today" for a buyer, from what the server said.
 */
function showCredits(left: Credits | undefined, body: { payment_status?: string | { type?: string } }) {
  if (!left) return
  const when = { hour: ' this hour', day: ' today', month: ' this month' }[left.window] ?? ''
  // A refusal names the status as a string, a grant as Figma's object.
  const status = typeof body.payment_status === 'string' ? body.payment_status : body.payment_status?.type
  const what = status === 'UNPAID' ? 'tries' : 'credits'
  credits.textContent = `${left.remaining} of ${left.limit} ${what} left${when}`
}

function show(status: number, body: { result?: string; message?: string; reason?: string }) {
  if (status === 200) output.textContent = body.result ?? ''
  else if (status === 402) output.textContent = 'This feature is for buyers. Buy the plugin to use it.'
  else if (body.reason === 'credits_exhausted') output.textContent = body.message ?? 'No credits left for now.'
  else output.textContent = `${status} ${body.reason ?? ''}: ${body.message ?? ''}`
}

document.getElementById('generate')?.addEventListener('click', async () => {
  output.textContent = 'Generating…'
  try {
    const response = await paidFetch(`${SERVER}/generate`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: prompt.value }),
    })
    const body = await response.json()
    showCredits(creditsOf(response), body)
    show(response.status, body)
  } catch (error) {
    output.textContent = error instanceof PaywallError ? `${error.code}: ${error.message}` : String(error)
  }
})

document.getElementById('generate-here')?.addEventListener('click', () => {
  output.textContent = 'Generating in the main thread…'
  parent.postMessage({ pluginMessage: { type: 'generate-here', prompt: prompt.value } }, '*')
})

window.addEventListener('message', (event) => {
  const message = event.data?.pluginMessage
  if (message?.type === 'result') show(message.status, message.body)
})
