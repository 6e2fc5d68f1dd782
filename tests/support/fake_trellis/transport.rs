//! The fake's transport: the accept loop on 127.0.0.1, the recording of
//! every request, and the faults injected on the wire (error answers,
//! delays, dropped connections, whole outages with the port re-bound).

use std::convert::Infallible;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::state::*;

pub(super) async fn serve_request(
    app: Router,
    db: Db,
    kill: CancellationToken,
    req: Request<Incoming>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error(400, "Failed to read request body").into_response();
    };
    let (method, path) = (parts.method.to_string(), parts.uri.path().to_string());
    let (index, intercept, delay) = {
        let mut st = lock(&db);
        let headers = parts.headers.iter();
        st.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            headers: headers
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body: body.to_vec(),
            status: 0,
            received_at: std::time::Instant::now(),
        });
        (
            st.requests.len() - 1,
            st.intercept(&method, &path),
            st.delay,
        )
    };
    let response = match intercept {
        Intercept::Drop => {
            kill.cancel(); // the connection task closes the socket
            return std::future::pending().await;
        }
        Intercept::Fail(status, message) => error(status, message).into_response(),
        Intercept::Page(status) => {
            let status = axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
            let page = format!("<html><body><h1>{status}</h1>ingress</body></html>");
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "text/html")],
                page,
            )
                .into_response()
        }
        Intercept::Pass => {
            let Ok(response) = app
                .oneshot(Request::from_parts(parts, Body::from(body)))
                .await;
            response
        }
    };
    lock(&db).requests[index].status = response.status().as_u16();
    tokio::time::sleep(delay).await;
    response
}

/// Serves until `stop` is cancelled. The listener and every connection task
/// hold a clone of `done`, dropped only after their socket is closed, so the
/// receiver sees "disconnected" once nothing of this server is left.
pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    db: Db,
    stop: CancellationToken,
    done: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (app, db, kill, done) = (app.clone(), db.clone(), stop.child_token(), done.clone());
        tokio::spawn(async move {
            let conn_kill = kill.clone();
            let service = hyper::service::service_fn(move |req| {
                let fut = serve_request(app.clone(), db.clone(), conn_kill.clone(), req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = kill.cancelled() => {}
            }
            drop(done); // after `conn`, and with it the socket, is gone
        });
    }
    drop(listener);
    drop(done);
}

pub(super) enum Serving {
    Up {
        stop: CancellationToken,
        done: mpsc::Receiver<()>,
    },
    Down,
    Closed,
}

/// The listening side, shared with the `outage` timer thread.
pub(super) struct Net {
    pub(super) port: u16,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) app: Router,
    pub(super) db: Db,
    pub(super) serving: Mutex<Serving>,
}

impl Net {
    pub(super) fn serve(&self, listener: std::net::TcpListener) -> Serving {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let _guard = self.rt.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let (stop, (tx, done)) = (CancellationToken::new(), mpsc::channel());
        let task = accept_loop(
            listener,
            self.app.clone(),
            self.db.clone(),
            stop.clone(),
            tx,
        );
        self.rt.spawn(task);
        Serving::Up { stop, done }
    }

    /// Closes the listener and every open connection, and waits until they
    /// are closed. `close` makes it final (drop).
    pub(super) fn go_down(&self, close: bool) {
        let mut serving = lock(&self.serving);
        let next = match *serving {
            Serving::Closed => Serving::Closed,
            _ if close => Serving::Closed,
            _ => Serving::Down,
        };
        if let Serving::Up { stop, done } = std::mem::replace(&mut *serving, next) {
            stop.cancel();
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }

    pub(super) fn come_back(&self) {
        let mut serving = lock(&self.serving);
        if !matches!(*serving, Serving::Down) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() > deadline => panic!("re-bind port {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        *serving = self.serve(listener);
    }
}
