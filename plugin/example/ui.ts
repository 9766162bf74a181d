// The example plugin's UI: calls the server from the iframe (origin null)
// with the token the main thread gives through the bridge.

import { paidFetch, PaywallError } from 'figma-paywall-plugin/ui'

const SERVER = 'http://localhost:3000'

const prompt = document.getElementById('prompt') as HTMLTextAreaElement
const output = document.getElementById('output') as HTMLElement

function show(status: number, body: { result?: string; message?: string; reason?: string }) {
  if (status === 200) output.textContent = body.result ?? ''
  else if (status === 402) output.textContent = 'This feature is for buyers. Buy the plugin to use it.'
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
    show(response.status, await response.json())
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
