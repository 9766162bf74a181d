//! A bare reverse proxy: the yardstick of `gateway/benches/proxies.sh`, which
//! issue 23 sets the gateway's proxy against. axum's `Router` with one
//! fallback that forwards through hyper-util's legacy client: no gate, no
//! header work, nothing logged.
//!
//! ```sh
//! cargo run --release --example bare_proxy -- 127.0.0.1:4181 http://127.0.0.1:3000
//! ```

use axum::{body::Body, extract::Request, http::Uri, response::IntoResponse, Router};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err(
            "usage: bare_proxy LISTEN UPSTREAM (such as 127.0.0.1:4181 http://127.0.0.1:3000)"
                .into(),
        );
    };
    let upstream: Uri = upstream.parse()?;
    let authority = upstream.authority().ok_or("UPSTREAM has no host")?.clone();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(connector);
    let app = Router::new().fallback(move |mut req: Request| {
        let (client, authority) = (client.clone(), authority.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let Ok(uri) = Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query(path)
                .build()
            else {
                return http::StatusCode::BAD_REQUEST.into_response();
            };
            *req.uri_mut() = uri;
            match client.request(req).await {
                Ok(response) => response.map(Body::new).into_response(),
                Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
