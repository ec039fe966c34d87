//! A recording webhook receiver on loopback: every request is kept (headers, body, time),
//! and each path answers from a script (`fail 3 times then 200`, `410`, `redirect`, `hang`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use poem::{Body, Endpoint, Request, Response, Server, http::StatusCode, listener::TcpAcceptor};

/// What a path answers, in order; the last entry repeats.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Status with a `Retry-After` header (seconds).
    RetryAfter(u16, u64),
    /// 302 to another path of this receiver.
    Redirect(&'static str),
    /// Never answers (a blackholed endpoint).
    Hang,
    /// Answers the status after a delay (a slow endpoint: requests stay in flight).
    Slow(u16, Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, (Vec<Reply>, usize)>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

struct Handler(Arc<Mutex<State>>);

impl Endpoint for Handler {
    type Output = Response;
    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let path = req.uri().path().to_owned();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let reply = {
            let mut state = self.0.lock().unwrap();
            state.received.push(Received { path: path.clone(), headers, body, at: Instant::now() });
            match state.scripts.get_mut(&path) {
                Some((replies, next)) => {
                    let r = replies[(*next).min(replies.len() - 1)].clone();
                    *next += 1;
                    r
                }
                None => Reply::Status(200),
            }
        };
        Ok(match reply {
            Reply::Status(code) => Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .body(Body::from_string(format!("answer {code}"))),
            Reply::RetryAfter(code, secs) => Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("retry-after", secs.to_string())
                .body("slow down"),
            Reply::Redirect(to) => {
                Response::builder().status(StatusCode::FOUND).header("location", to).body("moved")
            }
            Reply::Slow(code, delay) => {
                tokio::time::sleep(delay).await;
                Response::builder().status(StatusCode::from_u16(code).unwrap()).body("slow")
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Response::builder().status(StatusCode::OK).body("late")
            }
        })
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let handler = Handler(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap())
                .run(handler)
                .await;
        });
        Self { addr, state, task: Arc::new(task) }
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state.lock().unwrap().scripts.insert(path.to_owned(), (replies, 0));
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state.lock().unwrap().received.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}
