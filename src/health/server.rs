//! The health listener: a small HTTP/1 server on its own task that answers
//! `GET /healthz` and `GET /metrics` and nothing else. Each connection is
//! served on a task of its own with a deadline, so a slow or stuck client
//! never holds up another, nor the agent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{metrics, HealthCheck};

/// The most time one connection may take.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// The running listener; stopped when dropped.
pub struct HealthServer {
    task: JoinHandle<()>,
    pub address: SocketAddr,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `address` and serves until the returned server is dropped.
pub async fn serve(address: &str, check: HealthCheck) -> std::io::Result<HealthServer> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let check = check.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let check = check.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &check)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            });
        }
    });
    Ok(HealthServer { task, address })
}

fn answer(request: &Request<Incoming>, check: &HealthCheck) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match request.uri().path() {
        "/healthz" => {
            let (healthy, body) = check.report();
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", format!("{body}\n"))
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics().encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /healthz and /metrics are served\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
