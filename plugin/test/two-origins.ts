// Two real HTTP servers on 127.0.0.1, two ports: two origins. `ours` is
// the plugin's server, which redirects as the tests say; `other` is any
// other origin, and records what reached it, the token above all.

import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** One request as a server saw it. */
export interface Seen {
  method: string
  path: string
  token: string | undefined
  contentType: string | undefined
  body: string
}

/** A server on 127.0.0.1 that answers 200, or a redirect for the paths in `redirects`. */
export class Origin {
  readonly seen: Seen[] = []
  /** Path -> [status, Location]. */
  readonly redirects = new Map<string, [number, string]>()
  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:<port>`. */
    readonly url: string,
  ) {}

  static async start(): Promise<Origin> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const origin = new Origin(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    server.on('request', async (request, response) => {
      const seen = await origin.record(request)
      const redirect = origin.redirects.get(seen.path)
      if (redirect) {
        response.writeHead(redirect[0], { location: redirect[1], 'content-type': 'text/plain' })
        response.end('moved')
        return
      }
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end(JSON.stringify({ result: 'generated', method: seen.method, body: seen.body }))
    })
    return origin
  }

  /** The tokens that reached this origin. */
  get tokens(): (string | undefined)[] {
    return this.seen.map((seen) => seen.token)
  }

  private async record(request: IncomingMessage): Promise<Seen> {
    let body = ''
    for await (const chunk of request) body += chunk
    const token = request.headers['x-figma-payment-token']
    const seen: Seen = {
      method: request.method ?? '',
      path: request.url ?? '',
      token: Array.isArray(token) ? token.join(',') : token,
      contentType: request.headers['content-type'],
      body,
    }
    this.seen.push(seen)
    return seen
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

/**
 * The plugin's server and another origin. `ours` redirects:
 * `/to-other/302` and `/to-other/307` to `other`'s `/steal`,
 * `/to-other/scheme-relative` there by `//127.0.0.1:<port>/steal`,
 * `/here/302`, `/here/303`, `/here/307` back to its own `/generate`
 * (by absolute path, absolute URL, relative path `../generate?from=here`),
 * and `/hop` to `/to-other/302`.
 */
export async function twoOrigins(): Promise<{ ours: Origin; other: Origin; close: () => Promise<void> }> {
  const ours = await Origin.start()
  const other = await Origin.start()
  ours.redirects.set('/to-other/302', [302, `${other.url}/steal`])
  ours.redirects.set('/to-other/307', [307, `${other.url}/steal`])
  ours.redirects.set('/to-other/scheme-relative', [302, `${other.url.slice('http:'.length)}/steal`])
  ours.redirects.set('/here/302', [302, '/generate'])
  ours.redirects.set('/here/303', [303, `${ours.url}/generate`])
  ours.redirects.set('/here/307', [307, '../generate?from=here'])
  ours.redirects.set('/hop', [307, '/to-other/302'])
  return { ours, other, close: async () => void (await Promise.all([ours.close(), other.close()])) }
}
