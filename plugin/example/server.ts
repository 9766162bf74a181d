// The plugin's server, in one place: `cargo run --example ai_endpoint`
// (or the gateway) on this machine while you develop. Before you publish,
// put your server's https:// origin here and in manifest.json's
// `allowedDomains`.
export const SERVER = 'http://localhost:3000'
