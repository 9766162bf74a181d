// The plugin's server, in one place: `cargo run --example ai_endpoint`
// (or the gateway's `--demo`) on this machine while you develop. Before you
// publish, put your server's https:// origin here and in manifest.json's
// `allowedDomains`.
export const SERVER = 'http://localhost:3000'

// While the server is this machine's (in development mode), the payment
// status the plugin starts with in development: 'UNPAID' shows checkout
// (Figma's checkout in development takes no payment), 'PAID' a buyer.
// Sent to no other server.
export const STATUS_IN_DEVELOPMENT: 'PAID' | 'UNPAID' | undefined = SERVER.startsWith('http://localhost')
  ? 'UNPAID'
  : undefined
