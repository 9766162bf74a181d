#!/usr/bin/env bash
# The gateway's reverse proxy beside nginx's, over loopback (issue 23).
#
# One nginx upstream (`return 200`), reached four ways, the setups taking
# turns for ROUNDS rounds of `wrk -t1 -c32 -d5s` (a buyer's token, cached
# after the first request):
#   direct          the upstream itself
#   nginx           nginx proxy_pass, no gate
#   bare            gateway/examples/bare_proxy.rs: axum + hyper-util, no gate (the target)
#   gateway         figma-paywall --upstream (gate and proxy)
#   nginx+auth      nginx auth_request to the gateway's forward auth, then proxy_pass
#   compared        with COMPARE=path: another build of figma-paywall --upstream
#                   (a change measured against the one before it, in one run)
# nginx runs one worker process (it serves the upstream too); NGINX_WORKERS=2
# gives it two.
# EXTRA="--workers 1" adds flags to the gateway's (and the compared one's).
# ONLY=gateway,compared runs those setups alone (a longer A/B in less time).
#
#   cargo build --release --all-features -p figma-paywall-gateway --bin figma-paywall --example bare_proxy
#   gateway/benches/proxies.sh [target/release/figma-paywall [target/release/examples/bare_proxy]]
# Needs nginx and wrk (Debian: apt-get install nginx wrk).
set -euo pipefail
bin=${1:-target/release/figma-paywall}
bare_bin=${2:-$(dirname "$bin")/examples/bare_proxy}
rounds=${ROUNDS:-3}
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
up=$(free_port); proxy=$(free_port); authed=$(free_port); gw=$(free_port); bare=$(free_port)
other=$(free_port)
setups=(direct nginx bare gateway nginx+auth)

"$bare_bin" "127.0.0.1:$bare" "http://127.0.0.1:$up" &
pids+=($!)

# shellcheck disable=SC2086 # EXTRA is flags, split on purpose
"$bin" --demo --listen "127.0.0.1:$gw" --upstream "http://127.0.0.1:$up" --deny-status 403 ${EXTRA:-} >"$dir/gateway.out" 2>/dev/null &
pids+=($!)
if [ -n "${COMPARE:-}" ]; then
  # shellcheck disable=SC2086
  "$COMPARE" --demo --listen "127.0.0.1:$other" --upstream "http://127.0.0.1:$up" --deny-status 403 ${EXTRA:-} >"$dir/compared.out" 2>/dev/null &
  pids+=($!)
  setups+=(compared)
fi
for _ in $(seq 100); do grep -q "a buyer" "$dir/gateway.out" 2>/dev/null && break; sleep 0.1; done
token=$(grep -A1 "^# a buyer" "$dir/gateway.out" | grep -o "ppt_[0-9a-f]*")

mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<CONF
daemon off; master_process on; worker_processes ${NGINX_WORKERS:-1};
pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  upstream app { server 127.0.0.1:$up; keepalive 64; }
  upstream gate { server 127.0.0.1:$gw; keepalive 64; }
  server { listen 127.0.0.1:$up; location / { return 200 "ok"; } }
  server { listen 127.0.0.1:$proxy;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$authed;
    location / {
      auth_request /_figma_paywall/auth;
      auth_request_set \$figma_user \$upstream_http_x_figma_user_id;
      proxy_set_header X-Figma-User-Id \$figma_user;
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
    }
    location = /_figma_paywall/auth {
      internal;
      proxy_pass http://gate; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
    }
  }
}
CONF
nginx -p "$dir" -c "$dir/nginx.conf" &
pids+=($!)
sleep 1

declare -A rps p50 p99
run() { # name url
  local out
  out=$(wrk -t1 -c32 -d5s --latency -H "X-Figma-Payment-Token: $token" "$2")
  rps[$1]+="$(awk '/Requests\/sec/ {printf "%d ", $2}' <<<"$out")"
  p50[$1]+="$(awk '$1 == "50%" {printf "%s ", $2}' <<<"$out")"
  p99[$1]+="$(awk '$1 == "99%" {printf "%s ", $2}' <<<"$out")"
}
for url in "http://127.0.0.1:$gw/" "http://127.0.0.1:$authed/"; do
  curl -sf -H "X-Figma-Payment-Token: $token" "$url" >/dev/null
done
if [ -n "${ONLY:-}" ]; then
  read -r -a setups <<<"${ONLY//,/ }"
fi
wanted() { [[ " ${setups[*]} " == *" $1 "* ]]; }
for _ in $(seq "$rounds"); do
  if wanted direct; then run direct "http://127.0.0.1:$up/"; fi
  if wanted nginx; then run nginx "http://127.0.0.1:$proxy/"; fi
  if wanted bare; then run bare "http://127.0.0.1:$bare/"; fi
  if wanted gateway; then run gateway "http://127.0.0.1:$gw/"; fi
  if wanted nginx+auth; then run nginx+auth "http://127.0.0.1:$authed/"; fi
  if wanted compared; then
    token=$(grep -A1 "^# a buyer" "$dir/compared.out" | grep -o "ppt_[0-9a-f]*") run compared "http://127.0.0.1:$other/"
  fi
done
echo "| setup | req/s (each round) | mean | p50 | p99 |"
echo "|---|---|---:|---|---|"
for name in "${setups[@]}"; do
  mean=$(awk '{ for (i = 1; i <= NF; i++) sum += $i } END { printf "%d", sum / NF }' <<<"${rps[$name]}")
  echo "| $name | ${rps[$name]}| $mean | ${p50[$name]}| ${p99[$name]}|"
done
